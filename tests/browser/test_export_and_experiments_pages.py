"""A manager downloads a CSV from the export page and starts a shadow experiment from the experiments page, in Chromium."""
import csv
import io

import numpy as np
import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from learner.models import Experiment
from learner.services.models import model_version_promote
from tests.browser import session
from tests.factories import AnnotationFactory, ItemFactory
from tests.learner.test_predict_and_experiments import _version

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pass-word-123"  # UserFactory's
TABLET = {"width": 768, "height": 1024}


def log_in(page: Page, username: str, next_url: str) -> None:
    session.log_in(page, username, PASSWORD, next_url)


def no_horizontal_overflow(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def screenshots(page: Page, artifacts, name: str) -> None:
    """The page at 1280x720 and at 768x1024, each without a horizontal scroll bar."""
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
    assert no_horizontal_overflow(page)
    page.set_viewport_size(TABLET)
    page.screenshot(path=str(artifacts / f"{name}-tablet.png"), full_page=True)
    assert no_horizontal_overflow(page)
    page.set_viewport_size({"width": 1280, "height": 720})


def test_a_manager_downloads_the_final_labels_as_csv(page: Page, live_server, artifacts, js_errors, text_project,
                                                     manager, annotator):
    negative, positive = text_project.labels.order_by("order")
    for i, (text, label) in enumerate([("great film", positive), ("dull, too long", negative), ("=SUM(A1)", positive)]):
        item = ItemFactory(project=text_project, external_id=f"review-{i}", text=text)
        AnnotationFactory(item=item, annotator=annotator, label=label)
    ItemFactory(project=text_project, external_id="unlabeled")
    url = reverse("project-export", args=[text_project.pk])
    log_in(page, "manager", url)

    page.check("input[name=format][value=csv]")
    page.check("input[name=include_audit]")
    page.click("text=Show the command for these options")
    expect(page.locator("#export-curl")).to_contain_text("format=csv&mode=final&include_audit=true")
    expect(page.locator("#export-curl")).to_contain_text('Authorization: Token $LABELHUB_TOKEN')
    screenshots(page, artifacts, "export-page")

    with page.expect_download() as info:
        page.click("#export-download")
    download = info.value
    assert download.suggested_filename == "sentiment-final.csv"
    with open(download.path(), encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(io.StringIO(file.read())))
    assert [(r["external_id"], r["text"], r["label"], r["is_audit"]) for r in rows] == [
        ("review-0", "great film", "positive", "false"),
        ("review-1", "dull, too long", "negative", "false"),
        ("review-2", "'=SUM(A1)", "positive", "false"),
    ]

    page.goto(f"{url}?since=last-week&download=1")
    expect(page.locator("#export-error")).to_contain_text("Changed since: Datetime has wrong format.")
    assert js_errors == []


def test_a_manager_starts_a_shadow_experiment_from_the_page(page: Page, live_server, artifacts, js_errors,
                                                            tabular_project, manager):
    tabular_project.feature_names = ["x0", "x1"]
    tabular_project.save()
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] > 0).astype(int)
    champion, _challenger = _version(tabular_project, X, y), _version(tabular_project, X, y)
    model_version_promote(champion, reason="first", trigger="manual")
    url = reverse("project-experiments", args=[tabular_project.pk])
    log_in(page, "manager", url)

    page.select_option("#experiment-challenger", "2")
    page.check("input[name=mode][value=shadow]")
    page.fill("input[name=looks]", "2")
    screenshots(page, artifacts, "experiments-page")
    page.click("#experiment-start-button")

    expect(page.locator(".messages")).to_contain_text("started: v2 against the live v1, shadow.")
    expect(page.locator("section.experiment")).to_contain_text("v1 (champion) vs v2 (challenger) · Shadow")
    experiment = Experiment.objects.get(project=tabular_project)
    assert experiment.status == "running" and experiment.rule["looks"] == 2
    screenshots(page, artifacts, "experiments-page-running")

    page.fill("section.experiment input[name=reason]", "checked the page")
    page.click("text=Stop and keep the champion")
    expect(page.locator(".messages")).to_contain_text(f"Experiment {experiment.pk} stopped")
    assert js_errors == []
