"""A citizen's photo: a real JPEG or PNG (decoded, not just sniffed), bounded in bytes and pixels,
re-encoded as a JPEG. Re-encoding drops every metadata block, so the reporter's EXIF (GPS position,
phone model, owner name) never reaches the evidence store or the public media URL."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

ACCEPTED_FORMATS = ("JPEG", "PNG")
JPEG_QUALITY = 88


class PhotoError(ValueError):
    """A photo that is refused; the message names the field and says why."""


def photo_as_jpeg(data: bytes, *, max_bytes: int, max_pixels: int, field: str = "media") -> bytes:
    """The photo as JPEG bytes without metadata; PhotoError when it is too big, not JPEG/PNG, or broken."""
    if not data:
        raise PhotoError(f"{field}: the file is empty")
    if len(data) > max_bytes:
        raise PhotoError(f"{field}: {len(data)} bytes, expected at most {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise PhotoError(f"{field}: {width}x{height} pixels, expected at most {max_pixels}")
                image.load()  # decodes the whole image: a truncated or forged file fails here
                rgb = image.convert("RGB")
    except PhotoError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PhotoError(f"{field}: expected a JPEG or PNG photo") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise PhotoError(f"{field}: the photo cannot be decoded ({type(exc).__name__})") from None
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()
