#!/usr/bin/env python3
"""Download the detector weights named in streetwatch/models/manifest.yaml and check their sha256.

    python scripts/fetch_models.py [--model-dir DIR] [--manifest FILE] [NAME ...]

The folder is --model-dir, else $STREETWATCH_MODEL_DIR, else models/. A file that is already
present with the right sha256 is skipped. Each download goes to a temporary file in the same
folder and is renamed into place only after its sha256 matches, so a broken or interrupted
download never leaves a file that looks usable.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from streetwatch.edge.manifest import (
    MODEL_DIR_ENV,
    REPO_MODELS_DIR,
    ManifestError,
    ModelEntry,
    file_sha256,
    load_manifest,
)

_CHUNK = 1 << 16
_TIMEOUT_S = 30


class FetchError(RuntimeError):
    """A model could not be fetched; the message says which, from where and what to do."""


def default_model_dir() -> Path:
    env = os.environ.get(MODEL_DIR_ENV)
    return Path(env) if env else REPO_MODELS_DIR


def fetch_model(entry: ModelEntry, model_dir: Path, *, progress: BinaryIO | None = None) -> str:
    """Make `model_dir / entry.file` the manifest's file. Returns "present" or "downloaded"."""
    target = model_dir / entry.file
    if target.is_file() and file_sha256(target) == entry.sha256:
        return "present"
    model_dir.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{entry.file}.", suffix=".part", dir=model_dir)
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            actual = _download(entry, out, progress=progress)
        if actual != entry.sha256:
            raise FetchError(
                f"model {entry.name!r}: {entry.source} has sha256 {actual}, the manifest expects "
                f"{entry.sha256}; nothing was written to {target}. The upstream file changed or the "
                "download was altered: check the manifest's sha256 and source."
            )
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return "downloaded"


def _download(entry: ModelEntry, out: BinaryIO, *, progress: BinaryIO | None) -> str:
    """Stream `entry.source` into `out`, hashing as it goes; return the hex sha256."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(entry.source, timeout=_TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                _show_progress(progress, entry.name, done, total)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(
            f"model {entry.name!r}: cannot download {entry.source}: {reason}. Are you offline? "
            f"Copy {entry.file} (sha256 {entry.sha256}) into the model folder by hand, or set "
            f"{MODEL_DIR_ENV} to a folder that has it."
        ) from None
    if progress is not None:
        progress.write(b"\n")
    return digest.hexdigest()


def _show_progress(stream: BinaryIO | None, name: str, done: int, total: int) -> None:
    if stream is None:
        return
    share = f" {100 * done / total:5.1f}%" if total else ""
    stream.write(f"\r{name}: {done / 1e6:7.2f} MB{share}".encode())
    stream.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="models to fetch (default: all in the manifest)")
    parser.add_argument(
        "--model-dir", type=Path, default=None, help=f"default: ${MODEL_DIR_ENV}, then models/"
    )
    parser.add_argument("--manifest", type=Path, default=None, help="default: streetwatch/models/manifest.yaml")
    args = parser.parse_args(argv)
    model_dir = args.model_dir or default_model_dir()
    try:
        manifest = load_manifest(args.manifest)
        entries = [manifest.entry(n) for n in args.names] if args.names else list(manifest.models)
    except (ManifestError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for entry in entries:
        try:
            status = fetch_model(entry, model_dir, progress=sys.stderr.buffer)
        except FetchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{entry.name}: {status} {model_dir / entry.file} (sha256 ok)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
