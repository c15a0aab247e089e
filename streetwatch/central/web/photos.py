"""Photos an inspector uploads from the phone: bounded in size, and only real JPEGs (their markers
are walked up to a frame header with a sane size), so nothing else lands in the evidence store."""

from __future__ import annotations

from fastapi import UploadFile

from streetwatch.central.web.i18n import N_

MAX_SIDE_PX = 20_000
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


class PhotoRejected(ValueError):
    """An upload that is not accepted; `msgid` and `values` say why in the user's language."""

    def __init__(self, msgid: str, **values: object) -> None:
        super().__init__(msgid % values if values else msgid)
        self.msgid = msgid
        self.values = values


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's frame header; PhotoRejected if the bytes are no JPEG."""
    if not data.startswith(b"\xff\xd8"):
        raise PhotoRejected(N_("The photo must be a JPEG image."))
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise PhotoRejected(N_("The photo must be a JPEG image."))
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            break
        if marker in _SOF_MARKERS and pos + 9 <= len(data):
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            if 0 < width <= MAX_SIDE_PX and 0 < height <= MAX_SIDE_PX:
                return width, height
            break
        pos += 2 + length
    raise PhotoRejected(N_("The photo must be a JPEG image."))


def read_photo(upload: UploadFile | None, *, max_bytes: int) -> bytes | None:
    """The uploaded photo's bytes (None when no file was chosen), checked for size and format."""
    if upload is None or not upload.filename:
        return None
    data = upload.file.read(max_bytes + 1)
    if not data:
        return None
    if len(data) > max_bytes:
        raise PhotoRejected(N_("The photo is larger than %(mb)s MB."), mb=f"{max_bytes / (1024 * 1024):g}")
    jpeg_size(data)
    return data
