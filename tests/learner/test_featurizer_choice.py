"""A project's own featurizer and model: plugins, imported embeddings, TF-IDF, HOG, every model choice."""
import io
import json
import zipfile

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image

from annotations.imports.services import import_jobs_submit
from annotations.models import ImportJob, Item, Lease, Project
from annotations.services import queue_next
from learner.ml.registry import featurizer_for
from learner.ml.training import MODELS, TrainingError, fit, hyperparameters, make_pipeline, proba_over, same_pipeline
from learner.models import FeatureVector, LiveModel, ModelVersion, TrainingRun
from learner.services import models as model_services
from learner.services.features import features_compute_chunk, features_plan_start, features_refresh
from learner.services.models import model_version_create, model_version_loaded
from learner.services.scoring import score_pool_plan
from learner.services.simulation.scratch import pool_score_now
from learner.services.training import training_run_execute, training_run_request
from learner.services.triggers import drift_measure
from tests.factories import AnnotationFactory, ItemFactory

pytestmark = pytest.mark.django_db

PLUGINS = {"words": "tests.plugins.WordCounts", "broken": "tests.plugins.Broken", "wrong": "tests.plugins.WrongShape"}
POSITIVE = ["good", "great", "love", "fine"]
NEGATIVE = ["bad", "awful", "hate", "poor"]


@pytest.fixture(autouse=True)
def plugins(settings):
    settings.LABELHUB_FEATURIZER_PLUGINS = PLUGINS
    model_services._cache.clear()


def sentiment_csv(n: int, seed: int = 0) -> bytes:
    """Short reviews: even rows use positive words, odd rows negative ones, among neutral filler."""
    rng = np.random.default_rng(seed)
    lines = ["external_id,text"]
    for i in range(n):
        words = list(rng.choice(NEGATIVE if i % 2 else POSITIVE, size=2)) + ["the", "film", "was", "seen"]
        rng.shuffle(words)
        lines.append(f"r{i},{' '.join(words)}")
    return ("\n".join(lines) + "\n").encode()


def imported(project, manager, data: bytes, name="reviews.csv") -> ImportJob:
    """Import the file here and compute its features as the feature tasks would."""
    (job,) = import_jobs_submit(project=project, user=manager, uploads=[(name, io.BytesIO(data))], wait=True)
    for chunk in features_plan_start(project.pk, job.pk):
        features_compute_chunk(project.pk, chunk)
    job.refresh_from_db()
    return job


def label_all(project, manager, audit_every=3):
    """Even rows (r0, r2, …) positive, odd rows negative; every third item an audit item."""
    negative, positive = project.labels.order_by("order")[:2]
    for i, item in enumerate(Item.objects.filter(project=project, external_id__regex=r"^r[0-9]+$").order_by("pk")):
        AnnotationFactory(item=item, annotator=manager, label=negative if int(item.external_id[1:]) % 2 else positive,
                          is_audit=i % audit_every == 0)


def train(project) -> TrainingRun:
    run = training_run_request(project_id=project.pk, trigger="manual", evidence={"by": "test"})
    return training_run_execute(run.pk)


def test_a_plugin_featurizer_goes_through_import_training_scoring_and_predict(client, text_project, manager, annotator):
    text_project.featurizer = "words"
    text_project.save()

    job = imported(text_project, manager, sentiment_csv(120))

    assert job.features_status == "done" and job.features_done == 120
    spaces = set(FeatureVector.objects.filter(project=text_project).values_list("space", flat=True))
    assert spaces == {"plugin:words:2"}
    label_all(text_project, manager)
    Item.objects.filter(project=text_project).update(label_count=0, queue_done=False)  # leave them in the queue
    run = train(text_project)
    assert run.status == TrainingRun.Status.PROMOTED, run.error or run.decision
    live = LiveModel.objects.get(project=text_project).version
    assert live.feature_space == "plugin:words:2" and live.metrics["accuracy"] == 1.0
    pool_score_now(text_project.pk)
    lease = queue_next(project=text_project, user=annotator)
    assert isinstance(lease, Lease) and lease.model_version == live.number and lease.predicted_label is not None

    client.force_login(manager)
    answer = client.post(reverse("api-predict", args=[text_project.pk]),
                         json.dumps({"items": [{"text": "I love it, great"}, {"text": "awful and bad"}]}),
                         content_type="application/json")
    assert answer.status_code == 200, answer.content
    assert [p["label"] for p in answer.json()["predictions"]] == ["positive", "negative"]


@pytest.mark.parametrize(("plugin", "message"), [
    ("broken", "RuntimeError: the encoder's weights are missing"),
    ("wrong", "returned a matrix of shape (30, 3); expected (30, 4)"),
])
def test_a_failing_plugin_fails_the_feature_job_with_its_message_and_stores_nothing(
    text_project, manager, plugin, message
):
    text_project.featurizer = plugin
    text_project.save()

    job = imported(text_project, manager, sentiment_csv(30))

    assert job.status == "done" and job.created_count == 30  # the items are in; their features are not
    assert job.features_status == "failed" and message in job.features_message
    assert not FeatureVector.objects.filter(project=text_project).exists()
    text_project.refresh_from_db()
    assert message in text_project.features_error


def test_a_plugin_that_does_not_load_fails_the_feature_job(text_project, manager, settings):
    settings.LABELHUB_FEATURIZER_PLUGINS = {"gone": "tests.plugins.NoSuchClass"}
    text_project.featurizer = "gone"
    text_project.save()

    job = imported(text_project, manager, sentiment_csv(4))

    assert job.features_status == "failed"
    assert "featurizer plugin 'gone' (tests.plugins.NoSuchClass) does not load" in job.features_message


def test_a_project_trains_and_predicts_on_imported_embeddings(client, text_project, manager):
    text_project.featurizer = "embeddings"
    text_project.save()
    rng = np.random.default_rng(1)
    rows = []
    for i in range(90):  # the texts say nothing; the vectors do
        centre = np.r_[np.full(3, -2.0 if i % 2 else 2.0), np.zeros(3)]
        rows.append({"external_id": f"r{i}", "text": "an item", "embedding": (centre + rng.normal(size=6)).tolist()})
    rows.insert(40, {"external_id": "short", "text": "an item", "embedding": [1.0, 2.0]})
    rows.append({"external_id": "none", "text": "an item"})  # no vector: stored, and it gets no features
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()

    job = imported(text_project, manager, data, name="vectors.jsonl")

    assert job.created_count == 91 and job.rejected_count == 1
    assert job.errors[0]["row"] == 41 and "the embedding has 2 numbers; this project's have 6" in job.errors[0]["reason"]
    assert job.features_status == "done"
    assert FeatureVector.objects.filter(project=text_project, space="embeddings-v1:6").count() == 90
    text_project.refresh_from_db()
    assert text_project.embedding_dim == 6
    label_all(text_project, manager)  # even rows positive, odd rows negative, as the vectors have it

    run = train(text_project)

    assert run.status == TrainingRun.Status.PROMOTED, run.error or run.decision
    assert run.model_version.feature_space == "embeddings-v1:6" and run.model_version.metrics["accuracy"] > 0.9
    client.force_login(manager)
    url = reverse("api-predict", args=[text_project.pk])
    answer = client.post(url, json.dumps({"items": [{"embedding": [2, 2, 2, 0, 0, 0]}, {"embedding": [-2] * 3 + [0] * 3}]}),
                         content_type="application/json")
    assert answer.status_code == 200, answer.content
    assert [p["label"] for p in answer.json()["predictions"]] == ["positive", "negative"]
    wrong = client.post(url, json.dumps({"items": [{"embedding": [1, 2]}]}), content_type="application/json")
    assert wrong.status_code == 400
    assert "items[0]: embedding has 2 numbers; the model takes 6." in wrong.content.decode()
    text = client.post(url, json.dumps({"text": "an item"}), content_type="application/json")
    assert text.status_code == 400 and "give 'embedding' or 'item_id'" in text.content.decode()


def test_a_new_featurizer_recomputes_in_the_background_while_the_live_model_serves(client, text_project, manager):
    text_project.featurizer = "text-hashed"
    text_project.save()
    imported(text_project, manager, sentiment_csv(90))
    label_all(text_project, manager)
    assert train(text_project).status == TrainingRun.Status.PROMOTED
    old = LiveModel.objects.get(project=text_project).version
    assert old.feature_space == "text-word12-hash-v1:2^18"

    text_project.featurizer = "text-tfidf"
    text_project.save()
    blocked = train(text_project)  # labels keep coming while the rows are still the old ones
    assert blocked.status == TrainingRun.Status.FAILED and "features are being recomputed" in blocked.error
    client.force_login(manager)
    url = reverse("api-predict", args=[text_project.pk])
    assert client.post(url, json.dumps({"text": "great love"}), content_type="application/json").json()["label"] == "positive"

    for chunk in features_refresh(text_project.pk):
        features_compute_chunk(text_project.pk, chunk)

    assert set(FeatureVector.objects.filter(project=text_project).values_list("space", flat=True)) == {
        "text-word12-count-v1:2^18"
    }
    # The live model cannot read the new rows: no scoring by it is planned (the last ranking stands), no drift measured.
    assert score_pool_plan(text_project.pk) is None and drift_measure(text_project.pk) is None
    # The old model still answers, from features computed its own way, for raw text and stored items.
    item = Item.objects.filter(project=text_project).first()
    by_id = client.post(url, json.dumps({"item_id": item.pk}), content_type="application/json")
    assert by_id.status_code == 200 and by_id.json()["model_version"] == old.number
    # The recompute asked for a retrain; its model is a change of kind and must prove itself.
    requested = TrainingRun.objects.filter(project=text_project, status="queued").get()
    assert "recomputed for the new featurizer" in requested.evidence["note"]
    run = training_run_execute(requested.pk)
    assert run.model_version.feature_space == "text-word12-count-v1:2^18"
    assert run.model_version.hyperparameters["tfidf"]["class"] == "TfidfTransformer"
    assert run.status == TrainingRun.Status.KEPT_CHAMPION  # as good as v1, not better
    assert "featurizer" in run.decision["reason"]
    assert LiveModel.objects.get(project=text_project).version_id == old.pk


def test_changing_the_model_makes_a_candidate_that_must_prove_itself(labeled_blobs):
    assert train(labeled_blobs).status == TrainingRun.Status.PROMOTED
    labeled_blobs.model_kind = "random_forest"
    labeled_blobs.save()

    run = train(labeled_blobs)

    assert run.model_version.algorithm.endswith("RandomForestClassifier")
    assert run.status == TrainingRun.Status.KEPT_CHAMPION
    assert "algorithm" in run.decision["reason"] and LiveModel.objects.get(project=labeled_blobs).version.number == 1


@pytest.mark.parametrize("model", MODELS)
def test_every_model_choice_fits_gives_probabilities_and_survives_its_file(tabular_project, model):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 3)).astype(np.float32)
    y = np.where(X[:, 0] > 0, 11, 7)
    pipeline = fit("tabular", X, y, model=model)
    version = model_version_create(
        project=tabular_project, pipeline=pipeline, classes=[7, 11], feature_space="tabular-v1:3",
        algorithm=model, hyperparameters={}, label_snapshot_hash="s", labels_used=60,
    )
    model_services._cache.clear()
    loaded = model_version_loaded(ModelVersion.objects.get(pk=version.pk))  # refuses types it does not trust
    proba = proba_over(loaded.pipeline, X, [7, 11])
    assert proba.shape == (60, 2) and np.allclose(proba.sum(axis=1), 1)
    assert np.mean(np.asarray([7, 11])[proba.argmax(axis=1)] == y) > 0.9


def test_models_that_cannot_fit_say_why():
    X = np.eye(4, dtype=np.float32)
    with pytest.raises(TrainingError, match="two labels of every class"):
        fit("tabular", X, np.array([0, 0, 0, 1]), model="linear_svm")
    from scipy import sparse

    with pytest.raises(TrainingError, match="needs dense features"):
        fit("text", sparse.csr_matrix(X), np.array([0, 1, 0, 1]), model="hist_gb")


def test_text_models_are_fitted_by_newton_cg_to_the_optimum_lbfgs_finds():
    """Four topics over a shared vocabulary, in TF-IDF n-grams: Newton-CG (the text default, many times faster
    on 2^18 columns) and L-BFGS give the same answers, and a version differing only so is the same pipeline."""
    rng = np.random.default_rng(5)
    topics = [[f"t{k}w{j}" for j in range(12)] for k in range(4)]
    shared = [f"common{j}" for j in range(40)]
    y = np.arange(400) % 4
    docs = [" ".join(list(rng.choice(topics[k], 3)) + list(rng.choice(shared, 8))) for k in y]
    X = featurizer_for("text", "text-tfidf").transform(docs)
    newton = fit("text", X[:300], y[:300], tfidf=True)
    assert newton.steps[-1][1].solver == "newton-cg"
    lbfgs = make_pipeline("text", tfidf=True).set_params(clf__solver="lbfgs").fit(X[:300], y[:300])
    assert np.mean(newton.predict(X[300:]) == lbfgs.predict(X[300:])) >= 0.99
    assert np.allclose(newton.predict_proba(X[300:]), lbfgs.predict_proba(X[300:]), atol=0.02)
    assert fit("tabular", X[:300].toarray()[:, :50], y[:300]).steps[-1][1].solver == "lbfgs"
    assert same_pipeline(hyperparameters(newton), hyperparameters(lbfgs))
    other_c = make_pipeline("text", tfidf=True).set_params(clf__C=1.0)
    assert not same_pipeline(hyperparameters(newton), hyperparameters(other_c))


def test_the_hog_featurizer_tells_shapes_apart_where_the_grey_thumbnail_sees_the_same_mass():
    """A horizontal and a vertical bar of the same area and colour: equal histograms, different gradients."""
    def bar(horizontal: bool) -> Image.Image:
        image = Image.new("RGB", (48, 48), "white")
        box = (4, 20, 44, 28) if horizontal else (20, 4, 28, 44)
        image.paste((200, 30, 30), box)
        return image

    hog = featurizer_for("image", "image-hog")
    a, b = hog.transform([bar(True), bar(False)])
    assert a.shape == (hog.n_features,)
    assert np.allclose(a[-64:], b[-64:])  # the same colours
    assert np.abs(a[:-64] - b[:-64]).sum() > 1.0  # not the same shape


def test_once_the_plugin_is_mended_the_features_are_computed_again_and_the_import_completes(
    text_project, manager, settings, sent_tasks, django_capture_on_commit_callbacks
):
    from learner.services.model_settings import features_recompute

    text_project.featurizer = "broken"
    text_project.save()
    job = imported(text_project, manager, sentiment_csv(30))
    assert job.features_status == "failed"
    settings.LABELHUB_FEATURIZER_PLUGINS = {**PLUGINS, "broken": "tests.plugins.WordCounts"}  # the team's fix

    with django_capture_on_commit_callbacks(execute=True):
        assert features_recompute(project=Project.objects.get(pk=text_project.pk), user=manager) == 1
    for name, args in sent_tasks:  # as the worker would run them
        chunks = features_plan_start(*args) if name == "learner.features_compute" else features_refresh(*args)
        for chunk in chunks:
            features_compute_chunk(text_project.pk, chunk)

    job.refresh_from_db()
    assert (job.features_status, job.features_done, job.features_message) == ("done", 30, "")
    assert FeatureVector.objects.filter(project=text_project, space="plugin:broken:2").count() == 30
    assert Project.objects.get(pk=text_project.pk).features_error == ""


@pytest.mark.parametrize(("featurizer", "recomputed"), [("embeddings", True), ("", False)])
def test_new_vectors_of_existing_items_replace_their_features_when_the_project_learns_from_them(
    text_project, manager, featurizer, recomputed
):
    from annotations.models import ItemEmbedding

    text_project.featurizer = featurizer
    text_project.save()
    rows = [{"external_id": f"r{i}", "text": f"item {i}", "embedding": [float(i), 0.0]} for i in range(3)]
    imported(text_project, manager, "".join(json.dumps(row) + "\n" for row in rows).encode(), name="v.jsonl")
    item = Item.objects.get(project=text_project, external_id="r1")
    before = bytes(FeatureVector.objects.get(item=item).values)
    ItemEmbedding.objects.filter(item=item).update(vector=np.array([9.0, 9.0], dtype=np.float32).tobytes())

    chunks = features_refresh(text_project.pk, [item.pk])  # as the embeddings import asks after commit
    for chunk in chunks:
        features_compute_chunk(text_project.pk, chunk)

    after = np.frombuffer(bytes(FeatureVector.objects.get(item=item).values), dtype=np.float32)
    if recomputed:
        assert chunks == [[item.pk]] and after.tolist() == [9.0, 9.0]
    else:  # hashed words of its text: the vector changes nothing, so nothing is computed again
        assert chunks == [] and after.tobytes() == before


def test_an_image_plugin_gets_decoded_images_a_batch_at_a_time(image_project, manager, settings):
    from learner.services import sources
    from tests.plugins import MeanColour

    settings.LABELHUB_FEATURIZER_PLUGINS = {"colour": "tests.plugins.MeanColour"}
    image_project.featurizer = "colour"
    image_project.save()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(sources.PLUGIN_IMAGE_BATCH + 3):
            png = io.BytesIO()
            Image.new("RGB", (20, 10), (255, 0, 0) if i % 2 else (0, 0, 255)).save(png, format="PNG")
            zf.writestr(f"img-{i:03d}.png", png.getvalue())
    MeanColour.calls.clear()

    job = imported(image_project, manager, archive.getvalue(), name="colours.zip")

    assert job.features_status == "done"
    assert MeanColour.calls == [sources.PLUGIN_IMAGE_BATCH, 3]
    rows = FeatureVector.objects.filter(project=image_project).order_by("item_id")
    first = np.frombuffer(bytes(rows[0].values), dtype=np.float32)
    assert rows.count() == sources.PLUGIN_IMAGE_BATCH + 3 and first.tolist() == pytest.approx([0, 0, 1, 2])
