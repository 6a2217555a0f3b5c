"""The simulate command: oracle annotators on scratch copies, learning curves as JSON and PNG; curve summaries."""
import json

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from PIL import Image

from annotations.models import Annotation, Item, Project
from learner.ml import curves
from learner.models import FeatureVector, ModelVersion
from learner.services.features import features_compute_chunk
from tests.factories import ItemFactory

CENTRES = [(-4.0, 0.0), (4.0, 0.0), (0.0, 5.0)]


def _oracle_items(project: Project, spread: float) -> None:
    """150 items of three classes around CENTRES in two columns; each item's true class is in metadata['truth']."""
    names = list(project.labels.order_by("order").values_list("name", flat=True))
    rng = np.random.default_rng(3)
    items = []
    for i in range(150):
        cls = i % 3
        point = rng.normal(CENTRES[cls], spread)
        items.append(ItemFactory(project=project, values=[float(v) for v in point], metadata={"truth": names[cls]}))
    features_compute_chunk(project.pk, [item.pk for item in items])


@pytest.fixture
def oracle_project(tabular_project: Project) -> Project:
    """Three well-separated classes in two columns; each item's true class is in metadata['truth']."""
    project = tabular_project
    project.feature_names = ["x", "y"]
    # Retrain often and gate on few audit labels, so that a 60-label run trains, gates and swaps.
    project.retrain_every_n_labels = 15
    project.gate_min_audit = 5
    project.audit_share = 0.4
    project.save()
    _oracle_items(project, 0.8)
    return project


@pytest.fixture
def overlapping_project(oracle_project: Project) -> Project:
    """The oracle project's classes spread wide enough to overlap: which items are labeled shows in the curve."""
    oracle_project.items.all().delete()
    _oracle_items(oracle_project, 3.0)
    return oracle_project


def simulate(project: Project, tmp_path, *extra: str) -> dict:
    call_command(
        "simulate", "--project", project.slug, "--oracle-field", "truth", "--strategy", "margin",
        "--annotators", "2", "--budget", "60", "--seeds", "1", "--out", str(tmp_path / "run"), *extra,
    )
    return json.loads((tmp_path / "run.json").read_text())


@pytest.mark.django_db
def test_simulate_writes_curves_and_leaves_the_project_untouched(oracle_project, tmp_path, settings):
    users_before = get_user_model().objects.count()

    result = simulate(oracle_project, tmp_path)

    with Image.open(tmp_path / "run.png") as png:
        assert png.format == "PNG" and png.width > 400
    assert {run["strategy"] for run in result["runs"]} == {"margin", "random"}
    for run in result["runs"]:
        labels = [point["labels"] for point in run["curve"]]
        assert labels == sorted(set(labels)) and labels[0] == 10 and labels[-1] == 60
        assert all(0.0 <= point["accuracy"] <= 1.0 for point in run["curve"])
        assert run["retrains"], "the count trigger fires every 15 labels"
    # The real gate promoted a model, so the queue was driven by a live model part of the way.
    assert any(r["status"] == "promoted" for run in result["runs"] for r in run["retrains"])
    assert any(point["live_version"] for run in result["runs"] for point in run["curve"])
    for name in ("margin", "random"):
        summary = result["summary"][name]
        assert summary["mean_curve"]["labels"][-1] == 60 and 0.0 < summary["aulc"] <= 1.0
    assert result["full_pool_accuracy"] > 0.9
    assert result["items"] == {"used": 150, "pool": 112, "test": 38, "without_answer": 0, "without_features": 0}

    # Only reads of the user's project: no labels, leases or models; the scratch copies are gone.
    assert not Annotation.objects.exists()
    assert list(Project.objects.values_list("pk", flat=True)) == [oracle_project.pk]
    assert Item.objects.count() == FeatureVector.objects.count() == 150
    assert not ModelVersion.objects.exists()
    assert get_user_model().objects.count() == users_before
    models_dir = settings.MODEL_STORE_ROOT
    assert not models_dir.exists() or not [p for p in models_dir.rglob("*") if p.is_file()]


@pytest.mark.django_db
def test_keep_leaves_the_scratch_projects_labeled_through_the_queue(oracle_project, tmp_path):
    result = simulate(oracle_project, tmp_path, "--keep", "--set", "gate_alpha=0.1")

    assert len(result["kept_projects"]) == 2
    scratch = Project.objects.get(slug=result["kept_projects"][0])
    annotations = Annotation.objects.filter(item__project=scratch)
    assert annotations.count() == 60
    assert annotations.values("annotator").distinct().count() == 2
    assert annotations.filter(lease__isnull=False).count() == 60  # every label went through a lease
    assert annotations.filter(is_audit=True).exists()
    assert annotations.filter(model_version__isnull=False, predicted_label__isnull=False).exists()
    assert scratch.items.count() == 112  # the test split never enters the pool
    # Settings are copied, the strategy and --set overrides replace theirs, the project keeps its own.
    assert scratch.retrain_every_n_labels == 15 and scratch.gate_min_audit == 5 and scratch.gate_alpha == 0.1
    assert scratch.query_strategy == "margin" and result["settings"]["gate_alpha"] == 0.1
    oracle_project.refresh_from_db()
    assert oracle_project.gate_alpha == 0.05
    assert not Annotation.objects.filter(item__project=oracle_project).exists()


@pytest.mark.django_db
def test_oracle_from_csv_leaves_out_items_without_an_answer(oracle_project, tmp_path):
    items = list(oracle_project.items.order_by("pk"))
    oracle = tmp_path / "answers.csv"
    oracle.write_text("external_id,label\n" + "".join(f"{i.external_id},{i.metadata['truth']}\n" for i in items[:120]))

    call_command(
        "simulate", "--project", str(oracle_project.pk), "--oracle-csv", str(oracle), "--strategy", "random",
        "--annotators", "2", "--budget", "30", "--seeds", "1", "--out", str(tmp_path / "csv.json"),
    )

    result = json.loads((tmp_path / "csv.json").read_text())
    assert result["items"]["used"] == 120 and result["items"]["without_answer"] == 30
    assert [run["strategy"] for run in result["runs"]] == ["random"]  # the baseline is not run twice
    assert (tmp_path / "csv.png").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, message",
    [
        (["--project", "nope", "--oracle-field", "truth"], "No project with slug or id 'nope'"),
        (["--project", "wine"], "--oracle-field NAME or --oracle-csv FILE"),
        (["--project", "wine", "--oracle-field", "colour"], "has an answer in metadata['colour']"),
        (["--project", "wine", "--oracle-csv", "/nonexistent/answers.csv"], "Cannot read the oracle file"),
        (["--project", "wine", "--oracle-field", "truth", "--strategy", "psychic"], "Unknown strategy 'psychic'"),
        (["--project", "wine", "--oracle-field", "truth", "--set", "gate_alpha=2"], "Cannot set gate_alpha"),
        (["--project", "wine", "--oracle-field", "truth", "--set", "name=x"], "Cannot set 'name=x'"),
        (["--project", "wine", "--oracle-field", "truth", "--noisy-annotators", "5"],
         "The noisy annotators must number from 0 to the 4 annotators (got 5)"),
        (["--project", "wine", "--oracle-field", "truth", "--noisy-annotators", "1", "--noisy-from", "-3"],
         "Noisy answers start after a number of labels, 0 or more (got -3)"),
        (["--project", "wine", "--oracle-field", "truth", "--noisy-from", "10"],
         "A start for noisy answers needs noisy annotators"),
    ],
)
def test_bad_arguments_say_what_is_wrong(oracle_project, args, message, tmp_path):
    with pytest.raises(CommandError, match=None) as caught:
        call_command("simulate", *args, "--out", str(tmp_path / "x"))
    assert message in str(caught.value)
    assert not (tmp_path / "x.json").exists()


@pytest.mark.django_db
def test_oracle_answers_that_are_not_labels_are_refused(oracle_project, tmp_path):
    oracle = tmp_path / "answers.csv"
    first = oracle_project.items.first()
    oracle.write_text(f"{first.external_id},merlot\n")
    with pytest.raises(CommandError) as caught:
        call_command("simulate", "--project", "wine", "--oracle-csv", str(oracle), "--out", str(tmp_path / "x"))
    assert "'merlot' (1 items)" in str(caught.value) and "class_0, class_1, class_2" in str(caught.value)


def test_labels_to_reach_is_the_first_point_at_or_above_the_target():
    labels = np.array([10, 20, 30, 40, 50])
    accuracy = np.array([0.5, 0.8, 0.94, 0.93, 0.97])
    assert curves.labels_to_reach(labels, accuracy, 0.9) == 30
    assert curves.labels_to_reach(labels, accuracy, 0.97) == 50
    assert curves.labels_to_reach(labels, accuracy, 0.98) is None


def test_summary_n95_n99_and_aulc_of_hand_made_curves():
    # Two seeds; their mean is 0.5, 0.9, 0.96, 1.0 at 10..40 labels.
    first = [(10, 0.4), (20, 0.9), (30, 0.95), (40, 1.0)]
    second = [(10, 0.6), (20, 0.9), (30, 0.97), (40, 1.0)]
    summary = curves.summarise([first, second], full_pool_accuracy=1.0, budget=40)
    assert summary["n95"] == 30 and summary["n99"] == 40
    assert summary["mean_curve"]["mean"] == pytest.approx([0.5, 0.9, 0.96, 1.0])
    assert summary["mean_curve"]["std"] == pytest.approx([0.1, 0.0, 0.01, 0.0])
    # Trapezoids: (0.5+0.9)/2·10 + (0.9+0.96)/2·10 + (0.96+1)/2·10 = 26.1, over a span of 30 labels.
    assert summary["aulc"] == pytest.approx(26.1 / 30)
    never = curves.summarise([first], full_pool_accuracy=1.04, budget=40)
    assert never["n95"] == 40 and never["n99"] is None


def test_aulc_is_one_for_a_perfect_curve_and_holds_the_last_value_to_the_budget():
    assert curves.area_under_curve(np.array([10, 20]), np.array([1.0, 1.0]), 20) == pytest.approx(1.0)
    # 0.5 → 1.0 over 10..20, then held at 1.0 to 30: (7.5 + 10) / 20.
    assert curves.area_under_curve(np.array([10, 20]), np.array([0.5, 1.0]), 30) == pytest.approx(17.5 / 20)
    assert curves.area_under_curve(np.array([]), np.array([]), 30) is None


def test_mean_curve_uses_the_label_counts_every_run_recorded():
    mean = curves.mean_curve([[(10, 0.2), (15, 0.3), (20, 0.4)], [(10, 0.4), (20, 0.6)]])
    assert mean.labels.tolist() == [10, 20] and mean.mean.tolist() == pytest.approx([0.3, 0.5]) and mean.runs == 2


def test_holdout_split_is_seeded_stratified_and_disjoint():
    y = np.repeat([0, 1, 2], [40, 40, 20])
    pool, test = curves.holdout_split(y, 0.25, seed=1)
    again_pool, again_test = curves.holdout_split(y, 0.25, seed=1)
    assert test.tolist() == again_test.tolist() and pool.tolist() == again_pool.tolist()
    assert len(test) == 25 and not set(pool) & set(test) and len(pool) + len(test) == 100
    assert np.bincount(y[test]).tolist() == [10, 10, 5]
    assert curves.holdout_split(y, 0.25, seed=2)[1].tolist() != test.tolist()


def test_fit_accuracy_with_one_class_seen_is_that_class_share():
    X = np.array([[0.0], [1.0]])
    assert curves.fit_accuracy("tabular", X, np.array([1, 1]), np.zeros((4, 1)), np.array([1, 0, 0, 1])) == 0.5


def _trace(result: dict) -> dict:
    """What a run did, less its timings: each arm's curve and its retrains' outcomes."""
    return {
        run["strategy"]: {
            "curve": run["curve"],
            "retrains": [(r["labels"], r["status"], r["version"], r["audit_n"]) for r in run["retrains"]],
            "audit_labels": run["audit_labels"],
        }
        for run in result["runs"]
    }


@pytest.mark.django_db
def test_two_runs_with_the_same_seeds_draw_the_same(overlapping_project, tmp_path):
    first = simulate(overlapping_project, tmp_path / "a", "--budget", "90")
    second = simulate(overlapping_project, tmp_path / "b", "--budget", "90")

    assert set(_trace(first)) == {"margin", "random"}
    assert _trace(first) == _trace(second)


@pytest.mark.django_db
def test_the_live_curve_counts_the_majority_label_until_a_model_is_live(oracle_project, tmp_path):
    # No count trigger: no model is ever trained, let alone live.
    result = simulate(oracle_project, tmp_path, "--budget", "30", "--no-baseline", "--set", "retrain_every_n_labels=0")

    [run] = result["runs"]
    assert run["strategy"] == "margin" and not run["retrains"]
    # The test split holds 13, 13 and 12 items of the three classes: always answering one is right on 12 or 13 of 38.
    for point in run["curve"]:
        assert point["live_version"] is None
        assert round(point["live_accuracy"] * 38) in (12, 13)
        assert point["live_accuracy"] == pytest.approx(round(point["live_accuracy"] * 38) / 38, abs=1e-5)
    summary = result["summary"]["margin"]
    assert summary["live_mean_curve"]["labels"] == summary["mean_curve"]["labels"] == [10, 20, 30]
    assert summary["live_final_accuracy"] == pytest.approx(run["curve"][-1]["live_accuracy"])
    assert summary["first_promotion_labels"] == [None] and summary["median_first_promotion"] is None
    assert summary["live_n95"] is None and summary["live_max_drop"] >= 0.0
    assert list(result["summary"]) == ["margin"]  # --no-baseline: random sampling was not run


@pytest.mark.django_db
def test_a_noisy_annotator_answers_at_random_from_the_given_label_on(oracle_project, tmp_path):
    result = simulate(
        oracle_project, tmp_path, "--no-baseline", "--keep", "--noisy-annotators", "1", "--noisy-from", "20",
    )

    [run] = result["runs"]
    assert result["noise"] == {"annotators": 1, "after_labels": 20}
    scratch = Project.objects.get(slug=result["kept_projects"][0])
    annotations = list(Annotation.objects.filter(item__project=scratch).order_by("created_at", "pk")
                       .values_list("annotator__username", "label__name", "item__metadata"))
    assert len(annotations) == 60
    noisy_user = sorted({username for username, _, _ in annotations})[0]  # the first simulated expert
    right = [label == metadata["truth"] for _, label, metadata in annotations]
    assert all(right[:20])  # everyone answers from the oracle until then
    after = [ok for (username, _, _), ok in zip(annotations[20:], right[20:]) if username == noisy_user]
    others = [ok for (username, _, _), ok in zip(annotations[20:], right[20:]) if username != noisy_user]
    assert run["noisy_labels"] == len(after) and len(after) >= 15
    assert all(others) and sum(after) < 0.7 * len(after)  # uniform over 3 labels: right about a third of the time


def test_max_drop_is_the_largest_fall_below_the_best_so_far():
    assert curves.max_drop(np.array([0.1, 0.9, 0.85, 0.95, 0.9, 0.8, 0.97])) == pytest.approx(0.15)
    assert curves.max_drop(np.array([0.1, 0.5, 0.5, 0.9])) == 0.0
    assert curves.max_drop(np.array([])) is None


def test_median_first_promotion_counts_never_as_later_than_any():
    assert curves.median_or_never([40, None, 30]) == 40
    assert curves.median_or_never([40, 20, 30, 50]) == 35
    assert curves.median_or_never([40, None, None]) is None
    assert curves.median_or_never([]) is None
