"""Signed image links in exports: they work without a session until they expire."""
import json

import pytest
from django.core.files.base import ContentFile
from rest_framework.test import APIClient

from tests.annotations.exports.support import body, export_url
from tests.factories import AnnotationFactory, ItemFactory

pytestmark = pytest.mark.django_db


def test_image_links_are_signed_and_expire(image_project, manager, settings, tmp_path):
    item = ItemFactory(project=image_project, external_id="img", text="")
    item.image.save("x.png", ContentFile(b"\x89PNG fake"), save=True)
    AnnotationFactory(item=item, annotator=manager, label=image_project.labels.first())
    client = APIClient()
    client.force_authenticate(manager)

    row = json.loads(body(client.get(export_url(image_project))).splitlines()[0])

    url = row["image_url"]
    assert url.startswith("http://testserver/items/") and "sig=" in url
    anonymous = APIClient()
    assert anonymous.get(url).status_code == 200
    assert anonymous.get(url.replace("sig=", "sig=x")).status_code == 302  # to the login page
    settings.LABELHUB_EXPORT_URL_MAX_AGE = -1
    assert anonymous.get(url).status_code == 302
