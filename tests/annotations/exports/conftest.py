"""Fixtures of the export tests: a manager's API client and a small labeled text project."""
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from annotations.models import Item
from tests.factories import AnnotationFactory, ItemFactory, UserFactory


@pytest.fixture
def api(manager) -> APIClient:
    client = APIClient()
    client.force_authenticate(manager)
    return client

@pytest.fixture
def labeled(text_project, manager, annotator):
    """Three items: a majority, a tie (goes to the earliest) and a reviewer's resolution; one formula-like text."""
    negative, positive = text_project.labels.order_by("order")
    third = UserFactory(username="third")
    a = ItemFactory(project=text_project, external_id="a", text="=HYPERLINK(\"http://evil\")", metadata={"src": "x"})
    b = ItemFactory(project=text_project, external_id="b", text="+plain")
    c = ItemFactory(project=text_project, external_id="c", text="-minus")
    AnnotationFactory(item=a, annotator=manager, label=positive, is_audit=True, model_version=3,
                      predicted_label=negative, predicted_confidence=0.7)
    AnnotationFactory(item=a, annotator=annotator, label=negative)
    AnnotationFactory(item=a, annotator=third, label=negative)
    AnnotationFactory(item=b, annotator=annotator, label=positive)
    AnnotationFactory(item=b, annotator=manager, label=negative)
    AnnotationFactory(item=c, annotator=annotator, label=negative)
    Item.objects.filter(pk=c.pk).update(resolved_label=positive, resolved_at=timezone.now())
    return text_project
