"""The model versions page, a version's page, the compare view and the project dashboard, as their readers see them."""
import re
from datetime import timedelta

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from annotations.models import ImportJob, QueueScoring
from learner.models import DriftCheck, LiveModel, ModelVersion, TrainingRun
from learner.selectors import training_run_label_ids
from learner.services import triggers
from learner.services.models import model_version_force_promote
from learner.selectors.pages import learning_curve_versions
from learner.services.training import training_run_execute, training_run_request
from tests.factories import AnnotationFactory, ItemFactory, MembershipFactory, UserFactory
from tests.learner.conftest import blob_items, versions_made

pytestmark = pytest.mark.django_db


def train(project, trigger="manual", **evidence) -> TrainingRun:
    run = training_run_request(project_id=project.pk, trigger=trigger, evidence=evidence or {"note": "test"})
    return training_run_execute(run.pk)


@pytest.fixture
def two_versions(labeled_blobs, manager):
    """v1 promoted by the gate, v2 kept out by it (rule 'better') and then promoted anyway by the manager: v1 is retired."""
    labeled_blobs.promotion_rule = "better"
    labeled_blobs.save(update_fields=["promotion_rule"])
    train(labeled_blobs, "count", new_labels=200, every_n_labels=25)
    train(labeled_blobs)
    v2 = ModelVersion.objects.get(project=labeled_blobs, number=2)
    model_version_force_promote(version=v2, actor=manager, reason="checked by hand")
    return labeled_blobs


@pytest.fixture
def reviewer(labeled_blobs):
    user = UserFactory(username="rita-reviewer")
    MembershipFactory(project=labeled_blobs, user=user, role="reviewer")
    return user


def text_of(response) -> str:
    """The page's visible text, tags removed and white space collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def test_versions_page_shows_status_metrics_lineage_promoters_timeline_and_curve(client, two_versions, manager):
    client.force_login(manager)
    response = client.get(reverse("project-models", args=[two_versions.pk]))
    assert response.status_code == 200
    body, text = response.content.decode(), text_of(response)
    assert "Live: v2" in text
    assert 'id="version-2" data-status="live"' in body and 'id="version-1" data-status="retired"' in body
    v1 = ModelVersion.objects.get(project=two_versions, number=1)
    low, high = v1.metrics["accuracy_ci"]
    assert f"{v1.metrics['accuracy']:.3f} 95% CI {low:.3f}–{high:.3f} · n = 80" in text
    assert f"{v1.metrics['macro_f1']:.3f} over 2 of 3 classes" in text
    # Trigger and evidence, lineage recorded at training time, who made each version live.
    assert "Label count 200 new labels before any model was live. Promoted: beats the majority-class baseline" in text
    assert v1.code_version and v1.code_version in text and v1.query_strategy == "margin"
    assert v1.label_snapshot_hash[:10] in body
    assert "the gate, after a label count retrain" in text
    assert "manager, promoting anyway" in text
    # Timeline, newest first: v2 live now, having replaced v1.
    timeline = body[body.index('id="timeline"'):]
    assert timeline.index("<strong>v2</strong>") < timeline.index("<strong>v1</strong>")
    assert "now" in text_of(type("R", (), {"content": timeline.split("</tr>")[1].encode()})())
    # The learning curve is an SVG with titled axes; a manager can roll back to v1.
    assert "<svg" in body and ">labels used for training</text>" in body and ">audit accuracy</text>" in body
    assert "Roll back to v1" in text
    assert 'name="csrfmiddlewaretoken"' in body


def test_version_page_shows_confusion_matrix_and_per_class_figures(client, two_versions, reviewer):
    client.force_login(reviewer)
    response = client.get(reverse("model-version-detail", args=[two_versions.pk, 1]))
    assert response.status_code == 200
    body, text = response.content.decode(), text_of(response)
    v1 = ModelVersion.objects.get(project=two_versions, number=1)
    first_class = v1.metrics["per_class"][str(v1.classes[0])]
    assert f"class_0 {first_class['precision']:.3f} {first_class['recall']:.3f} {first_class['support']}" in text
    assert f"Macro-F1 {v1.metrics['macro_f1']:.3f} over 2 of 3 classes" in text
    assert "<svg" in body and ">predicted label</text>" in body and ">expert label</text>" in body
    assert "Gate: Promoted: beats the majority-class baseline (audit accuracy 1.000 against 0.500" in text
    # A reviewer sees no promote or roll back buttons.
    assert "Roll back" not in text and "Promote anyway" not in text


def test_compare_view_puts_two_versions_side_by_side(client, two_versions, reviewer):
    client.force_login(reviewer)
    response = client.get(reverse("model-versions-compare", args=[two_versions.pk]), {"a": "1", "b": "2"})
    assert response.status_code == 200
    body, text = response.content.decode(), text_of(response)
    assert "Status Retired Live" in text
    assert "v1 precision v1 recall v1 audit items v2 precision v2 recall v2 audit items Recall change" in text
    # Each version's per-class support beside its precision and recall; class_2 has no audit items.
    v1, v2 = (ModelVersion.objects.get(project=two_versions, number=n) for n in (1, 2))
    first = str(v1.classes[0])
    a, b = v1.metrics["per_class"][first], v2.metrics["per_class"][first]
    assert (f"class_0 {a['precision']:.3f} {a['recall']:.3f} {a['support']} "
            f"{b['precision']:.3f} {b['recall']:.3f} {b['support']}") in text
    assert "class_2 – – 0 – – 0 –" in text
    assert f"Macro-F1 {v1.metrics['macro_f1']:.3f} over 2 of 3 classes {v2.metrics['macro_f1']:.3f} over 2 of 3" in text
    assert body.count("<svg") == 2 and "predicted label" in body
    assert '<option value="1" selected>' in body and '<option value="2" selected>' in body


@pytest.mark.parametrize(("params", "message"), [
    ({"a": "x", "b": "2"}, "Choose version A from the list (got &#x27;x&#x27;)."),
    ({"a": "1", "b": "-3"}, "Version B must be a version number"),
    ({"a": "1", "b": "99"}, "This project has no model version 99."),
    ({"a": "1"}, "Choose version B from the list"),
    ({"a": "1", "b": "99999999999999999999"}, "Version B must be a version number"),
])
def test_compare_with_a_bad_version_says_so(client, two_versions, reviewer, params, message):
    client.force_login(reviewer)
    response = client.get(reverse("model-versions-compare", args=[two_versions.pk]), params)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_label_names_matplotlib_would_read_as_math_are_shown_as_written(client, two_versions, reviewer):
    names = {"class_0": "$\\foo$", "class_1": "$x^$", "class_2": "$$"}  # each failed the pages with a 500
    for old, new in names.items():
        two_versions.labels.filter(name=old).update(name=new)
    client.force_login(reviewer)
    for response in (
        client.get(reverse("model-version-detail", args=[two_versions.pk, 1])),
        client.get(reverse("model-versions-compare", args=[two_versions.pk]), {"a": "1", "b": "2"}),
    ):
        assert response.status_code == 200
        body = response.content.decode()
        assert "<svg" in body and f">{names['class_0']}</text>" in body and f">{names['class_1']}</text>" in body


def test_unknown_version_page_is_a_404_and_the_compare_form_opens_empty(client, two_versions, reviewer):
    client.force_login(reviewer)
    assert client.get(reverse("model-version-detail", args=[two_versions.pk, 7])).status_code == 404
    empty = client.get(reverse("model-versions-compare", args=[two_versions.pk]))
    assert empty.status_code == 200 and 'id="compare"' not in empty.content.decode()


def test_reviewers_read_annotators_cannot_and_only_managers_swap(client, two_versions, reviewer):
    annotator = UserFactory(username="ann")
    MembershipFactory(project=two_versions, user=annotator, role="annotator")
    client.force_login(annotator)
    for name, args in [("project-models", []), ("model-version-detail", [1]), ("model-versions-compare", []),
                       ("project-dashboard", []), ("project-dashboard-jobs", [])]:
        assert client.get(reverse(name, args=[two_versions.pk, *args])).status_code == 404, name
    client.force_login(reviewer)
    assert client.get(reverse("project-dashboard", args=[two_versions.pk])).status_code == 200
    assert client.post(reverse("model-version-rollback", args=[two_versions.pk, 1])).status_code == 404
    assert LiveModel.objects.get(project=two_versions).version.number == 2


def test_manager_rolls_back_from_the_versions_page(client, two_versions, manager):
    client.force_login(manager)
    response = client.post(reverse("model-version-rollback", args=[two_versions.pk, 1]), {"reason": "v2 misfires"},
                           follow=True)
    assert "Version 1 is live." in response.content.decode()
    assert LiveModel.objects.get(project=two_versions).version.number == 1
    text = text_of(response)
    assert "Live: v1" in text and "rolled back by manager" in text and "v2 misfires" in text


def queries_of(client, url) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_versions_page_and_dashboard_queries_do_not_grow_with_versions_and_runs(
    client, two_versions, reviewer, django_assert_num_queries
):
    client.force_login(reviewer)
    models_url = reverse("project-models", args=[two_versions.pk])
    dashboard_url = reverse("project-dashboard", args=[two_versions.pk])
    # session, user, project with role, versions' count, the page of versions with runs, live version with run
    # and position, promotions of the versions shown, newest swaps with their total, runs, the curve's versions
    with django_assert_num_queries(10):
        client.get(models_url)
    # session, user, project with role, item counts, label counts, labels per day, live version, scoring,
    # label distribution, drift check, recent runs with versions, active imports, running scorings, active runs
    with django_assert_num_queries(14):
        client.get(dashboard_url)
    train(two_versions)
    train(two_versions)
    model_version_force_promote(version=ModelVersion.objects.get(project=two_versions, number=4),
                                actor=reviewer, reason="more rows")
    assert ModelVersion.objects.filter(project=two_versions).count() == 4
    assert queries_of(client, models_url) == 10
    assert queries_of(client, dashboard_url) == 14


def version_numbers(response) -> list[int]:
    """The versions the page's table shows, top to bottom (the live one first when shown apart)."""
    body = response.content.decode()
    table = body[body.index('id="versions"'):body.index("</table>", body.index('id="versions"'))]
    return [int(n) for n in re.findall(r'<tr id="version-(\d+)"', table)]


def test_versions_page_shows_fifty_versions_a_page_and_the_live_one_on_every_page(
    client, many_versions, reviewer, django_assert_num_queries
):
    client.force_login(reviewer)
    url = reverse("project-models", args=[many_versions.pk])
    with django_assert_num_queries(10):  # as many as for two versions
        first = client.get(url)
    text = text_of(first)
    # The newest 50, below the live v5 (which is on page 3), shown apart with a link to its page.
    assert version_numbers(first) == [5, *range(120, 70, -1)]
    assert "Live: v5" in text and "Versions 1–50 of 120, newest first." in text
    assert "The live version, shown above every page; it is listed on page 3 ." in text
    assert 'href="?page=3#version-5"' in first.content.decode()
    assert "Page 1 of 3" in text and 'href="?page=2" rel="next"' in first.content.decode()
    assert 'rel="prev"' not in first.content.decode()

    second = client.get(url, {"page": "2"})
    assert version_numbers(second) == [5, *range(70, 20, -1)]
    assert 'href="?page=1" rel="prev"' in second.content.decode() and "Page 2 of 3" in text_of(second)

    # The third page holds the oldest, the live one among them: it is not shown twice.
    third = client.get(url, {"page": "3"})
    assert version_numbers(third) == list(range(20, 0, -1))
    assert 'id="live-row"' not in third.content.decode() and "Page 3 of 3" in text_of(third)
    assert 'rel="next"' not in third.content.decode() and "There is no page" not in text_of(third)
    # The live version's row, on its page or apart, has its promotion and its badge.
    for response in (first, third):
        row = re.search(r'<tr id="version-5".*?</tr>', response.content.decode(), re.S).group(0)
        assert 'data-status="live"' in row and "rolled back by manager" in text_of(type("R", (), {"content": row.encode()})())

    # The timeline: the newest 50 of the 61 spans, the rollback first. The curve draws every other version of
    # the 120 (v1, v3, ..., v119, the live v5 among them) and the newest, v120.
    assert "The newest 50 of 61 spans" in text
    timeline = first.content.decode().split('id="timeline"')[1].split("</table>")[0]
    assert timeline.count("<tr") == 51 and "rolled back by manager" in timeline.split("</tr>")[1]
    assert "Of the 120 evaluated versions, 61 are drawn" in text
    assert ">v120</text>" in first.content.decode() and ">v118</text>" not in first.content.decode()


@pytest.mark.parametrize(("page", "shown", "numbers"), [
    ("abc", 1, range(120, 70, -1)),
    ("0", 1, range(120, 70, -1)),
    ("-3", 1, range(120, 70, -1)),
    ("2.5", 1, range(120, 70, -1)),
    ("9" * 5000, 1, range(120, 70, -1)),
    ("4", 3, range(20, 0, -1)),
    ("99999999999999999999", 3, range(20, 0, -1)),
])
def test_a_page_number_that_is_no_page_shows_the_first_or_last_and_says_so(
    client, many_versions, reviewer, page, shown, numbers
):
    client.force_login(reviewer)
    response = client.get(reverse("project-models", args=[many_versions.pk]), {"page": page})
    assert response.status_code == 200
    assert [n for n in version_numbers(response) if n != 5] == [n for n in numbers if n != 5]
    shown_as = page if len(page) <= 20 else f"{page[:20]}…"
    assert f"There is no page “{shown_as}”: this is page {shown} of 3." in text_of(response)


def test_one_page_of_versions_has_no_page_links_and_an_empty_page_number_is_the_first(client, two_versions, reviewer):
    client.force_login(reviewer)
    response = client.get(reverse("project-models", args=[two_versions.pk]), {"page": ""})
    assert version_numbers(response) == [2, 1]
    body = response.content.decode()
    assert 'class="pager"' not in body and "There is no page" not in body and 'id="live-row"' not in body


def test_the_learning_curve_draws_every_kth_version_the_newest_and_the_live_one(client, tabular_project, manager):
    versions_made(tabular_project, 450, live=8, actor=manager)
    live = ModelVersion.objects.get(project=tabular_project, number=8)
    drawn, total = learning_curve_versions(tabular_project.pk, live.pk)
    # 450 evaluated versions: every fifth from v1 keeps 90 (at most 100), then the newest, v450, and the live v8.
    assert total == 450
    assert [v.number for v in drawn] == sorted([*range(1, 451, 5), 450, 8])
    client.force_login(manager)
    response = client.get(reverse("project-models", args=[tabular_project.pk]))
    assert "Of the 450 evaluated versions, 92 are drawn" in text_of(response)
    body = response.content.decode()
    assert ">v450</text>" in body and ">v8</text>" in body and ">v446</text>" in body and ">v449</text>" not in body


def test_dashboard_shows_counts_labels_per_day_freshness_drift_and_trigger_decisions(
    client, two_versions, reviewer, manager
):
    # Two labels by a second expert yesterday, on new items.
    expert = UserFactory(username="dr-ortiz")
    label = two_versions.labels.first()
    for item in ItemFactory.create_batch(2, project=two_versions, values=[0.0, 0.0], text=""):
        annotation = AnnotationFactory(item=item, annotator=expert, label=label)
        type(annotation).objects.filter(pk=annotation.pk).update(created_at=timezone.now() - timedelta(days=1))
    QueueScoring.objects.create(project=two_versions, model_version=1, strategy="margin", status="complete",
                                finished_at=timezone.now() - timedelta(minutes=5))
    DriftCheck.objects.create(project=two_versions, model_version=2, drifted=False, evidence={
        "enough_data": True, "reference_n": 200, "recent_n": 60, "confidence_psi": 0.031, "max_feature_psi": 0.084,
        "max_feature": 1, "threshold": 0.2})
    client.force_login(reviewer)
    response = client.get(reverse("project-dashboard", args=[two_versions.pk]))
    body, text = response.content.decode(), text_of(response)
    assert "Pool 202 Labeled 202 Done" in text and "Audit items 80 Labels 202" in text
    assert "<svg" in body and "Labels per day by expert" in body 
    assert ">day</text>" in body and ">labels</text>" in body  # the axis titles
    assert "manager 200, dr-ortiz 2" in text
    # The queue still serves v1's ranking while v2 is live.
    assert "Queue ranked by v1 (margin), scored 5 minutes ago" in text
    assert "The live model v2 has not ranked the queue yet" in text
    assert "Stable checked 0 minutes ago for v2" in text
    assert "confidence PSI 0.031 · largest feature PSI 0.084 (feature 1) · threshold 0.2" in text
    assert "200 new labels before any model was live. Promoted · v1 Promoted: beats the majority-class baseline" in text
    assert "Kept the champion · v2 Not promoted: not enough evidence yet that it is better than v1" in text
    assert "Nothing is running." in text and 'hx-trigger="every' not in body


def test_drift_check_records_its_measurement_even_when_nothing_fires(labeled_blobs):
    train(labeled_blobs)
    blob_items(labeled_blobs, np.random.default_rng(1), 200)  # like the training items
    assert triggers.drift_check(labeled_blobs.pk) is None
    check = DriftCheck.objects.get(project=labeled_blobs)
    assert not check.drifted and check.training_run is None and check.model_version == 1
    assert check.evidence["enough_data"] and check.evidence["recent_n"] == 200
    assert check.evidence["threshold"] == labeled_blobs.drift_threshold


def test_running_jobs_panel_polls_while_something_runs_and_stops_after(client, two_versions, reviewer):
    ImportJob.objects.create(project=two_versions, filename="more.csv", status="done", features_status="running",
                             features_total=40, features_done=10)
    scoring = QueueScoring.objects.create(project=two_versions, model_version=2, strategy="margin",
                                          chunks_total=4, chunks_done=1, items_total=1000, items_scored=250)
    run = TrainingRun.objects.create(project=two_versions, trigger="manual", status="running", stage="evaluate")
    client.force_login(reviewer)
    url = reverse("project-dashboard-jobs", args=[two_versions.pk])
    panel = client.get(url).content.decode()
    assert f'hx-get="{url}" hx-trigger="every 2s"' in panel
    assert "Import more.csv · computing features · 25%" in text_of(type("R", (), {"content": panel.encode()})())
    assert 'progress max="100" value="25"' in panel  # features and scoring both a quarter done
    assert "250 of 1000 items" in panel
    assert "Training run" in panel and "Running: evaluate" in panel and 'value="40"' in panel

    ImportJob.objects.update(features_status="done", features_done=40)
    QueueScoring.objects.filter(pk=scoring.pk).update(status="complete", finished_at=timezone.now())
    TrainingRun.objects.filter(pk=run.pk).update(status="failed")
    done = client.get(url).content.decode()
    assert "Nothing is running." in done and "hx-get" not in done and 'data-running="false"' in done


def test_pages_of_a_project_without_models_or_labels_say_so(client, tabular_project, manager):
    client.force_login(manager)
    models = text_of(client.get(reverse("project-models", args=[tabular_project.pk])))
    assert "No model is live yet" in models and "No model trained yet." in models
    assert "no evaluated version yet" in models and "No version has been live yet." in models
    dashboard = client.get(reverse("project-dashboard", args=[tabular_project.pk]))
    text = text_of(dashboard)
    assert "Pool 0 Labeled 0 Done 0 Audit items 0 Labels 0" in text
    assert "The queue has not been ranked yet." in text and "No drift check yet: it starts once a model is live" in text
    assert "no labels in this period" in text and "No training run yet." in text


def test_swapping_to_a_version_that_does_not_exist_says_so(client, two_versions, manager):
    client.force_login(manager)
    response = client.post(reverse("model-version-rollback", args=[two_versions.pk, 42]), follow=True)
    assert response.status_code == 200 and "This project has no model version 42." in response.content.decode()
    promote_live = client.post(reverse("model-version-promote", args=[two_versions.pk, 2]), {"reason": "again"},
                               follow=True)
    assert "Version 2 is already live." in promote_live.content.decode()
    assert LiveModel.objects.get(project=two_versions).version.number == 2


def test_the_code_version_comes_from_the_setting_else_git_else_the_package(settings, monkeypatch):
    from learner.services import models as model_services

    model_services.code_version.cache_clear()
    settings.LABELHUB_CODE_VERSION = "release-2026.12"
    assert model_services.code_version() == "release-2026.12"
    model_services.code_version.cache_clear()
    settings.LABELHUB_CODE_VERSION = ""

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(model_services.subprocess, "run", no_git)
    assert model_services.code_version() == "labelhub 0.1.0"
    model_services.code_version.cache_clear()


def test_the_labeling_page_loads_the_model_panel_in_the_versions_page_words(client, labeled_blobs, manager):
    expert = UserFactory(username="dr-lee")
    MembershipFactory(project=labeled_blobs, user=expert, role="annotator")
    client.force_login(expert)
    status_url = reverse("project-model-status", args=[labeled_blobs.pk])
    assert f'hx-get="{status_url}"' in client.get(reverse("label", args=[labeled_blobs.pk])).content.decode()
    assert "No model is live yet" in text_of(client.get(status_url))

    labeled_blobs.promotion_rule = "better"
    labeled_blobs.save(update_fields=["promotion_rule"])
    train(labeled_blobs, "count", new_labels=200, every_n_labels=25)
    train(labeled_blobs, "count", new_labels=25, every_n_labels=25, live_version=1)
    text = text_of(client.get(status_url))
    assert "Live v1 · audit accuracy 1.000" in text
    assert "Latest retrain (v2): 25 new labels since v1." in text
    assert "Not promoted: not enough evidence yet that it is better than v1" in text
    body = client.get(status_url).content.decode()
    assert 'class="decision decision-not_promoted"' in body  # grey, not the red of a rejection

    outsider = UserFactory(username="nobody")
    client.force_login(outsider)
    assert client.get(status_url).status_code == 404


def test_pages_and_the_api_never_read_the_snapshots_label_lineage(client, two_versions, manager):
    """A snapshot lists every label's id, and a run follows each label while training is cheap: lists leave them."""
    client.force_login(manager)
    urls = [reverse(name, args=[two_versions.pk]) for name in (
        "project-models", "project-dashboard", "project-model-status", "api-model-versions", "api-runs",
    )] + [reverse("model-version-detail", args=[two_versions.pk, 2])]
    for url in urls:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        assert not [q["sql"] for q in captured if "label_lineage" in q["sql"]], url
    # Still there for whoever asks.
    assert training_run_label_ids(TrainingRun.objects.filter(project=two_versions, label_lineage__isnull=False).first())
