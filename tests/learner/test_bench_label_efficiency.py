"""bench/label_efficiency.py's data sets and arguments (the bench itself runs the simulations)."""
import io
from collections import Counter

import pytest
from PIL import Image

from annotations.models import Annotation, Item
from bench import datasets
from bench.label_efficiency import arguments
from learner.models import FeatureVector
from learner.selectors import project_featurizer


def test_arguments_default_to_the_digits_run_and_the_grid_to_every_combination_that_fits():
    args = arguments([])
    assert (args.dataset, args.combinations, args.seeds, args.budget) == ("digits", [("", "logistic")], 3, 400)
    assert (arguments(["--quick"]).seeds, arguments(["--quick"]).budget) == (1, 150)
    image = arguments(["--dataset", "shapes", "--grid", "--seeds", "1"]).combinations
    assert image == [(f, m) for f in ("image-grid", "image-hog") for m in ("logistic", "linear_svm", "hist_gb", "random_forest")]
    text = arguments(["--dataset", "docstrings", "--grid"]).combinations
    assert text == [(f, m) for f in ("text-tfidf", "text-hashed") for m in ("logistic", "linear_svm", "random_forest")]
    part = arguments(["--dataset", "docstrings", "--grid", "--featurizer", "text-tfidf"]).combinations
    assert part == [("text-tfidf", m) for m in ("logistic", "linear_svm", "random_forest")]
    assert arguments(["--dataset", "shapes", "--featurizer", "image-hog", "--model", "hist_gb"]).combinations == [
        ("image-hog", "hist_gb")]


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "docstrings", "--model", "hist_gb"], "does not take the sparse features of text-tfidf"),
    (["--dataset", "docstrings", "--grid", "--model", "hist_gb"], "does not take the sparse features"),
    (["--featurizer", "text-tfidf"], "no built-in of image sets; choose one of image-grid, image-hog"),
    (["--featurizer", "embeddings"], "no built-in of image sets"),
    (["--dataset", "mnist"], "invalid choice: 'mnist'"),
    (["--seeds", "0"], "--seeds must be at least 1"),
])
def test_arguments_refuse_what_cannot_run(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        arguments(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_shapes_are_seeded_photos_of_every_class_in_turn():
    items = list(datasets.shapes_items(16))
    assert Counter(label for _, _, label in items) == {label: 2 for label in datasets.shape_classes()}
    assert len(datasets.shape_classes()) == 8 and len({name for name, _, _ in items}) == 16
    image = Image.open(io.BytesIO(items[0][1]))
    assert (image.format, image.mode, image.size) == ("PNG", "RGB", (48, 48))
    assert [png for _, png, _ in datasets.shapes_items(16)] == [png for _, png, _ in items]  # same bytes again
    assert items[0][1] != items[8][1]  # same class, another draw


def test_docstrings_are_distinct_texts_of_eight_subpackages_without_module_paths():
    rows = datasets.docstring_items()
    counts = Counter(label for _, _, label in rows)
    assert set(counts) == set(datasets.DOC_SUBPACKAGES) and len(rows) >= 600
    assert max(counts.values()) == datasets.DOC_PER_CLASS and min(counts.values()) >= 40
    texts = [text for _, text, _ in rows]
    assert len(set(texts)) == len(texts)
    assert not [text for text in texts if "scipy." in text or len(text.split()) < datasets.DOC_MIN_WORDS]
    assert datasets.doc_text("gamma(z, out=None)\n\nGamma function.\n\nSee :func:`scipy.special.gammaln` too.\n\n"
                             "Parameters\n----------\nz : array") == "Gamma function. See gammaln too."
    shuffled = datasets.docstrings_shuffled()
    assert [external_id for external_id, _, _ in shuffled[:2]] == ["doc-0000", "doc-0001"]
    assert len({label for _, _, label in shuffled[:16]}) > 2  # neither the order nor the ids follow the classes
    assert sorted(text for _, text, _ in shuffled) == sorted(texts)


@pytest.mark.django_db
@pytest.mark.parametrize("name, size, featurizers", [
    ("shapes", 16, ("image-grid", "image-hog")),
    ("docstrings", 24, ("text-tfidf", "text-hashed")),
])
def test_a_data_set_is_imported_without_its_classes_and_its_features_follow_the_chosen_featurizer(
    name, size, featurizers, tmp_path
):
    project_id, answers = datasets.dataset_build(name, size=size)
    items = dict(Item.objects.filter(project_id=project_id).values_list("external_id", "pk"))
    assert len(items) == size and set(items) == set(answers)
    assert not Annotation.objects.filter(item__project_id=project_id).exists()  # the classes stay with the oracle
    labels = set(Item.objects.get(pk=next(iter(items.values()))).project.labels.values_list("name", flat=True))
    assert set(answers.values()) <= labels
    for featurizer in featurizers:
        datasets.features_compute(project_id, featurizer, "random_forest")
        space = project_featurizer(project_id).space
        assert FeatureVector.objects.filter(project_id=project_id, space=space).count() == size
        assert not FeatureVector.objects.filter(project_id=project_id).exclude(space=space).exists()
    oracle = tmp_path / "oracle.csv"
    datasets.oracle_write(oracle, answers)
    lines = oracle.read_text().splitlines()
    assert lines[0] == "external_id,label" and len(lines) == size + 1
