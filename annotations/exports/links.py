"""Signed, expiring links to an exported item's image, and their check in the item media view."""
from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.urls import reverse

# Image items leave an export as signed, expiring links to the item media view, so that a tool
# without a LabelHub session can fetch them until the link expires (EXPORT_URL_MAX_AGE).
_MEDIA_SALT = "annotations.item-media"


def item_image_url_signed(item_id: int, base_url: str = "") -> str:
    """A link to the item's image that works without logging in until EXPORT_URL_MAX_AGE has passed."""
    signed = signing.TimestampSigner(salt=_MEDIA_SALT).sign(str(item_id))
    return f"{base_url}{reverse('item-media', args=[item_id, 'image'])}?sig={signed.split(':', 1)[1]}"


def item_image_signature_valid(item_id: int, signature: str) -> bool:
    """Whether ``sig`` of an image link is this item's and has not expired."""
    try:
        value = signing.TimestampSigner(salt=_MEDIA_SALT).unsign(
            f"{item_id}:{signature}", max_age=settings.LABELHUB_EXPORT_URL_MAX_AGE
        )
    except signing.BadSignature:
        return False
    return value == str(item_id)
