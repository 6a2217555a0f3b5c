"""The lifecycle over REST: retrain, versions with history, roll back and promote with a reason."""
import pytest
from django.urls import reverse

from learner.models import LiveModel, ModelVersion, SwapHistory, TrainingRun
from learner.services.training import training_run_execute, training_run_request
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.learner.conftest import versions_made

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_versions(labeled_blobs):
    """v1 promoted by the gate, v2 trained on the same labels and kept out by it (rule 'better': no gain)."""
    labeled_blobs.promotion_rule = "better"
    labeled_blobs.save(update_fields=["promotion_rule"])
    for _ in range(2):
        run = training_run_request(project_id=labeled_blobs.pk, trigger="manual", evidence={})
        training_run_execute(run.pk)
    assert list(ModelVersion.objects.filter(project=labeled_blobs).order_by("number").values_list("status", flat=True)) == [
        "live", "not_promoted"
    ]
    return labeled_blobs


@pytest.fixture
def reviewer_user(many_versions):
    user = UserFactory(username="rita-reviewer")
    MembershipFactory(project=many_versions, user=user, role="reviewer")
    return user


def test_manager_retrains_once_at_a_time(client, labeled_blobs, manager):
    client.force_login(manager)
    url = reverse("api-retrain", args=[labeled_blobs.pk])
    first = client.post(url, {"note": "new guidelines"}, content_type="application/json")
    assert first.status_code == 202 and first.json()["trigger"] == "manual"
    second = client.post(url, {}, content_type="application/json")
    assert second.status_code == 409 and "already queued or running" in second.json()["detail"]
    assert TrainingRun.objects.filter(project=labeled_blobs).count() == 1


def test_annotators_cannot_retrain_or_roll_back(client, labeled_blobs):
    annotator = UserFactory(username="annotator-only")
    MembershipFactory(project=labeled_blobs, user=annotator, role="annotator")
    client.force_login(annotator)
    assert client.post(reverse("api-retrain", args=[labeled_blobs.pk])).status_code == 404
    assert client.get(reverse("api-model-versions", args=[labeled_blobs.pk])).status_code == 404


def test_promote_needs_a_reason_and_rollback_restores_the_earlier_version(client, two_versions, manager):
    client.force_login(manager)
    promote = reverse("api-model-version-promote", args=[two_versions.pk, 2])
    refused = client.post(promote, {"reason": " "}, content_type="application/json")
    assert refused.status_code == 400 and "reason is required" in refused.json()["detail"]

    done = client.post(promote, {"reason": "reviewed the confusion matrix"}, content_type="application/json")
    assert done.status_code == 200 and done.json()["to_version"] == 2
    assert LiveModel.objects.get(project=two_versions).version.number == 2

    never_live = client.post(reverse("api-model-version-rollback", args=[two_versions.pk, 2]))
    assert never_live.status_code == 400
    back = client.post(reverse("api-model-version-rollback", args=[two_versions.pk, 1]),
                       {"reason": "v2 confuses 3 and 8"}, content_type="application/json")
    assert back.status_code == 200 and (back.json()["from_version"], back.json()["to_version"]) == (2, 1)
    assert LiveModel.objects.get(project=two_versions).version.number == 1

    listing = client.get(reverse("api-model-versions", args=[two_versions.pk])).json()
    assert listing["live"] == 1
    assert [(h["from_version"], h["to_version"], h["trigger"]) for h in listing["history"]] == [
        (2, 1, "rollback"), (1, 2, "manual"), (None, 1, "manual"),
    ]
    assert SwapHistory.objects.filter(project=two_versions).count() == 3


def test_versions_and_runs_say_their_verdicts_and_triggers_in_the_page_words(client, two_versions, manager):
    client.force_login(manager)
    versions = client.get(reverse("api-model-versions", args=[two_versions.pk])).json()["versions"]
    by_number = {v["number"]: v for v in versions}
    assert by_number[1]["status_display"] == "Live"
    assert by_number[1]["decision_sentence"].startswith("Promoted: beats the majority-class baseline")
    assert by_number[2]["status_display"] == "Not promoted"
    assert by_number[2]["decision_sentence"].startswith(
        "Not promoted: not enough evidence yet that it is better than v1"
    )
    runs = client.get(reverse("api-runs", args=[two_versions.pk])).json()
    assert [run["verdict"] for run in runs] == ["not_promoted", "live"]
    assert runs[0]["trigger_sentence"] == "Requested by a manager."
    assert runs[0]["decision_sentence"] == by_number[2]["decision_sentence"]


def numbers(body: dict) -> list[int]:
    return [v["number"] for v in body["versions"]]


def test_versions_come_newest_first_a_limit_at_a_time_with_the_totals(client, many_versions, reviewer_user):
    client.force_login(reviewer_user)
    url = reverse("api-model-versions", args=[many_versions.pk])
    first = client.get(url).json()
    # 100 at most by default, of 120; the history's 61 swaps all fit, the rollback to the live v5 first.
    assert first["live"] == 5 and (first["versions_total"], first["history_total"]) == (120, 61)
    assert numbers(first) == list(range(120, 20, -1))
    assert len(first["history"]) == 61 and first["history"][0]["trigger"] == "rollback"
    assert (first["history"][0]["from_version"], first["history"][0]["to_version"]) == (60, 5)
    assert first["history"][-1]["from_version"] is None and first["history"][-1]["to_version"] == 1

    page = client.get(url, {"limit": 50, "before": 71}).json()
    assert numbers(page) == list(range(70, 20, -1)) and page["versions_total"] == 120
    assert numbers(client.get(url, {"limit": 50, "before": 21}).json()) == list(range(20, 0, -1))
    assert numbers(client.get(url, {"before": 1}).json()) == []


def test_the_history_pages_back_with_history_before(client, many_versions, reviewer_user):
    client.force_login(reviewer_user)
    url = reverse("api-model-versions", args=[many_versions.pk])
    seen = []
    query = {"limit": 25}
    while True:
        body = client.get(url, query).json()
        assert body["history_total"] == 61 and len(body["history"]) <= 25 and len(body["versions"]) == 25
        if not body["history"]:
            break
        seen += body["history"]
        query["history_before"] = body["history"][-1]["id"]
    assert len(seen) == 61 and [h["id"] for h in seen] == sorted((h["id"] for h in seen), reverse=True)
    assert [h["to_version"] for h in seen] == [5, *range(60, 0, -1)]


@pytest.mark.parametrize("query", [
    {"limit": "-1"}, {"limit": "0"}, {"limit": "abc"}, {"limit": str(10**9)}, {"limit": "2.5"},
    {"before": "0"}, {"before": "abc"}, {"before": str(2**31)}, {"history_before": "-1"},
    {"history_before": str(2**63)},
])
def test_bad_limits_and_bounds_are_refused_with_the_field_named(client, many_versions, reviewer_user, query):
    client.force_login(reviewer_user)
    response = client.get(reverse("api-model-versions", args=[many_versions.pk]), query)
    assert response.status_code == 400
    assert set(response.json()["errors"]) == set(query)


def test_the_limit_goes_up_to_the_api_page_maximum(client, many_versions, reviewer_user, settings):
    client.force_login(reviewer_user)
    url = reverse("api-model-versions", args=[many_versions.pk])
    most = settings.LABELHUB_API_MAX_PAGE_SIZE
    assert client.get(url, {"limit": most}).status_code == 200
    assert client.get(url, {"limit": most + 1}).status_code == 400


def test_the_versions_api_reads_as_many_times_for_120_versions_as_for_two(
    client, many_versions, reviewer_user, manager, django_assert_num_queries
):
    small = ProjectFactory()
    versions_made(small, 2, live=1, actor=manager)
    MembershipFactory(project=small, user=reviewer_user, role="reviewer")
    client.force_login(reviewer_user)
    # session, user, project with role, live version's number, versions, their count, swaps, their count
    for project in (small, many_versions):
        with django_assert_num_queries(8):
            assert client.get(reverse("api-model-versions", args=[project.pk])).status_code == 200
