"""The queue's REST endpoints: next, submit, skip, release, renew and undo, as an annotator's client sees them."""
import json
import random
import uuid

import pytest
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from annotations import apis
from annotations.models import Annotation, Item, ItemScore, Lease, Membership, QueueScoring
from tests.factories import ItemFactory, MembershipFactory, UserFactory, api_token_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(annotator) -> APIClient:
    client = APIClient()
    client.force_authenticate(annotator)
    return client


def next_url(project) -> str:
    return reverse("api-queue-next", args=[project.pk])


def lease_url(lease_id, action: str) -> str:
    return reverse(f"api-lease-{action}", args=[str(lease_id)])


def score(project, item, priority: float, label, model_version: int = 2) -> None:
    scoring = QueueScoring.objects.create(
        project=project, model_version=model_version, strategy=project.query_strategy,
        status=QueueScoring.Status.COMPLETE, finished_at="2026-01-01T00:00:00Z",
    )
    ItemScore.objects.create(scoring=scoring, item=item, priority=priority, predicted_label=label, confidence=0.62)


def test_next_serves_a_text_item_with_suggestion_and_progress(api, text_project):
    text_project.audit_share = 0.0  # no audit draw, so no suggestion withheld
    text_project.save()
    item = ItemFactory(project=text_project, external_id="r1", text="Great film", metadata={"source": "imdb"})
    positive = text_project.labels.get(name="positive")
    score(text_project, item, 0.9, positive)

    response = api.post(next_url(text_project), format="json")

    assert response.status_code == 200
    body = response.json()
    lease = Lease.objects.get()
    assert body["lease"]["id"] == str(lease.pk) and body["lease"]["expires_at"]
    assert body["item"] == {
        "id": item.pk, "external_id": "r1", "kind": "text", "text": "Great film", "metadata": {"source": "imdb"}
    }
    assert body["suggestion"] == {"label_id": positive.pk, "label": "positive", "confidence": 0.62}
    progress = api.get(reverse("api-queue-progress", args=[text_project.pk])).json()
    assert progress["pool"] == 1 and progress["labeled"] == 0 and progress["scoring"]["model_version"] == 2
    assert set(progress) == {"pool", "labeled", "done", "mine_today", "scoring"}


def test_progress_moves_as_the_expert_labels_and_is_members_only(api, text_project, manager):
    ItemFactory(project=text_project)
    ItemFactory(project=text_project)
    url = reverse("api-queue-progress", args=[text_project.pk])
    lease_id = api.post(next_url(text_project)).json()["lease"]["id"]
    api.post(lease_url(lease_id, "submit"), {"label": "negative"}, format="json")

    progress = api.get(url).json()

    assert (progress["pool"], progress["labeled"], progress["done"], progress["mine_today"]) == (2, 1, 1, 1)
    assert progress["scoring"] is None
    outsider = APIClient()
    outsider.force_authenticate(UserFactory())
    assert outsider.get(url).status_code == 404


def test_audit_draws_look_like_any_other_item(api, text_project):
    text_project.audit_share = 1.0
    text_project.show_suggestions = False
    text_project.save()
    ItemFactory(project=text_project)

    response = api.post(next_url(text_project), {}, format="json")

    assert Lease.objects.get().is_audit
    assert response.json()["suggestion"] is None
    text = response.content.decode().lower()
    assert "audit" not in text and "priority" not in text
    assert set(response.json()) == {"lease", "item", "suggestion"}
    assert set(response.json()["lease"]) == {"id", "expires_at"}


def test_an_audit_item_comes_without_the_suggestion_that_is_stored_with_its_label(api, text_project):
    text_project.audit_share = 1.0
    text_project.save()
    item = ItemFactory(project=text_project)
    positive = text_project.labels.get(name="positive")
    score(text_project, item, 0.9, positive)

    body = api.post(next_url(text_project), format="json").json()

    assert body["suggestion"] is None
    lease = Lease.objects.get()
    assert (lease.is_audit, lease.suggestion_withheld, lease.predicted_label, lease.model_version) == (
        True, True, positive, 2
    )
    again = api.post(next_url(text_project), format="json").json()  # the held lease, renewed: still withheld
    assert (again["lease"]["id"], again["suggestion"]) == (body["lease"]["id"], None)
    api.post(lease_url(lease.pk, "submit"), {"label": "negative"}, format="json")
    annotation = Annotation.objects.get()
    stored = (annotation.is_audit, annotation.predicted_label, annotation.predicted_confidence, annotation.model_version)
    assert stored == (True, positive, 0.62, 2)


def _shape(body: dict) -> dict:
    """The response with its ids and content left out: what is left can only tell items apart by how they were drawn."""
    return {
        "lease": sorted(body["lease"]),
        "item": {key: type(value).__name__ for key, value in body["item"].items()},
        "suggestion": body["suggestion"],
    }


def test_an_audit_item_and_an_ordinary_item_with_its_suggestion_withheld_are_served_alike(api, text_project):
    text_project.audit_share = 0.3  # w = 0.43
    text_project.save()
    positive = text_project.labels.get(name="positive")
    scoring = QueueScoring.objects.create(
        project=text_project, model_version=2, strategy=text_project.query_strategy,
        status=QueueScoring.Status.COMPLETE, finished_at="2026-01-01T00:00:00Z",
    )
    for i in range(40):
        item = ItemFactory(project=text_project, text=f"review {i}", metadata={"n": i})
        ItemScore.objects.create(scoring=scoring, item=item, priority=i, predicted_label=positive, confidence=0.62)
    random.seed(5)

    served = {}  # (is_audit, suggestion withheld): a response and its raw bytes
    for _ in range(40):
        response = api.post(next_url(text_project), format="json")
        lease = Lease.objects.get(pk=response.json()["lease"]["id"])
        served.setdefault((lease.is_audit, lease.suggestion_withheld), response)
        api.post(lease_url(lease.pk, "submit"), {"label": "negative"}, format="json")
    assert set(served) == {(True, True), (False, True), (False, False)}  # an audit lease never shows it

    audit, withheld, shown = served[True, True], served[False, True], served[False, False]
    assert _shape(audit.json()) == _shape(withheld.json())
    assert list(audit.json()) == list(withheld.json()) and list(audit.json()["item"]) == list(withheld.json()["item"])
    assert audit.headers["Content-Type"] == withheld.headers["Content-Type"]
    # What tells them apart from an item that shows its suggestion is there, so the comparison can fail.
    assert _shape(shown.json()) != _shape(withheld.json())
    assert shown.json()["suggestion"] == {"label_id": positive.pk, "label": "positive", "confidence": 0.62}


def test_tabular_and_image_items_carry_their_own_fields(tabular_project, image_project, manager):
    client = APIClient()
    client.force_authenticate(manager)
    tabular_project.feature_names = ["alcohol", "ash"]
    tabular_project.save()
    row = ItemFactory(project=tabular_project, text="", values=[13.2, 2.4])
    picture = ItemFactory(project=image_project, text="", image="items/1/a.png")

    tabular = client.post(next_url(tabular_project)).json()["item"]
    image = client.post(next_url(image_project)).json()["item"]

    assert tabular == {"id": row.pk, "external_id": row.external_id, "kind": "tabular", "values": [13.2, 2.4],
                       "feature_names": ["alcohol", "ash"], "metadata": {}}
    assert image == {"id": picture.pk, "external_id": picture.external_id, "kind": "image",
                     "image_url": reverse("item-media", args=[picture.pk, "image"]), "metadata": {}}


def test_next_returns_204_when_nothing_is_left_and_prefetches_with_exclude(api, text_project):
    ItemFactory(project=text_project)
    ItemFactory(project=text_project)
    first = api.post(next_url(text_project), format="json").json()["lease"]["id"]
    second = api.post(next_url(text_project), {"exclude": [first]}, format="json").json()["lease"]["id"]
    assert first != second
    assert api.post(next_url(text_project), format="json").json()["lease"]["id"] == first

    for lease_id in (first, second):
        assert api.post(lease_url(lease_id, "submit"), {"label": "negative"}, format="json").status_code == 201
    response = api.post(next_url(text_project), format="json")
    assert (response.status_code, response.content) == (204, b"")


@pytest.mark.parametrize("body", [{"exclude": ["nope"]}, {"exclude": "x"}, [1, 2]])
def test_next_refuses_bad_input_with_400(api, text_project, body):
    ItemFactory(project=text_project)
    response = api.post(next_url(text_project), body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"]
    assert not Lease.objects.exists()


def test_non_members_get_404_everywhere(text_project, annotator):
    ItemFactory(project=text_project)
    stranger = APIClient()
    stranger.force_authenticate(UserFactory(username="stranger"))
    assert stranger.post(next_url(text_project)).status_code == 404
    assert stranger.post(reverse("api-queue-undo", args=[text_project.pk])).status_code == 404
    assert APIClient().post(next_url(text_project)).status_code in (401, 403)


def test_next_and_submit_answer_exactly_what_their_serializers_document(api, text_project):
    text_project.audit_share = 0.0  # no audit draw, so no suggestion withheld
    text_project.save()
    item = ItemFactory(project=text_project, external_id="r1", text="Great film", metadata={"source": "imdb"})
    positive = text_project.labels.get(name="positive")
    score(text_project, item, 0.9, positive)

    served = api.post(next_url(text_project), format="json").json()
    lease = Lease.objects.select_related("item", "predicted_label").get()
    suggestion = {"label_id": positive.pk, "label": "positive", "confidence": 0.62}
    documented = apis.ServedOutputSerializer(
        {"lease": lease, "item": lease.item, "suggestion": suggestion}, context={"project": text_project}
    ).data
    assert served == json.loads(json.dumps(documented))

    stored = api.post(lease_url(lease.pk, "submit"), {"label": "positive"}, format="json").json()
    annotation = Annotation.objects.select_related("label").get()
    assert stored == json.loads(json.dumps(apis.LeaseSubmitApi.OutputSerializer(annotation).data))


def test_submit_is_201_then_200_with_the_same_annotation(api, text_project):
    item = ItemFactory(project=text_project)
    lease_id = api.post(next_url(text_project)).json()["lease"]["id"]
    negative = text_project.labels.get(name="negative")

    first = api.post(lease_url(lease_id, "submit"), {"label_id": negative.pk, "time_spent_ms": 3400}, format="json")
    again = api.post(lease_url(lease_id, "submit"), {"label": "positive"}, format="json")

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert first.json()["item_id"] == item.pk and first.json()["label"] == "negative"
    assert set(first.json()) == {"id", "item_id", "label_id", "label", "created_at"}
    assert Annotation.objects.get().time_spent_ms == 3400
    assert Item.objects.get().label_count == 1


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "label_id or label"),
        ({"label": "neutral"}, "not a label of this project"),
        ({"label_id": 999999}, "not a label of this project"),
        ({"label_id": "abc"}, "Invalid input"),
        ({"label": "negative", "time_spent_ms": -5}, "Invalid input"),
        ({"label": "negative", "time_spent_ms": 2**40}, "Invalid input"),
        # Beyond a 64-bit key: SQLite's driver raised OverflowError (a 500) where PostgreSQL found nothing.
        ({"label_id": 2**63}, "less than or equal to 9223372036854775807"),
        ({"label_id": 10**400}, "less than or equal to 9223372036854775807"),
    ],
)
def test_submit_refuses_bad_input_with_400(api, text_project, body, message):
    ItemFactory(project=text_project)
    lease_id = api.post(next_url(text_project)).json()["lease"]["id"]
    response = api.post(lease_url(lease_id, "submit"), body, format="json")
    assert response.status_code == 400
    assert message in json.dumps(response.json())
    assert not Annotation.objects.exists()


def test_a_label_of_another_project_is_400(api, text_project, tabular_project):
    ItemFactory(project=text_project)
    lease_id = api.post(next_url(text_project)).json()["lease"]["id"]
    foreign = tabular_project.labels.first()
    response = api.post(lease_url(lease_id, "submit"), {"label_id": foreign.pk}, format="json")
    assert response.status_code == 400


def test_someone_elses_or_an_unknown_lease_is_404(api, text_project):
    ItemFactory(project=text_project)
    lease_id = api.post(next_url(text_project)).json()["lease"]["id"]
    other = UserFactory(username="other")
    MembershipFactory(project=text_project, user=other, role=Membership.Role.ANNOTATOR)
    client = APIClient()
    client.force_authenticate(other)

    for action in ("submit", "skip", "release", "renew"):
        assert client.post(lease_url(lease_id, action), {"label": "negative"}, format="json").status_code == 404
        assert api.post(lease_url(uuid.uuid4(), action), {"label": "negative"}, format="json").status_code == 404
        response = api.post(f"/api/leases/not-a-uuid/{action}", {"label": "negative"}, format="json")
        assert (response.status_code, response.json()) == (404, {"detail": "Lease not found."})
    assert Lease.objects.get().status == Lease.Status.ACTIVE


def test_skip_release_and_renew_answer_200(api, text_project):
    ItemFactory(project=text_project)
    ItemFactory(project=text_project)
    first = api.post(next_url(text_project)).json()["lease"]["id"]
    second = api.post(next_url(text_project), {"exclude": [first]}, format="json").json()["lease"]["id"]

    renewed = api.post(lease_url(first, "renew"))
    assert renewed.status_code == 200 and renewed.json()["status"] == "active"
    skipped = api.post(lease_url(first, "skip"))
    assert (skipped.status_code, skipped.json()["status"]) == (200, "skipped")
    released = api.post(lease_url(second, "release"))
    assert (released.status_code, released.json()["status"]) == (200, "released")

    conflict = api.post(lease_url(first, "renew"))
    assert conflict.status_code == 409 and conflict.json()["detail"] == "This item was skipped."
    assert api.post(next_url(text_project)).json()["lease"]["id"] not in (first, second)


def test_a_renew_after_someone_else_took_the_item_is_409(api, text_project):
    ItemFactory(project=text_project)
    lease_id = api.post(next_url(text_project)).json()["lease"]["id"]
    Lease.objects.filter(pk=lease_id).update(expires_at="2000-01-01T00:00:00Z")
    other = UserFactory(username="other")
    MembershipFactory(project=text_project, user=other)
    client = APIClient()
    client.force_authenticate(other)
    assert client.post(next_url(text_project)).status_code == 200

    response = api.post(lease_url(lease_id, "renew"))
    assert response.status_code == 409
    assert response.json()["detail"] == "This item's lease expired and it may have gone to someone else."
    assert api.post(lease_url(lease_id, "submit"), {"label": "negative"}, format="json").status_code == 409


def test_undo_leases_the_last_item_back_or_answers_204(api, text_project):
    item = ItemFactory(project=text_project, text="to undo")
    assert api.post(reverse("api-queue-undo", args=[text_project.pk])).status_code == 204
    lease_id = api.post(next_url(text_project)).json()["lease"]["id"]
    api.post(lease_url(lease_id, "submit"), {"label": "negative"}, format="json")

    response = api.post(reverse("api-queue-undo", args=[text_project.pk]))

    assert response.status_code == 200
    body = response.json()
    assert body["item"]["id"] == item.pk and body["item"]["text"] == "to undo"
    assert body["lease"]["id"] != lease_id
    assert not Annotation.objects.exists()


def test_token_auth_works_and_next_keeps_to_a_few_queries(text_project, annotator, django_assert_max_num_queries):
    text_project.audit_share = 0.0  # an uncertainty draw, so that the count does not depend on chance
    text_project.save()
    items = [ItemFactory(project=text_project) for _ in range(20)]
    score(text_project, items[0], 0.5, text_project.labels.first())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_for(annotator)}")

    # Token, project with role; held leases with the scoring, savepoint, candidate with its suggested
    # label, re-check with insert, release.
    # SQLite re-checks the candidate and inserts the lease in two statements, PostgreSQL in one.
    with django_assert_max_num_queries(7 if connection.vendor == "postgresql" else 8):
        response = client.post(next_url(text_project), format="json")
    assert response.status_code == 200
    lease_id = response.json()["lease"]["id"]
    # Token; lease with membership and the served scoring; one statement storing the label (on SQLite, one
    # transaction: item and label, lease, annotation, item, score, with its savepoint).
    with django_assert_max_num_queries(3 if connection.vendor == "postgresql" else 9):
        assert client.post(lease_url(lease_id, "submit"), {"label": "positive"}, format="json").status_code == 201
