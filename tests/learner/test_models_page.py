"""The models page: managers retrain, roll back and promote with a reason; others cannot."""
import pytest
from django.urls import reverse

from learner.models import LiveModel, TrainingRun
from learner.services.training import training_run_execute, training_run_request
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_manager_sees_versions_and_decisions_and_retrains(client, labeled_blobs, manager):
    run = training_run_request(project_id=labeled_blobs.pk, trigger="manual", evidence={"note": "x"})
    training_run_execute(run.pk)
    client.force_login(manager)
    page = client.get(reverse("project-models", args=[labeled_blobs.pk])).content.decode()
    assert "Live: <strong>v1</strong>" in page and "majority-class baseline" in page

    response = client.post(reverse("project-retrain", args=[labeled_blobs.pk]), {"note": "new batch"}, follow=True)
    assert "Retrain queued" in response.content.decode()
    assert TrainingRun.objects.filter(project=labeled_blobs, status="queued", trigger="manual").count() == 1
    again = client.post(reverse("project-retrain", args=[labeled_blobs.pk]), follow=True)
    assert "already queued or running" in again.content.decode()


def test_promote_without_reason_is_refused_with_a_message_then_rollback(client, labeled_blobs, manager):
    labeled_blobs.promotion_rule = "better"  # so that v2, trained on the same labels, is kept out
    labeled_blobs.save(update_fields=["promotion_rule"])
    for _ in range(2):
        training_run_execute(training_run_request(project_id=labeled_blobs.pk, trigger="manual", evidence={}).pk)
    client.force_login(manager)
    refused = client.post(reverse("model-version-promote", args=[labeled_blobs.pk, 2]), {"reason": ""}, follow=True)
    assert "a reason is required" in refused.content.decode()
    client.post(reverse("model-version-promote", args=[labeled_blobs.pk, 2]), {"reason": "checked by hand"})
    assert LiveModel.objects.get(project=labeled_blobs).version.number == 2
    client.post(reverse("model-version-rollback", args=[labeled_blobs.pk, 1]), {"reason": ""})
    assert LiveModel.objects.get(project=labeled_blobs).version.number == 1


def test_annotators_cannot_open_or_use_the_models_page(client, labeled_blobs):
    annotator = UserFactory(username="plain-annotator")
    MembershipFactory(project=labeled_blobs, user=annotator, role="annotator")
    client.force_login(annotator)
    assert client.get(reverse("project-models", args=[labeled_blobs.pk])).status_code == 404
    assert client.post(reverse("project-retrain", args=[labeled_blobs.pk])).status_code == 404
    assert not TrainingRun.objects.exists()
