"""Pictures that arrive in a request (a reference face, a layout's sketch): one reading for all.

Base64 (plain or a data URL) into bytes, and bytes into a loaded Pillow image that is PNG, JPEG
or WebP and not larger than MAX_IMAGE_PIXELS, each failure an ``errors.InputError`` naming the
field. Pure: Pillow only, no Flask.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from errors import InputError

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_IMAGE_PIXELS = 4096 * 4096


def base64_bytes(encoded: Any, field: str, data_url: bool = False) -> bytes:
    """The bytes of ``encoded``: base64 text, or a data URL's payload. With ``data_url`` only
    a data URL of an image is taken (``data:image/png;base64,...``)."""
    if not isinstance(encoded, str):
        raise InputError(field, f"{field} must be a {'data URL' if data_url else 'base64 string'}.")
    head, comma, payload = encoded.partition(",")
    if data_url and not (comma and head.startswith("data:image/") and head.endswith(";base64")):
        raise InputError(field, f"{field} must be a data URL (data:image/png;base64,...).")
    if encoded.startswith("data:"):
        encoded = payload
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(field, f"{field} is not valid base64.") from None


def open_image(data: bytes, field: str, what: str):
    """``data`` as a loaded Pillow image, refused unless it is a readable PNG, JPEG or WebP of at
    most 4096x4096 pixels (``what`` names it in the message: "The reference", "The sketch")."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in IMAGE_FORMATS:
                raise InputError(field, f"{what} must be PNG, JPEG or WebP, not {image.format}.")
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise InputError(field, f"{what} is too large ({image.width}x{image.height}; at most 4096x4096).")
            image.load()
            return image.copy()
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(field, f"{what} is not a readable PNG, JPEG or WebP image.") from error
