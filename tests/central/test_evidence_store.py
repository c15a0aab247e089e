"""The evidence store on its own: content-addressed, idempotent, no temporary file left behind."""

from __future__ import annotations

import base64
import hashlib
import shutil
from pathlib import Path

import pytest

from streetwatch.central.evidence_store import EvidenceError, EvidenceStore, decode_jpeg_b64

JPEG = b"\xff\xd8" + bytes(range(256)) * 40 + b"\xff\xd9\x00"  # a multiple of 3 bytes: base64 without padding


def test_the_same_image_twice_is_one_file_and_no_temporary_is_left(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path)
    first, second = store.put(JPEG), store.put(JPEG)
    assert first == second == hashlib.sha256(JPEG).hexdigest()
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()] == [
        f"{first[:2]}/{first}.jpg"
    ]
    assert store.read(first) == JPEG


def test_a_shard_folder_removed_after_use_is_made_again(tmp_path: Path) -> None:
    """The store remembers the folders it made (one mkdir each); one removed behind its back
    (a clean-up job, a remounted share) must not make later images fail."""
    store = EvidenceStore(tmp_path)
    sha = store.put(JPEG)
    shutil.rmtree(tmp_path / sha[:2])
    assert store.put(JPEG) == sha
    assert store.read(sha) == JPEG


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        (base64.b64encode(JPEG).decode(), True),
        (base64.b64encode(JPEG).decode() + "==", True),  # padding past the last group: the standard decoder takes it
        (base64.b64encode(JPEG).decode()[:-1], False),  # cut short
        ("/9j/" + "A" * 7 + "!", False),  # not the base64 alphabet
        (base64.b64encode(b"GIF89a....").decode(), False),  # base64, but not a JPEG
    ],
)
def test_evidence_decoding_accepts_what_the_standard_decoder_accepts(text: str, accepted: bool) -> None:
    if accepted:
        assert decode_jpeg_b64(text) == JPEG
    else:
        with pytest.raises(EvidenceError, match="evidence.jpeg_b64"):
            decode_jpeg_b64(text)
