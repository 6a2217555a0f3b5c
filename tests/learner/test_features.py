"""Item features: featurizers on arrays and images, chunked computation, pools loaded as one matrix."""
import io
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image
from scipy import sparse
from sklearn.datasets import load_digits

from annotations.models import ImportJob, Item, Project
from learner import selectors
from learner.ml.featurize import (
    FeaturizeError, ImageFeaturizer, TabularFeaturizer, TextCountFeaturizer, TextFeaturizer, pack, unpack,
)
from learner.ml.registry import featurizer_for
from learner.models import FeatureVector
from learner.services.features import features_compute_chunk
from learner.tasks import features_compute as features_compute_task
from learner.tasks import features_reconcile as features_reconcile_task
from tests.factories import ItemFactory

WINE_COLUMNS = ["alcohol", "malic_acid", "ash"]


def digit_png(index: int = 0, mode: str = "L") -> bytes:
    """One scikit-learn digit rendered as a 32×32 PNG."""
    pixels = (load_digits().images[index] * (255 / 16)).astype(np.uint8)
    image = Image.fromarray(pixels, "L").resize((32, 32), Image.Resampling.NEAREST).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def wine_project(tabular_project: Project) -> Project:
    tabular_project.feature_names = WINE_COLUMNS
    tabular_project.save(update_fields=["feature_names"])
    return tabular_project


def wine_items(project: Project, count: int, job: ImportJob | None = None) -> list[Item]:
    rng = np.random.default_rng(0)
    return [
        ItemFactory(project=project, values=[float(v) for v in rng.normal(size=len(WINE_COLUMNS))], import_job=job)
        for _ in range(count)
    ]


def import_job(project: Project, created: int) -> ImportJob:
    return ImportJob.objects.create(
        project=project, filename="rows.csv", status=ImportJob.Status.DONE, finished_at=timezone.now(),
        rows_total=created, created_count=created, features_total=created,
    )


# Featurizers on arrays and images


def test_text_features_are_sparse_normalised_and_deterministic():
    texts = ["the wine is good", "the wine is not good", ""]
    first, second = TextFeaturizer().transform(texts), TextFeaturizer().transform(texts)

    assert sparse.issparse(first) and first.shape == (3, TextFeaturizer.n_features)
    assert first.dtype == np.float32
    assert (first != second).nnz == 0
    assert np.allclose(sparse.linalg.norm(first[:2], axis=1), 1.0)
    assert first[2].nnz == 0
    # Bigrams tell "not good" from "good".
    assert first[0].dot(first[1].T).toarray()[0, 0] < 0.99


def test_a_digit_image_gives_272_finite_values_in_range():
    row = ImageFeaturizer().row(digit_png(3))

    assert row.shape == (272,) and row.dtype == np.float32
    assert np.isfinite(row).all()
    assert 0.0 <= row.min() and row[:256].max() <= 1.0
    assert row[256:].sum() == pytest.approx(1.0)
    assert np.array_equal(row, ImageFeaturizer().row(digit_png(3)))
    assert not np.array_equal(row, ImageFeaturizer().row(digit_png(4)))


def test_an_rgb_image_is_read_by_its_luminance():
    gray, rgb = ImageFeaturizer().transform([digit_png(5), io.BytesIO(digit_png(5, mode="RGB"))])

    assert np.allclose(gray, rgb, atol=1 / 255)


def test_an_image_that_does_not_decode_is_refused():
    with pytest.raises(FeaturizeError):
        ImageFeaturizer().row(b"\x89PNG\r\n\x1a\n but not really")


def test_tabular_features_follow_the_projects_column_order():
    featurizer = TabularFeaturizer(["b", "a", "c"])

    matrix = featurizer.transform([[1, 2, 3], {"a": 10, "b": 20, "c": 30}])

    assert featurizer.space == "tabular-v1:3"
    assert matrix.dtype == np.float32
    assert matrix.tolist() == [[1, 2, 3], [20, 10, 30]]
    with pytest.raises(FeaturizeError):
        featurizer.transform([[1, 2]])


def test_spaces_are_named_with_their_version():
    assert featurizer_for("text").space == "text-word12-count-v1:2^18"  # the default: TF-IDF with each model
    assert featurizer_for("text", "text-hashed").space == "text-word12-hash-v1:2^18"
    assert featurizer_for("image").space == "image-grid16-hist16-v1"
    assert featurizer_for("image", "image-hog").space == "image-hog32-rgb64-v1"
    assert featurizer_for("tabular", feature_names=WINE_COLUMNS).space == "tabular-v1:3"


@pytest.mark.parametrize("matrix", [
    np.arange(12, dtype=np.float32).reshape(4, 3),
    sparse.csr_matrix(np.array([[0, 1.5, 0, 0], [0, 0, 0, 0], [2, 0, 0, 3]], dtype=np.float32)),
])
def test_packed_rows_assemble_into_the_same_matrix(matrix):
    rows = pack(matrix)
    is_sparse = sparse.issparse(matrix)

    rebuilt = unpack([v for v, _ in rows], [i for _, i in rows] if is_sparse else None, matrix.shape[1])

    assert len(rows) == matrix.shape[0]
    if is_sparse:
        assert isinstance(rebuilt, sparse.csr_matrix) and (rebuilt != matrix).nnz == 0
    else:
        assert np.array_equal(rebuilt, matrix)
        rebuilt[0, 0] = 1.0  # the pool matrix is writable, as some estimators expect


# Computing and storing features against the database


def test_a_chunk_stores_features_once(wine_project):
    items = wine_items(wine_project, 5)
    ids = [item.pk for item in items]

    assert features_compute_chunk(wine_project.pk, ids) == 5
    assert features_compute_chunk(wine_project.pk, ids) == 0

    assert FeatureVector.objects.filter(project=wine_project).count() == 5
    assert set(FeatureVector.objects.values_list("space", flat=True)) == {"tabular-v1:3"}


def test_a_chunk_racing_a_duplicate_of_itself_stores_each_row_once(wine_project, monkeypatch):
    items = wine_items(wine_project, 4)
    features_compute_chunk(wine_project.pk, [item.pk for item in items[:2]])
    # As if a concurrent run stored the first two between this run's check and its insert.
    monkeypatch.setattr(selectors, "items_lacking_features", lambda project_id, space=None: Item.objects.filter(project_id=project_id))

    assert features_compute_chunk(wine_project.pk, [item.pk for item in items]) == 4

    assert sorted(FeatureVector.objects.values_list("item_id", flat=True)) == [item.pk for item in items]


def test_pool_matrix_returns_rows_in_item_id_order(wine_project):
    items = wine_items(wine_project, 6)
    ids = [item.pk for item in items]
    # Computed out of order and in two chunks; the pool comes back ordered by item id.
    features_compute_chunk(wine_project.pk, ids[3:])
    features_compute_chunk(wine_project.pk, ids[:3])

    pool_ids, matrix = selectors.pool_matrix(wine_project.pk)
    subset_ids, subset = selectors.pool_matrix(wine_project.pk, item_ids=[ids[4], ids[1]])

    assert pool_ids.tolist() == sorted(ids)
    expected = TabularFeaturizer(WINE_COLUMNS).transform([item.values for item in items])
    assert np.array_equal(matrix, expected)
    assert subset_ids.tolist() == [ids[1], ids[4]]
    assert np.array_equal(subset, expected[[1, 4]])


def test_text_pool_is_one_csr_matrix(text_project):
    texts = ["great movie", "terrible plot", "great plot, terrible acting", ""]
    items = [ItemFactory(project=text_project, text=text) for text in texts]
    features_compute_chunk(text_project.pk, [item.pk for item in items])

    pool_ids, matrix = selectors.pool_matrix(text_project.pk)

    assert pool_ids.tolist() == [item.pk for item in items]
    assert isinstance(matrix, sparse.csr_matrix) and matrix.shape == (4, TextFeaturizer.n_features)
    assert (matrix != TextCountFeaturizer().transform(texts)).nnz == 0  # the default: counts, weighted per model


def test_an_unreadable_image_is_skipped_and_the_rest_of_the_chunk_stored(image_project, caplog):
    good = [ItemFactory(project=image_project, image=ContentFile(digit_png(i), name=f"d{i}.png")) for i in range(2)]
    bad = ItemFactory(project=image_project, image=ContentFile(b"not an image", name="bad.png"))

    handled = features_compute_chunk(image_project.pk, [bad.pk, *(item.pk for item in good)])

    assert handled == 3
    pool_ids, matrix = selectors.pool_matrix(image_project.pk)
    assert pool_ids.tolist() == [item.pk for item in good]
    assert matrix.shape == (2, 272) and np.isfinite(matrix).all()
    assert f"Item {bad.pk} gets no features" in caplog.text


def test_the_plan_chunks_the_items_lacking_features(wine_project, settings):
    settings.LABELHUB_FEATURE_CHUNK = 2
    job = import_job(wine_project, 5)
    items = wine_items(wine_project, 5, job=job)
    loose = wine_items(wine_project, 2)  # outside any import
    features_compute_chunk(wine_project.pk, [items[0].pk])

    chunks = selectors.features_plan(wine_project.pk, job.pk)

    assert chunks == [[items[1].pk, items[2].pk], [items[3].pk, items[4].pk]]
    # Without a job: everything else lacking features; the job's items are left to the job's own chunks.
    assert selectors.features_plan(wine_project.pk, None) == [[item.pk for item in loose]]


# Tasks, run inline


def test_features_compute_finishes_the_import_job_and_a_second_run_changes_nothing(
    wine_project, settings, eager_celery
):
    settings.LABELHUB_FEATURE_CHUNK = 2
    job = import_job(wine_project, 5)
    wine_items(wine_project, 5, job=job)

    features_compute_task.delay(wine_project.pk, job.pk)
    features_compute_task.delay(wine_project.pk, job.pk)

    job.refresh_from_db()
    assert FeatureVector.objects.filter(project=wine_project).count() == 5
    assert (job.features_status, job.features_done, job.features_total) == ("done", 5, 5)


def test_a_job_with_nothing_left_to_compute_is_done_at_once(wine_project, eager_celery):
    job = import_job(wine_project, 0)

    assert features_compute_task.delay(wine_project.pk, job.pk).get() == 0

    job.refresh_from_db()
    assert job.features_status == "done"


def test_an_import_job_with_an_unreadable_image_still_finishes(image_project, eager_celery):
    job = import_job(image_project, 3)
    for i, content in enumerate([digit_png(0), b"truncated", digit_png(1)]):
        ItemFactory(project=image_project, import_job=job, image=ContentFile(content, name=f"{i}.png"))

    features_compute_task.delay(image_project.pk, job.pk)

    job.refresh_from_db()
    assert (job.features_status, job.features_done) == ("done", 3)
    assert FeatureVector.objects.filter(project=image_project).count() == 2


def test_reconcile_catches_up_on_work_whose_message_was_lost(wine_project, eager_celery):
    long_ago = timezone.now() - timedelta(hours=1)
    stuck_job = import_job(wine_project, 3)
    ImportJob.objects.filter(pk=stuck_job.pk).update(finished_at=long_ago)
    stuck = wine_items(wine_project, 3, job=stuck_job)
    loose = wine_items(wine_project, 2)
    Item.objects.filter(pk__in=[item.pk for item in loose]).update(created_at=long_ago)
    fresh_job = import_job(wine_project, 2)  # just finished: its own message is still on the way
    fresh = wine_items(wine_project, 2, job=fresh_job)

    assert features_reconcile_task.delay().get() == 2
    assert features_reconcile_task.delay().get() == 0

    with_features = set(FeatureVector.objects.values_list("item_id", flat=True))
    assert with_features == {item.pk for item in stuck + loose}
    assert not with_features & {item.pk for item in fresh}
    stuck_job.refresh_from_db()
    assert (stuck_job.features_status, stuck_job.features_done) == ("done", 3)
