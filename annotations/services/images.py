"""Uploaded images checked for predict as import checks them: configured byte and pixel limits, as domain errors."""
from django.conf import settings
from PIL import Image

from labelhub.api import DomainError

from .. import images


def image_check(data: bytes) -> int:
    """Check an uploaded image from its header as import does (bytes, format, pixel limit); return its pixel count.

    Raises DomainError naming the problem. Nothing is decoded: a batch can be checked whole first.
    """
    limit = settings.LABELHUB_IMAGE_MAX_BYTES
    if len(data) > limit:
        raise DomainError(f"image is larger than the {limit:,}-byte limit.")
    try:
        width, height = images.image_header(data, max_pixels=settings.LABELHUB_IMAGE_MAX_PIXELS).size
    except images.ImageRefused as exc:
        raise DomainError(f"{exc}.") from None
    return width * height


def image_decode(data: bytes, *, draft: tuple[str, tuple[int, int]] | None = None) -> Image.Image:
    """Check an uploaded image as import does (bytes, format, pixel limit, integrity) and return it decoded.

    Raises DomainError naming the problem; ``draft`` lets a JPEG decode at a reduced scale.
    """
    image_check(data)
    try:
        return images.image_open(data, max_pixels=settings.LABELHUB_IMAGE_MAX_PIXELS, draft=draft)
    except images.ImageRefused as exc:
        raise DomainError(f"{exc}.") from None
