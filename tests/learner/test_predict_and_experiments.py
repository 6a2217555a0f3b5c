"""Predictions and A/B experiments: the predict API, its errors, sticky splits, shadows, outcomes and decisions."""
import json
import re

import numpy as np
import pytest
from django.urls import reverse

from annotations.models import Project
from labelhub.api import DomainError
from learner import tasks
from learner.ml.featurize import TextFeaturizer
from learner.ml.training import fit
from learner.models import Experiment, LiveModel, PredictionLog, SwapHistory
from learner.services import experiments as experiment_services
from learner.services import models as model_services
from learner.services import predict as predict_services
from learner.services.models import model_version_create, model_version_promote
from tests.factories import AnnotationFactory, MembershipFactory, UserFactory, api_client_for
from tests.learner.conftest import blob_items

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    model_services._cache.clear()


def _version(project, X, y):
    labels = [label.pk for label in project.labels.order_by("order")[:2]]
    pipeline = fit("tabular", X, np.asarray(labels)[y])
    return model_version_create(
        project=project, pipeline=pipeline, classes=labels, feature_space="tabular-v1:2",
        algorithm="logistic regression", hyperparameters={}, label_snapshot_hash="s", labels_used=len(y),
    )


@pytest.fixture
def blobs(tabular_project):
    """A project of two blobs with a weak live champion (it learnt from noisy labels) and two challengers."""
    project: Project = tabular_project
    project.feature_names = ["x0", "x1"]
    project.save()
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 2)) * 2.5
    truth = (X[:, 0] + X[:, 1] > 0).astype(int)
    champion = _version(project, X, (X[:, 0] - 2 * X[:, 1] > 0).astype(int))  # a wrong boundary: ~70% right
    better = _version(project, X, truth)
    model_version_promote(champion, reason="first", trigger="manual")
    same = _version(project, X, (X[:, 0] - 2 * X[:, 1] > 0).astype(int))
    project.versions = {"champion": champion, "better": better, "same": same}
    return project


def _post(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


def test_predict_one_and_a_batch(client, blobs, manager):
    client.force_login(manager)
    url = reverse("api-predict", args=[blobs.pk])
    one = _post(client, url, {"values": [3.0, 3.0]})
    assert one.status_code == 200, one.json()
    body = one.json()
    assert body["model_version"] == 1 and body["label"] in ("class_0", "class_1")
    assert set(body["probabilities"]) == {"class_0", "class_1"}
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-4
    named = _post(client, url, {"values": {"x0": 3.0, "x1": 3.0}}).json()
    assert named["label"] == body["label"]
    batch = _post(client, url, {"items": [{"values": [float(i), -1.0]} for i in range(-5, 5)]})
    assert batch.status_code == 200
    predictions = batch.json()["predictions"]
    assert len(predictions) == 10 and len({p["prediction_id"] for p in predictions}) == 10
    logged = PredictionLog.objects.filter(pk__in=[p["prediction_id"] for p in predictions]).order_by("pk")
    assert [log.label_id for log in logged] == [p["label_id"] for p in predictions]


def test_predict_by_item_id_featurizes_as_training_did(client, blobs, manager):
    items = blob_items(blobs, np.random.default_rng(1), 4)
    client.force_login(manager)
    url = reverse("api-predict", args=[blobs.pk])
    by_id = _post(client, url, {"items": [{"item_id": item.pk} for item in reversed(items)]}).json()["predictions"]
    by_value = _post(client, url, {"items": [{"values": item.values} for item in reversed(items)]}).json()["predictions"]
    assert [p["probabilities"]["class_1"] for p in by_id] == pytest.approx(
        [p["probabilities"]["class_1"] for p in by_value], abs=1e-5)
    mixed = _post(client, url, {"items": [{"item_id": items[0].pk}, {"values": items[1].values}]}).json()["predictions"]
    assert [p["label_id"] for p in mixed] == [by_id[3]["label_id"], by_id[2]["label_id"]]
    assert PredictionLog.objects.filter(item_id=items[0].pk).exists()


@pytest.mark.parametrize("body, fragment", [
    ("{not json", "JSON"),
    ("[1, 2]", "object"),
    ('{"values": "3,3"}', "list"),
    ('{"values": [1.0]}', "2 features"),
    ('{"values": [1.0, 2.0, 3.0]}', "2 features"),
    ('{"values": [1.0, NaN]}', ""),
    ('{"values": [1.0, Infinity]}', ""),
    ('{"values": [1.0, 1e999]}', "finite"),
    ('{"values": [1.0, 1e300]}', "finite"),
    ('{"values": [1.0, null]}', "finite"),
    ('{"values": [1.0, "a"]}', "numeric"),
    ('{"values": [[1.0], 2.0]}', ""),
    ('{"values": {"x0": 1.0}}', "x1"),
    ('{"item_id": 999999999}', "Unknown item"),
    ('{"item_id": "7"}', "positive integer"),
    ('{"item_id": 99999999999999999999999}', "positive integer"),
    ('{"text": "hello"}', "values"),
    ('{"items": []}', "at least one"),
    ('{"items": {"values": [1, 2]}}', "list"),
    ('{"items": [1, 2]}', "object"),
    ('{"items": [{"values": [1, 2]}], "caller": 5}', "caller"),
    # Integers no float holds (JSON has no limit): the conversion raised OverflowError, a 500.
    ('{"values": [1%s, 1.0]}' % ("0" * 400), "items[0]: values must be finite"),
    ('{"values": {"x0": 1%s, "x1": 1.0}}' % ("0" * 400), "items[0]: values must be finite"),
    ('{"items": [{"values": [1, 2]}, {"values": [2, -1%s]}]}' % ("0" * 400), "items[1]: values must be finite"),
    # Strings no database stores or encoder takes: refused by the API's JSON parser, wherever they are.
    ('{"values": [1, 2], "note": "a\\ud800"}', "lone surrogate"),
    ('{"items": [{"values": [1, 2], "tag": "a\\u0000"}]}', "NUL character"),
])
def test_bad_predict_payloads_are_400s(client, blobs, manager, body, fragment):
    client.force_login(manager)
    response = client.post(reverse("api-predict", args=[blobs.pk]), body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert fragment in json.dumps(response.json())


def test_the_predict_service_refuses_text_no_encoder_takes(text_project, manager):
    labels = [label.pk for label in text_project.labels.order_by("order")]
    X = TextFeaturizer().transform(["good film", "great fun", "bad film", "awful plot"])
    version = model_version_create(
        project=text_project, pipeline=fit("text", X, np.asarray(labels)[[1, 1, 0, 0]]), classes=labels,
        feature_space=TextFeaturizer.space, algorithm="logistic regression", hyperparameters={},
        label_snapshot_hash="s", labels_used=4,
    )
    model_version_promote(version, reason="first", trigger="manual")
    with pytest.raises(DomainError, match=re.escape("items[1]: text contains a lone surrogate (\\udfff)")):
        predict_services.predict(project=text_project, items=[{"text": "fine"}, {"text": "bad \udfff"}],
                                 client_id=manager.pk)


def test_an_oversize_batch_is_a_400(client, blobs, manager, settings):
    settings.LABELHUB_PREDICT_MAX_BATCH = 5
    client.force_login(manager)
    response = _post(client, reverse("api-predict", args=[blobs.pk]), {"items": [{"values": [1, 2]}] * 6})
    assert response.status_code == 400 and "at most 5" in response.json()["detail"]


def test_predict_is_for_api_clients_and_managers_and_needs_a_live_model(client, blobs, annotator):
    url = reverse("api-predict", args=[blobs.pk])
    client.force_login(annotator)
    assert _post(client, url, {"values": [1, 2]}).status_code == 404  # a stranger
    for role in ("annotator", "reviewer"):
        MembershipFactory(project=blobs, user=annotator, role=role)
        assert _post(client, url, {"values": [1, 2]}).status_code == 404, role
        annotator.memberships.all().delete()
    _service, as_service = api_client_for(blobs)
    assert _post(as_service, url, {"values": [1, 2]}).status_code == 200
    LiveModel.objects.filter(project=blobs).update(version=None)
    assert _post(as_service, url, {"values": [1, 2]}).status_code == 409


def test_feedback_records_the_true_label_and_refuses_bad_input(client, blobs, manager):
    client.force_login(manager)
    prediction = _post(client, reverse("api-predict", args=[blobs.pk]), {"values": [3, 3]}).json()
    url = reverse("api-prediction-feedback", args=[blobs.pk, prediction["prediction_id"]])
    assert _post(client, url, {"label": "class_1"}).status_code == 200
    assert PredictionLog.objects.get(pk=prediction["prediction_id"]).true_label_id == blobs.labels.get(name="class_1").pk
    missing = reverse("api-prediction-feedback", args=[blobs.pk, prediction["prediction_id"] + 1000])
    assert _post(client, missing, {"label": "class_1"}).status_code == 404
    assert _post(client, reverse("api-prediction-feedback", args=[blobs.pk, 2**63 + 5]), {"label": "class_1"}).status_code == 404
    assert _post(client, url, {"label": "no-such-label"}).status_code == 400
    assert _post(client, url, {"label_id": "abc"}).status_code == 400
    assert _post(client, url, {}).status_code == 400
    assert _post(client, url, {"label": "class_1", "label_id": 1}).status_code == 400
    assert client.post(url, "{oops", content_type="application/json").status_code == 400


def _start(client, project, **body):
    response = _post(client, reverse("api-experiments", args=[project.pk]), body)
    assert response.status_code == 201, response.json()
    return Experiment.objects.get(pk=response.json()["id"])


def test_the_split_is_sticky_per_client(client, blobs, manager):
    client.force_login(manager)
    _start(client, blobs, challenger=blobs.versions["better"].number, mode="split", traffic_share=0.5)
    url = reverse("api-predict", args=[blobs.pk])
    seen = {}
    for i in range(24):
        user, as_service = api_client_for(blobs, f"service-{i}")
        versions = {_post(as_service, url, {"values": [1, 1]}).json()["model_version"] for _ in range(3)}
        assert len(versions) == 1
        seen[user.pk] = versions.pop()
    assert set(seen.values()) == {1, blobs.versions["better"].number}
    assert set(PredictionLog.objects.filter(experiment_id__isnull=False).values_list("arm", flat=True)) == {
        "champion", "challenger"}


def test_shadow_never_returns_the_challengers_answer(client, blobs, manager):
    client.force_login(manager)
    _start(client, blobs, challenger=blobs.versions["better"].number, mode="shadow")
    rng = np.random.default_rng(5)
    items = [{"values": [float(a), float(b)]} for a, b in rng.normal(size=(200, 2)) * 2.5]
    answers = _post(client, reverse("api-predict", args=[blobs.pk]), {"items": items}).json()["predictions"]
    assert {a["model_version"] for a in answers} == {1}
    logs = PredictionLog.objects.filter(pk__in=[a["prediction_id"] for a in answers])
    assert all(log.shadow_label_id is not None for log in logs)
    # The arms disagree somewhere, and there the caller got the champion's label.
    disagreeing = [log for log in logs if log.shadow_label_id != log.label_id]
    assert disagreeing
    by_id = {a["prediction_id"]: a["label_id"] for a in answers}
    assert all(by_id[log.pk] == log.label_id for log in disagreeing)


def _label_predicted_items(project, manager, n, seed):
    """Items the live traffic asked about, then labeled by an expert (the truth: x0 + x1 > 0)."""
    items = blob_items(project, np.random.default_rng(seed), n)
    rng = np.random.default_rng(seed + 1)
    for item in items:  # spread them over the plane, not just two blobs
        item.values = [float(v) for v in rng.normal(size=2) * 2.5]
        item.save(update_fields=["values"])
    from learner.models import FeatureVector
    FeatureVector.objects.filter(item__in=items).delete()
    from learner.services.features import features_compute_chunk
    features_compute_chunk(project.pk, [item.pk for item in items])
    return items


def test_a_better_challenger_is_promoted_by_expert_labels(client, blobs, manager, eager_celery):
    client.force_login(manager)
    experiment = _start(client, blobs, challenger=blobs.versions["better"].number, mode="shadow",
                        min_gain=0.05, looks=2, discordance=0.3)
    planned = experiment.rule["min_sample"]
    items = _label_predicted_items(blobs, manager, planned, seed=11)
    _post(client, reverse("api-predict", args=[blobs.pk]), {"items": [{"item_id": i.pk} for i in items]})
    labels = list(blobs.labels.order_by("order")[:2])
    for item in items:
        AnnotationFactory(item=item, annotator=manager, label=labels[int(item.values[0] + item.values[1] > 0)])
    tasks.labels_added(blobs.pk)
    experiment.refresh_from_db()
    assert experiment.status == Experiment.Status.PROMOTED, experiment.results
    assert experiment.decision["p_value"] <= experiment.rule["alpha_per_look"]
    assert LiveModel.objects.get(project=blobs).version_id == blobs.versions["better"].pk
    swap = SwapHistory.objects.filter(project=blobs).first()
    assert swap.trigger == "ab-test" and f"experiment {experiment.pk}" in swap.reason
    # Running the evaluation again changes nothing.
    assert tasks.experiment_evaluate(experiment.pk) == "promoted"
    assert SwapHistory.objects.filter(project=blobs).count() == 2


def test_an_equal_challenger_is_not_promoted_after_the_planned_sample(client, blobs, manager):
    client.force_login(manager)
    experiment = _start(client, blobs, challenger=blobs.versions["same"].number, mode="shadow",
                        min_gain=0.05, looks=2, discordance=0.3)
    items = _label_predicted_items(blobs, manager, experiment.rule["min_sample"] // 2, seed=21)
    url = reverse("api-predict", args=[blobs.pk])
    _post(client, url, {"items": [{"item_id": i.pk} for i in items]})
    labels = list(blobs.labels.order_by("order")[:2])
    for item in items:
        AnnotationFactory(item=item, annotator=manager, label=labels[int(item.values[0] + item.values[1] > 0)])
    experiment = experiment_services.experiment_evaluate(experiment.pk)
    assert experiment.status == Experiment.Status.RUNNING and experiment.looks_done == 1
    # The rest of the planned sample comes as feedback over REST.
    rest = _post(client, url, {"items": [{"values": [float(i % 7) - 3, 1.0]} for i in range(experiment.rule["min_sample"])]})
    for answer in rest.json()["predictions"]:
        _post(client, reverse("api-prediction-feedback", args=[blobs.pk, answer["prediction_id"]]), {"label": "class_1"})
    experiment = experiment_services.experiment_evaluate(experiment.pk)
    assert experiment.status == Experiment.Status.KEPT and experiment.looks_done == 2
    assert "champion stays" in experiment.decision["reason"]
    assert LiveModel.objects.get(project=blobs).version_id == blobs.versions["champion"].pk


def test_split_outcomes_use_two_proportions_with_wilson_intervals(client, blobs, manager):
    client.force_login(manager)
    experiment = _start(client, blobs, challenger=blobs.versions["better"].number, mode="split",
                        traffic_share=0.5, min_sample=50, min_gain=0.01, looks=1)
    assert experiment.rule["test"] == "two_proportions" and experiment.rule["min_sample"] >= 50
    url = reverse("api-predict", args=[blobs.pk])
    rng = np.random.default_rng(8)
    services = [api_client_for(blobs, f"c{i}")[1] for i in range(12)]
    for i in range(60):
        x = [float(v) for v in rng.normal(size=2) * 2.5]
        as_service = services[i % len(services)]
        answer = _post(as_service, url, {"values": x}).json()
        truth = "class_1" if x[0] + x[1] > 0 else "class_0"
        feedback = reverse("api-prediction-feedback", args=[blobs.pk, answer["prediction_id"]])
        assert _post(as_service, feedback, {"label": truth}).status_code == 200
    experiment = experiment_services.experiment_evaluate(experiment.pk)
    arms = experiment.results["arms"]
    assert arms["champion"]["n"] + arms["challenger"]["n"] == 60
    assert arms["champion"]["clients"] + arms["challenger"]["clients"] == 12
    low, high = arms["challenger"]["interval"]
    assert low <= arms["challenger"]["accuracy"] <= high


def test_managers_start_and_stop_experiments_others_cannot(client, blobs, manager):
    annotator = UserFactory(username="only-annotates")
    MembershipFactory(project=blobs, user=annotator, role="annotator")
    client.force_login(annotator)
    url = reverse("api-experiments", args=[blobs.pk])
    assert _post(client, url, {"challenger": 2, "mode": "shadow"}).status_code == 404
    client.force_login(manager)
    assert _post(client, url, {"challenger": 1, "mode": "shadow"}).status_code == 400  # the live one
    assert _post(client, url, {"challenger": 99, "mode": "shadow"}).status_code == 404
    assert _post(client, url, {"challenger": 2, "mode": "split", "traffic_share": "x"}).status_code == 400
    experiment = _start(client, blobs, challenger=2, mode="shadow")
    assert _post(client, url, {"challenger": 3, "mode": "shadow"}).status_code == 409
    listing = client.get(url).json()
    assert listing[0]["rule"]["min_sample"] > 0 and listing[0]["rule"]["test"] == "mcnemar"
    detail = client.get(reverse("api-experiment", args=[blobs.pk, experiment.pk])).json()
    assert detail["status"] == "running" and detail["challenger"] == 2
    stop = reverse("api-experiment-stop", args=[blobs.pk, experiment.pk])
    stopped = _post(client, stop, {"reason": "enough"})
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped" and stopped.json()["stopped_by"] == "manager"
    assert _post(client, stop, {}).status_code == 409
    assert LiveModel.objects.get(project=blobs).version_id == blobs.versions["champion"].pk


def test_the_experiments_page_shows_the_rule_and_the_decision(client, blobs, manager):
    client.force_login(manager)
    experiment = _start(client, blobs, challenger=2, mode="shadow")
    experiment_services.experiment_stop(experiment=experiment, user=manager, reason="test over")
    _start(client, blobs, challenger=3, mode="split", traffic_share=0.2)
    page = client.get(reverse("project-experiments", args=[blobs.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "exact McNemar" in html and "two-proportion" in html and "Stopped by manager" in html
    assert "20% of API clients" in html
    models_page = client.get(reverse("project-models", args=[blobs.pk])).content.decode()
    assert reverse("project-experiments", args=[blobs.pk]) in models_page


def test_predict_an_uploaded_image(client, image_project, manager):
    import io

    from PIL import Image

    from learner.ml.featurize import ImageFeaturizer

    labels = [label.pk for label in image_project.labels.order_by("order")[:2]]
    rng = np.random.default_rng(0)
    X = rng.random(size=(60, ImageFeaturizer.n_features))
    version = model_version_create(
        project=image_project, pipeline=fit("image", X, np.asarray(labels)[(X[:, 0] > 0.5).astype(int)]),
        classes=labels, feature_space=ImageFeaturizer.space, algorithm="lr", hyperparameters={},
        label_snapshot_hash="s", labels_used=60,
    )
    model_version_promote(version, reason="first", trigger="manual")
    buffer = io.BytesIO()
    Image.new("L", (32, 32), color=200).save(buffer, format="PNG")
    client.force_login(manager)
    url = reverse("api-predict", args=[image_project.pk])
    from django.core.files.uploadedfile import SimpleUploadedFile

    png = SimpleUploadedFile("a.png", buffer.getvalue(), content_type="image/png")
    answer = client.post(url, {"image": png})
    assert answer.status_code == 200, answer.json()
    assert answer.json()["model_version"] == 1 and answer.json()["label"] in ("0", "1")
    broken = SimpleUploadedFile("b.png", b"not an image", content_type="image/png")
    response = client.post(url, {"image": broken})
    assert response.status_code == 400
    assert response.json()["detail"] == "image 1: not a PNG, JPEG, GIF, BMP or WebP image."
    # A path given as JSON is never opened.
    as_path = _post(client, url, {"image": "/etc/passwd"})
    assert as_path.status_code == 400 and "multipart" in as_path.json()["detail"]


@pytest.mark.parametrize("kind, n_classes", [("tabular", 2), ("tabular", 3), ("text", 3)])
def test_the_fast_probabilities_equal_scikit_learns(kind, n_classes):
    from scipy import sparse

    from learner.ml.training import proba_fast, proba_over

    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    y = np.argmax(X[:, :n_classes] + rng.normal(size=(300, n_classes)), axis=1) + 10
    if kind == "text":
        X = sparse.csr_matrix(np.where(X > 1, X, 0))
    model = fit(kind, X, y)
    classes = [int(c) for c in model.classes_]
    assert np.allclose(proba_fast(model, X[:7], classes), model.predict_proba(X[:7]), atol=1e-9)
    reordered = classes[::-1]
    assert np.allclose(proba_fast(model, X[:7], reordered), proba_over(model, X[:7], reordered))


def test_beat_evaluates_experiments_and_a_swap_elsewhere_ends_one(client, blobs, manager):
    from django_celery_beat.models import PeriodicTask

    assert PeriodicTask.objects.filter(task="learner.experiments_evaluate", enabled=True).exists()
    client.force_login(manager)
    experiment = _start(client, blobs, challenger=2, mode="shadow")
    assert tasks.experiments_evaluate() == 1
    experiment.refresh_from_db()
    assert experiment.status == "running" and experiment.looks_done == 0
    model_version_promote(blobs.versions["same"], reason="by hand", trigger="manual")
    # Predictions now come from the new live version alone, and the next evaluation closes the experiment.
    answer = _post(client, reverse("api-predict", args=[blobs.pk]), {"values": [1, 1]}).json()
    assert answer["model_version"] == 3
    assert PredictionLog.objects.get(pk=answer["prediction_id"]).experiment_id is None
    assert tasks.experiment_evaluate(experiment.pk) == "stopped"
    assert tasks.experiment_evaluate(experiment.pk) == "stopped"
