"""The labeling page shows the project's chosen metadata fields only; a skip may carry a reason reviewers see."""
import pytest
from django.urls import reverse

from annotations import services
from annotations.models import Annotation, Lease, Membership
from tests.factories import ItemFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def expert_client(client, annotator):
    client.force_login(annotator)
    return client


def _label_page(client, project) -> str:
    response = client.get(reverse("label", args=[project.pk]))
    assert response.status_code == 200
    return response.content.decode()


def _metadata_block(body: str) -> str:
    start = body.find('<dl class="label-metadata"')
    return "" if start < 0 else body[start:body.find("</dl>", start)]


def _lease(project, user) -> Lease:
    lease = services.queue_next(project=project, user=user)
    assert lease is not None
    return lease


# --- metadata on the labeling page ------------------------------------------------------------


def test_the_page_shows_the_chosen_metadata_fields_in_order_and_nothing_else(expert_client, text_project):
    text_project.shown_metadata_fields = ["source", "stars", "missing"]
    text_project.save()
    ItemFactory(project=text_project, text="Great kettle", metadata={
        "stars": 4, "source": "amazon.de", "internal_note": "customer is an employee", "tags": ["a", "b"],
    })

    block = _metadata_block(_label_page(expert_client, text_project))

    assert "<dt>source</dt><dd>amazon.de</dd>" in block
    assert "<dt>stars</dt><dd>4</dd>" in block
    assert block.index("source") < block.index("stars")
    assert "internal_note" not in block and "employee" not in block and "tags" not in block
    assert "missing" not in block  # a chosen field the item lacks is left out


def test_no_metadata_is_shown_until_the_project_chooses_fields(expert_client, text_project):
    ItemFactory(project=text_project, text="Great kettle", metadata={"source": "secret-crawl"})
    body = _label_page(expert_client, text_project)
    assert "label-metadata" not in body and "secret-crawl" not in body


def test_metadata_values_are_escaped_and_long_ones_shortened_with_the_whole_value_expandable(
    expert_client, text_project
):
    text_project.shown_metadata_fields = ["<b>field</b>", "comment", "nested"]
    text_project.save()
    long_comment = "word " * 100 + "THE-END"
    ItemFactory(project=text_project, text="x", metadata={
        "<b>field</b>": '<script>alert("x")</script>', "comment": long_comment, "nested": {"k": "<i>v</i>"},
    })

    block = _metadata_block(_label_page(expert_client, text_project))

    assert "<script>" not in block and "<b>" not in block and "<i>" not in block
    assert "&lt;b&gt;field&lt;/b&gt;" in block
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in block
    assert "{&quot;k&quot;: &quot;&lt;i&gt;v&lt;/i&gt;&quot;}" in block
    summary = block[block.index("<summary>"):block.index("</summary>")]
    assert "THE-END" not in summary and summary.endswith("…</span>")
    assert "THE-END</div></details>" in block


def test_the_api_sets_the_shown_fields_within_bounds(client, text_project, manager):
    client.force_login(manager)
    url = reverse("api-project", args=[text_project.pk])

    ok = client.patch(url, {"shown_metadata_fields": ["source", "date"]}, content_type="application/json")
    assert ok.status_code == 200, ok.content
    assert ok.json()["shown_metadata_fields"] == ["source", "date"]

    for bad in ([f"field {i}" for i in range(30)], ["x" * 101], "source", [1], [""], ["a", "a"], {"a": 1}):
        response = client.patch(url, {"shown_metadata_fields": bad}, content_type="application/json")
        assert response.status_code == 400, bad
        assert "shown_metadata_fields" in response.json()["errors"]
    text_project.refresh_from_db()
    assert text_project.shown_metadata_fields == ["source", "date"]


def test_an_annotator_cannot_choose_the_shown_fields(client, text_project, annotator):
    client.force_login(annotator)
    response = client.patch(
        reverse("api-project", args=[text_project.pk]), {"shown_metadata_fields": ["secret"]},
        content_type="application/json",
    )
    assert response.status_code in (403, 404)
    text_project.refresh_from_db()
    assert text_project.shown_metadata_fields == []


# --- skip with a reason ---------------------------------------------------------------------------


def test_skip_without_a_reason_still_skips(expert_client, text_project, annotator):
    ItemFactory(project=text_project)
    lease = _lease(text_project, annotator)
    response = expert_client.post(reverse("label-skip", args=[text_project.pk, lease.pk]))
    assert response.status_code == 200
    lease.refresh_from_db()
    assert lease.status == Lease.Status.SKIPPED and lease.skip_reason == ""


def test_skip_with_a_reason_stores_it_and_a_second_skip_keeps_the_first(expert_client, text_project, annotator):
    ItemFactory(project=text_project)
    lease = _lease(text_project, annotator)
    url = reverse("label-skip", args=[text_project.pk, lease.pk])

    response = expert_client.post(url, {"reason": "  Two languages mixed; not sure which counts.  "})
    again = expert_client.post(url, {"reason": "another"})

    assert response.status_code == 200 and again.status_code == 200
    lease.refresh_from_db()
    assert lease.status == Lease.Status.SKIPPED
    assert lease.skip_reason == "Two languages mixed; not sure which counts."


def test_a_too_long_reason_is_refused_and_the_item_stays_reserved(expert_client, text_project, annotator):
    ItemFactory(project=text_project)
    lease = _lease(text_project, annotator)
    response = expert_client.post(reverse("label-skip", args=[text_project.pk, lease.pk]), {"reason": "x" * 501})
    assert response.status_code == 400
    assert "at most 500 characters" in response.content.decode()
    lease.refresh_from_db()
    assert lease.status == Lease.Status.ACTIVE and lease.skip_reason == ""


def test_the_api_skips_with_and_without_a_reason_and_refuses_a_long_one(client, text_project, annotator):
    for _ in range(3):
        ItemFactory(project=text_project)
    client.force_login(annotator)
    leases = []
    for _ in range(3):
        leases.append(services.queue_next(project=text_project, user=annotator, exclude=[x.pk for x in leases]))
    first, second, third = leases

    def skip(lease, body):
        return client.post(reverse("api-lease-skip", args=[lease.pk]), body, content_type="application/json")

    assert skip(first, {"reason": "blurry"}).status_code == 200
    assert skip(second, {}).status_code == 200
    assert skip(third, {"reason": "y" * 501}).status_code == 400
    reasons = dict(Lease.objects.filter(user=annotator).values_list("pk", "skip_reason"))
    statuses = dict(Lease.objects.filter(user=annotator).values_list("pk", "status"))
    assert reasons[first.pk] == "blurry" and reasons[second.pk] == "" and reasons[third.pk] == ""
    assert statuses[third.pk] == Lease.Status.ACTIVE


def test_reviewers_see_who_skipped_an_item_and_why(client, text_project, annotator):
    text_project.overlap = 2
    text_project.save()
    item = ItemFactory(project=text_project, external_id="kettle")
    reviewer, other = UserFactory(username="rev"), UserFactory(username="ola")
    MembershipFactory(project=text_project, user=reviewer, role=Membership.Role.REVIEWER)
    MembershipFactory(project=text_project, user=other, role=Membership.Role.ANNOTATOR)
    negative, positive = text_project.labels.get(name="negative"), text_project.labels.get(name="positive")
    services.lease_skip(lease_id=_lease(text_project, annotator).pk, user=annotator, reason="<b>sarcasm?</b>")
    Annotation.objects.create(item=item, annotator=other, label=negative)
    Annotation.objects.create(item=item, annotator=reviewer, label=positive)  # experts disagree: in review
    client.force_login(reviewer)

    page = client.get(reverse("review-item", args=[text_project.pk, item.pk]))
    api = client.get(reverse("api-review-items", args=[text_project.pk]))

    body = page.content.decode()
    assert page.status_code == 200 and "Skipped by" in body
    assert "<strong>annotator</strong>" in body and "&lt;b&gt;sarcasm?&lt;/b&gt;" in body
    (listed,) = api.json()["results"]
    assert [(s["expert"], s["reason"]) for s in listed["skips"]] == [("annotator", "<b>sarcasm?</b>")]
