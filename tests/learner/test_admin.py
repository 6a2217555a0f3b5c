"""The Django admin: every model's list opens, and the lifecycle actions call the services with a message each."""
import pytest
from django.apps import apps
from django.contrib import admin
from django.db.models import CompositePrimaryKey
from django.http import HttpResponse
from django.urls import NoReverseMatch, path, reverse

from labelhub.celery import app as celery_app
from labelhub.urls import urlpatterns as site_urlpatterns
from learner.models import DriftCheck, LiveModel, ModelVersion, SwapHistory, TrainingRun
from learner.services.models import model_version_force_promote
from learner.services.training import training_run_execute, training_run_request
from tests.factories import ProjectFactory, UserFactory
from tests.sent_tasks import send_task_fake

pytestmark = pytest.mark.django_db

try:
    reverse("api-project-export", args=[1])
    urlpatterns = site_urlpatterns
except NoReverseMatch:
    # The REST export lives in the annotations API; where it is not merged yet, a stand-in with its
    # name and path lets the admin action's redirect be checked.
    urlpatterns = [*site_urlpatterns, path("api/projects/<int:project_id>/export", lambda request, project_id: HttpResponse(),
                                           name="api-project-export")]


@pytest.fixture
def staff(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def versions(labeled_blobs, manager):
    """v1 promoted by the gate, v2 kept out (rule 'better') and promoted anyway: v1 retired, v2 live."""
    labeled_blobs.promotion_rule = "better"
    labeled_blobs.save(update_fields=["promotion_rule"])
    for _ in range(2):
        training_run_execute(training_run_request(project_id=labeled_blobs.pk, trigger="manual", evidence={}).pk)
    model_version_force_promote(version=ModelVersion.objects.get(project=labeled_blobs, number=2), actor=manager,
                                reason="by hand")
    DriftCheck.objects.create(project=labeled_blobs, model_version=2, evidence={"enough_data": False})
    return labeled_blobs


def test_every_model_has_an_admin_whose_list_and_pages_open(client, staff, versions):
    client.force_login(staff)
    # Django's admin cannot show a model with a composite primary key (ItemScore: scoring, item); its
    # scorings are in the admin instead.
    ours = [
        m for m in apps.get_models()
        if m._meta.app_label in ("annotations", "learner") and not isinstance(m._meta.pk, CompositePrimaryKey)
    ]
    missing = [m.__name__ for m in ours if m not in admin.site._registry]
    assert missing == []
    for model in ours:
        meta = model._meta
        changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        response = client.get(changelist)
        assert response.status_code == 200, changelist
        obj = model.objects.first()
        if obj is not None:
            change = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
            assert client.get(change).status_code == 200, change
    assert "v2" in client.get(reverse("admin:annotations_project_changelist")).content.decode()


def run_action(client, model, action: str, ids: list, *, follow: bool = True):
    meta = model._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    return client.post(url, {"action": action, "_selected_action": ids}, follow=follow)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_version_actions_roll_back_and_promote_with_a_message_each(client, staff, versions):
    client.force_login(staff)
    v1, v2 = (ModelVersion.objects.get(project=versions, number=n) for n in (1, 2))
    response = run_action(client, ModelVersion, "roll_back", [v1.pk])
    assert messages_of(response) == ["Wine v1 is live again; the pool will be rescored."]
    assert LiveModel.objects.get(project=versions).version_id == v1.pk
    assert SwapHistory.objects.filter(to_version=v1, trigger="rollback", actor=staff).exists()

    response = run_action(client, ModelVersion, "roll_back", [v1.pk])
    assert messages_of(response) == ["Wine v1: Version 1 is already live."]

    response = run_action(client, ModelVersion, "promote", [v2.pk])
    assert messages_of(response) == ["Wine v2 is live; the pool will be rescored."]
    assert LiveModel.objects.get(project=versions).version_id == v2.pk
    assert SwapHistory.objects.filter(to_version=v2, reason="Promoted by a manager: from the admin by root").exists()

    # Two versions of one project cannot both go live: nothing happens, and the message says why.
    response = run_action(client, ModelVersion, "promote", [v1.pk, v2.pk])
    assert messages_of(response) == ["Wine: select one version, not v1, v2."]
    assert LiveModel.objects.get(project=versions).version_id == v2.pk


def test_project_actions_retrain_and_rescore(client, staff, versions, monkeypatch, django_capture_on_commit_callbacks):
    other = ProjectFactory(name="Other")
    client.force_login(staff)
    response = run_action(client, versions.__class__, "retrain_now", [versions.pk, other.pk])
    runs = {run.project_id: run for run in TrainingRun.objects.filter(status="queued")}
    assert set(runs) == {versions.pk, other.pk} and runs[versions.pk].evidence["note"] == "admin action"
    assert sorted(messages_of(response)) == sorted([f"Wine: retrain queued (run {runs[versions.pk].pk}).",
                                                    f"Other: retrain queued (run {runs[other.pk].pk})."])
    again = run_action(client, versions.__class__, "retrain_now", [versions.pk])
    assert messages_of(again) == ["Wine: a run is already queued or running."]

    sent = []
    with monkeypatch.context() as patched:
        patched.setattr(celery_app, "send_task", send_task_fake(sent))
        with django_capture_on_commit_callbacks(execute=True):
            response = run_action(client, versions.__class__, "rescore", [versions.pk])
    assert messages_of(response) == ["Wine: rescoring of the pool by v2 queued."]
    assert sent == [("learner.score_pool", [versions.pk, 0])]


@pytest.mark.urls(__name__)
def test_export_action_downloads_one_project_and_explains_several(client, staff, versions):
    other = ProjectFactory(name="Other")
    client.force_login(staff)
    response = run_action(client, versions.__class__, "export_annotations", [versions.pk], follow=False)
    assert response.status_code == 302
    assert response["Location"] == f"/api/projects/{versions.pk}/export?format=jsonl"
    several = run_action(client, versions.__class__, "export_annotations", [versions.pk, other.pk])
    assert messages_of(several) == [
        "Export one project at a time: select a single project (each export is its own download)."]
