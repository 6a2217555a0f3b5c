"""The "Model and features" page, its links, and a failed feature job's message on the import page and dashboard."""
import pytest
from django.urls import reverse

from annotations.models import ImportJob, Project
from labelhub.celery import TaskName
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

FEATURIZER_SENTENCE = ("Changing the featurizer recomputes every item's features in the background; the live model keeps "
                       "serving until a model on the new features proves itself better (promotion rule 'better', an A/B "
                       "experiment, or a manager).")
HOSTILE = "<script>alert(1)</script>"


def _page(client, project, **data):
    url = reverse("project-model-settings", args=[project.pk])
    return client.post(url, data) if data else client.get(url)


def test_a_manager_sees_the_choices_and_what_a_change_does(client, text_project, manager, settings):
    settings.LABELHUB_FEATURIZER_PLUGINS = {"tiny": "tests.settings_plugins.SettingsTinyText"}
    client.force_login(manager)
    response = _page(client, text_project)
    assert response.status_code == 200
    page = response.content.decode()
    assert "<small>Model and features</small>" in page and FEATURIZER_SENTENCE in page
    assert '<input type="radio" name="featurizer" value="text-hashed" checked>' in page
    assert "Plugin: tiny (tests.settings_plugins.SettingsTinyText)" in page
    assert '<input type="radio" name="model_kind" value="logistic" checked>' in page
    assert "Changing the model asks for a retrain" in page
    assert 'name="embedding_field" value="embedding"' in page
    assert "Dimension: not known yet: the first vector imported fixes it." in page
    assert "No model is live yet." in page


def test_others_do_not_find_the_page(client, text_project, annotator):
    reviewer = UserFactory(username="reviewer")
    MembershipFactory(project=text_project, user=reviewer, role="reviewer")
    for user in (annotator, reviewer):
        client.force_login(user)
        assert _page(client, text_project).status_code == 404
        assert _page(client, text_project, model_kind="random_forest").status_code == 404
    assert Project.objects.get(pk=text_project.pk).model_kind == "logistic"


def test_bad_input_is_shown_on_the_page_and_nothing_is_saved(client, text_project, manager, sent_tasks):
    client.force_login(manager)
    response = _page(client, text_project, featurizer="text-hashed", model_kind="hist_gb", embedding_field=HOSTILE)
    assert response.status_code == 400
    page = response.content.decode()
    assert "Nothing was saved: correct the settings below." in page
    assert "Embedding field: Name the embedding field with 1 to 64 letters, digits or underscores" in page
    assert "Model: Histogram gradient boosting needs dense features; “Hashed word 1–2-grams (default)” gives sparse " \
           "ones." in page
    # The page shows what was chosen and typed, escaped.
    assert '<input type="radio" name="model_kind" value="hist_gb" checked>' in page
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert Project.objects.values_list("model_kind", "embedding_field").get(pk=text_project.pk) == (
        "logistic", "embedding")
    assert sent_tasks == []


def test_a_saved_change_says_what_happens_next(client, text_project, manager, sent_tasks,
                                               django_capture_on_commit_callbacks):
    client.force_login(manager)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("project-model-settings", args=[text_project.pk]),
                               {"featurizer": "embeddings", "model_kind": "random_forest"}, follow=True)
    page = response.content.decode()
    assert response.redirect_chain[-1] == (reverse("project-model-settings", args=[text_project.pk]), 302)
    assert "Featurizer set to “Imported embeddings”: every item&#x27;s features are being recomputed" in page
    assert "Model set to Random forest: a retrain is asked for" in page
    assert "No embeddings are imported yet" in page
    assert sorted(name for name, _ in sent_tasks) == [TaskName.FEATURES_REFRESH, TaskName.RETRAIN_REQUESTED]

    response = client.post(reverse("project-model-settings", args=[text_project.pk]),
                           {"featurizer": "embeddings", "model_kind": "random_forest"}, follow=True)
    assert "Nothing changed: these are the settings the project already has." in response.content.decode()


def test_the_settings_and_versions_pages_link_to_it(client, text_project, manager):
    client.force_login(manager)
    url = reverse("project-model-settings", args=[text_project.pk])
    for name in ("project-settings", "project-models"):
        assert f'href="{url}"' in client.get(reverse(name, args=[text_project.pk])).content.decode()


def test_a_failed_feature_job_shows_its_message_on_the_import_page(client, text_project, manager):
    ImportJob.objects.create(project=text_project, created_by=manager, filename="reviews.csv",
                             status=ImportJob.Status.DONE, features_status=ImportJob.Status.FAILED,
                             features_message=f"featurizer plugin 'tiny' failed: {HOSTILE}")
    client.force_login(manager)
    page = client.get(reverse("project-import", args=[text_project.pk])).content.decode()
    assert "Features failed: featurizer plugin &#x27;tiny&#x27; failed: &lt;script&gt;" in page
    assert HOSTILE not in page


def test_the_dashboard_warns_while_features_cannot_be_computed(client, text_project, manager):
    client.force_login(manager)
    assert "Features could not be computed" not in client.get(reverse("project-dashboard", args=[text_project.pk])).content.decode()
    Project.objects.filter(pk=text_project.pk).update(features_error=f"featurizer plugin 'tiny' failed: {HOSTILE}")
    page = client.get(reverse("project-dashboard", args=[text_project.pk])).content.decode()
    assert 'role="alert"' in page
    assert "Features could not be computed: featurizer plugin &#x27;tiny&#x27; failed: &lt;script&gt;" in page
    assert HOSTILE not in page
    assert f'href="{reverse("project-model-settings", args=[text_project.pk])}"' in page
