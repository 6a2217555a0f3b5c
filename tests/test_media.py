"""Item images are served only by the item media view, which checks membership, in every mode (DEBUG too)."""
import importlib
import io

import pytest
from django.core.files.base import ContentFile
from django.urls import clear_url_caches, reverse
from PIL import Image

import labelhub.urls
from tests.factories import ItemFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 200).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def debug_urls(settings):
    """The URLs as `make run` (DEBUG=1) builds them when the process starts."""
    settings.DEBUG = True
    importlib.reload(labelhub.urls)
    clear_url_caches()
    yield
    settings.DEBUG = False
    importlib.reload(labelhub.urls)
    clear_url_caches()


def test_media_files_are_not_served_by_path_in_debug(client, debug_urls, image_project, manager):
    item = ItemFactory(project=image_project)
    png = _png()
    item.image.save("secret.png", ContentFile(png), save=True)
    stranger = UserFactory(username="stranger")
    media_path = f"/media/{item.image.name}"

    assert client.get(media_path).status_code == 404
    client.force_login(stranger)
    assert client.get(media_path).status_code == 404
    # The checked view: members get the image, a stranger a 404, an anonymous visitor the login page.
    checked = reverse("item-media", args=[item.pk, "image"])
    assert client.get(checked).status_code == 404
    client.force_login(manager)
    served = client.get(checked)
    assert served.status_code == 200 and b"".join(served.streaming_content) == png
    assert client.get(media_path).status_code == 404
    client.logout()
    assert client.get(checked).status_code == 302


def test_pages_link_item_images_through_the_checked_view(client, image_project, manager):
    item = ItemFactory(project=image_project)
    item.image.save("page.png", ContentFile(_png()), save=True)
    annotator = UserFactory(username="labeler")
    MembershipFactory(project=image_project, user=annotator)
    client.force_login(annotator)

    body = client.post(reverse("label-next", args=[image_project.pk]), HTTP_HX_REQUEST="true").content.decode()

    assert reverse("item-media", args=[item.pk, "image"]) in body and "/media/" not in body
