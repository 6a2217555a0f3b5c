"""A manager chooses the featurizer, the model and the embedding field: the service's checks, what it sends, the API."""
import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from annotations.models import Project
from labelhub.api import DomainError
from labelhub.celery import TaskName
from learner.ml import registry
from learner.services.model_settings import SPARSE_BUILT_INS, model_settings_update
from learner.services.models import model_version_promote
from learner.services.triggers import requested_trigger
from tests.factories import MembershipFactory, ModelVersionFactory, UserFactory

pytestmark = pytest.mark.django_db

PLUGINS = {
    "tiny": "tests.settings_plugins.SettingsTinyText",
    "broken": "tests.settings_plugins.SettingsBrokenText",
    "sparse-tiny": "tests.settings_plugins.SettingsSparseText",
}


@pytest.fixture
def plugins(settings):
    settings.LABELHUB_FEATURIZER_PLUGINS = PLUGINS
    return PLUGINS


def _refused(project, manager, **changes) -> dict:
    with pytest.raises(DomainError) as refused:
        model_settings_update(project=project, user=manager, **changes)
    return refused.value.details


def _stored(project) -> tuple:
    return Project.objects.values_list("featurizer", "model_kind", "embedding_field").get(pk=project.pk)


def test_a_featurizer_this_kind_has_not_is_refused_by_name(text_project, manager, plugins, sent_tasks,
                                                           django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        for key in ("word2vec", "image-hog", "tabular"):
            details = _refused(text_project, manager, featurizer=key)
            assert list(details) == ["featurizer"]
            assert f"“{key}” is not a featurizer of text projects here" in details["featurizer"][0]
            assert "text-hashed, text-tfidf, embeddings, broken, sparse-tiny, tiny" in details["featurizer"][0]
    assert _stored(text_project) == ("", "logistic", "embedding") and sent_tasks == []


def test_histogram_gradient_boosting_is_refused_on_sparse_text_features(text_project, tabular_project, manager,
                                                                       plugins, sent_tasks):
    details = _refused(text_project, manager, model_kind="hist_gb")
    assert details["model_kind"][0].startswith("Histogram gradient boosting needs dense features; “Hashed word 1–2-grams")
    details = _refused(text_project, manager, featurizer="text-tfidf", model_kind="hist_gb")
    assert "“TF-IDF over word 1–2-grams" in details["model_kind"][0]
    # A plugin says whether its rows are sparse; the refusal names the setting being changed.
    model_settings_update(project=text_project, user=manager, featurizer="tiny", model_kind="hist_gb")
    details = _refused(text_project, manager, featurizer="sparse-tiny")
    assert list(details) == ["featurizer"] and "gives sparse ones" in details["featurizer"][0]
    assert _stored(text_project) == ("tiny", "hist_gb", "embedding")
    # Dense features take it: numeric columns, or the tiny plugin's eight numbers.
    model_settings_update(project=tabular_project, user=manager, model_kind="hist_gb")
    assert _stored(tabular_project)[1] == "hist_gb"


def test_the_built_ins_known_as_sparse_are_those_with_sparse_rows():
    """The service knows without building them (which would import scikit-learn into the web process)."""
    for key, (_, kinds) in registry.BUILT_INS.items():
        assert registry.featurizer_for(kinds[0], key, embedding_dim=4).sparse == (key in SPARSE_BUILT_INS), key


def test_a_plugin_that_does_not_load_is_refused_with_its_message(text_project, manager, plugins, sent_tasks):
    details = _refused(text_project, manager, featurizer="broken")
    assert details["featurizer"] == [
        "“Plugin: broken (tests.settings_plugins.SettingsBrokenText)” cannot be used: featurizer plugin 'broken' "
        "(tests.settings_plugins.SettingsBrokenText) does not load: FileNotFoundError: tiny-model.bin is missing."]
    assert _stored(text_project)[0] == "" and sent_tasks == []


def test_bad_models_and_embedding_fields_are_refused_together(text_project, manager, sent_tasks):
    details = _refused(text_project, manager, model_kind="xgboost", embedding_field="clip vector")
    assert details["model_kind"] == ["Choose one of the models: logistic, linear_svm, hist_gb, random_forest "
                                     "(got “xgboost”)."]
    assert "letters, digits or underscores" in details["embedding_field"][0]
    for field in ("", "x" * 65, "a-b", "vec\u00e9"):
        assert "embedding_field" in _refused(text_project, manager, embedding_field=field)
    assert _stored(text_project) == ("", "logistic", "embedding") and sent_tasks == []


def test_the_same_values_change_and_send_nothing(text_project, manager, plugins, sent_tasks,
                                                 django_capture_on_commit_callbacks):
    stamp = Project.objects.get(pk=text_project.pk).updated_at
    with django_capture_on_commit_callbacks(execute=True):
        # "" and the kind's default key name the same featurizer.
        model_settings_update(project=text_project, user=manager, featurizer="text-hashed", model_kind="logistic",
                              embedding_field="embedding")
        model_settings_update(project=text_project, user=manager, featurizer="")
        model_settings_update(project=text_project, user=manager)
    assert sent_tasks == []
    assert Project.objects.get(pk=text_project.pk).updated_at == stamp


def test_a_new_featurizer_recomputes_the_features_and_clears_the_old_failure(text_project, manager, plugins,
                                                                            sent_tasks,
                                                                            django_capture_on_commit_callbacks):
    Project.objects.filter(pk=text_project.pk).update(features_error="the old plugin failed")
    with django_capture_on_commit_callbacks(execute=True):
        project = model_settings_update(project=text_project, user=manager, featurizer="tiny")
    assert sent_tasks == [(TaskName.FEATURES_REFRESH, [text_project.pk, None])]
    assert (project.featurizer, project.features_error) == ("tiny", "")
    assert Project.objects.values_list("featurizer", "features_error").get(pk=text_project.pk) == ("tiny", "")

    sent_tasks.clear()
    with django_capture_on_commit_callbacks(execute=True):
        model_settings_update(project=project, user=manager, featurizer="text-hashed")  # back to the default
        model_settings_update(project=project, user=manager, embedding_field="clip_vector")
    assert _stored(text_project) == ("", "logistic", "clip_vector")
    assert sent_tasks == [(TaskName.FEATURES_REFRESH, [text_project.pk, None])] * 2


def test_a_new_model_asks_for_a_retrain_that_says_why(text_project, manager, sent_tasks,
                                                      django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        model_settings_update(project=text_project, user=manager, model_kind="random_forest")
    assert sent_tasks == [(TaskName.RETRAIN_REQUESTED, [text_project.pk, manager.pk, "Model changed to Random forest"])]
    run = requested_trigger(*sent_tasks[0][1])
    assert run.trigger_sentence == "Requested by manager: “Model changed to Random forest”."


def test_embeddings_may_be_chosen_before_any_vector_and_the_settings_say_so(client, text_project, manager,
                                                                           sent_tasks,
                                                                           django_capture_on_commit_callbacks):
    client.force_login(manager)
    url = reverse("api-model-settings", args=[text_project.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.patch(url, {"featurizer": "embeddings"}, content_type="application/json")
    assert response.status_code == 200
    body = response.json()
    assert body["featurizer"] == {"key": "embeddings", "label": "Imported embeddings"}
    assert body["embedding_dim"] is None
    assert body["notice"].startswith("No embeddings are imported yet: items get features once an import brings "
                                     "their vectors (field “embedding”)")
    assert sent_tasks == [(TaskName.FEATURES_REFRESH, [text_project.pk, None])]


def test_only_managers_change_the_settings(text_project, annotator):
    with pytest.raises(PermissionDenied):
        model_settings_update(project=Project.objects.get(pk=text_project.pk), user=annotator, model_kind="hist_gb")


# The REST endpoint


def test_members_read_the_settings_with_their_choices_and_the_live_model(client, text_project, annotator, plugins):
    version = ModelVersionFactory(project=text_project, feature_space="text-word12-hash-v1:2^18",
                                  algorithm="logistic regression")
    model_version_promote(version, reason="first")
    Project.objects.filter(pk=text_project.pk).update(features_error="featurizer plugin 'x' failed")
    client.force_login(annotator)
    body = client.get(reverse("api-model-settings", args=[text_project.pk])).json()
    assert body["featurizer"] == {"key": "text-hashed", "label": "Hashed word 1–2-grams (default)"}
    assert [c["key"] for c in body["featurizer_choices"]] == [
        "text-hashed", "text-tfidf", "embeddings", "broken", "sparse-tiny", "tiny"]
    assert (body["model_kind"], body["model_kind_label"]) == ("logistic", "Logistic regression")
    assert [c["key"] for c in body["model_choices"]] == ["logistic", "linear_svm", "hist_gb", "random_forest"]
    assert (body["embedding_field"], body["embedding_dim"], body["notice"]) == ("embedding", None, "")
    assert body["features_error"] == "featurizer plugin 'x' failed"
    assert body["live"] == {"number": version.number, "algorithm": "logistic regression",
                            "feature_space": "text-word12-hash-v1:2^18"}


def test_a_manager_changes_the_model_and_others_may_not(client, text_project, manager, annotator, sent_tasks,
                                                        django_capture_on_commit_callbacks):
    reviewer, outsider = UserFactory(username="reviewer"), UserFactory(username="outsider")
    MembershipFactory(project=text_project, user=reviewer, role="reviewer")
    url = reverse("api-model-settings", args=[text_project.pk])
    for user, status in ((annotator, 403), (reviewer, 403), (outsider, 404)):
        client.force_login(user)
        response = client.patch(url, {"model_kind": "random_forest"}, content_type="application/json")
        assert response.status_code == status
    assert client.get(url).status_code == 404  # the outsider does not learn that the project exists
    client.force_login(reviewer)
    assert "Only the project's managers" in client.patch(url, {"model_kind": "x"},
                                                         content_type="application/json").json()["detail"]
    assert _stored(text_project)[1] == "logistic" and sent_tasks == []

    client.force_login(manager)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.patch(url, {"model_kind": "random_forest"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["model_kind_label"] == "Random forest"
    assert sent_tasks == [(TaskName.RETRAIN_REQUESTED, [text_project.pk, manager.pk, "Model changed to Random forest"])]


def test_bad_input_answers_400_naming_the_field(client, text_project, manager, plugins, sent_tasks):
    client.force_login(manager)
    url = reverse("api-model-settings", args=[text_project.pk])
    cases = [
        ({"featurizer": "word2vec"}, "featurizer", "“word2vec” is not a featurizer of text projects here"),
        ({"featurizer": "broken"}, "featurizer", "FileNotFoundError: tiny-model.bin is missing"),
        ({"model_kind": "hist_gb"}, "model_kind", "Histogram gradient boosting needs dense features"),
        ({"model_kind": "xgboost"}, "model_kind", "is not a valid choice"),
        ({"embedding_field": "clip-vector"}, "embedding_field", "letters, digits or underscores"),
        ({"embedding_field": "x" * 65}, "embedding_field", "no more than 64 characters"),
        ({"featurizer": None}, "featurizer", "may not be null"),
    ]
    for body, field, message in cases:
        response = client.patch(url, body, content_type="application/json")
        assert response.status_code == 400, body
        assert message in response.json()["errors"][field][0], response.json()
    assert _stored(text_project) == ("", "logistic", "embedding") and sent_tasks == []
