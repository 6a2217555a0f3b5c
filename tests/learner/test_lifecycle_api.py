"""The lifecycle over REST: retrain, versions with history, roll back and promote with a reason."""
import pytest
from django.urls import reverse

from learner.models import LiveModel, ModelVersion, SwapHistory, TrainingRun
from learner.services.training import training_run_execute, training_run_request
from tests.factories import MembershipFactory, UserFactory

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
