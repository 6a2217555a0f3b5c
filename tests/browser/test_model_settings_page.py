"""A manager opens "Model and features" from the settings page, is told why a choice is refused, then changes the model."""
import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from annotations.models import Project
from labelhub.celery import TaskName
from tests.browser.test_export_and_experiments_pages import log_in, screenshots

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_manager_changes_the_model_from_the_page(page: Page, live_server, artifacts, js_errors, text_project, manager,
                                                   sent_tasks):
    Project.objects.filter(pk=text_project.pk).update(features_error="featurizer plugin 'tiny' failed: no GPU")
    log_in(page, "manager", reverse("project-settings", args=[text_project.pk]))
    page.click("#model-settings-link a")
    page.wait_for_url(f"**{reverse('project-model-settings', args=[text_project.pk])}")
    expect(page.locator("#features-error")).to_contain_text(
        "Features could not be computed: featurizer plugin 'tiny' failed: no GPU")
    expect(page.locator("input[name=featurizer][value=text-hashed]")).to_be_checked()
    screenshots(page, artifacts, "model-settings-page")

    page.check("input[name=model_kind][value=hist_gb]")
    page.click("text=Save model and features")
    expect(page.locator("#model-kind-error")).to_contain_text(
        "Model: Histogram gradient boosting needs dense features; “Hashed word 1–2-grams (default)” gives sparse ones.")
    expect(page.locator("input[name=model_kind][value=hist_gb]")).to_be_checked()
    screenshots(page, artifacts, "model-settings-page-refused")
    assert Project.objects.get(pk=text_project.pk).model_kind == "logistic"

    page.check("input[name=model_kind][value=random_forest]")
    page.click("text=Save model and features")
    expect(page.locator(".messages")).to_contain_text("Model set to Random forest: a retrain is asked for")
    expect(page.locator("input[name=model_kind][value=random_forest]")).to_be_checked()
    assert Project.objects.get(pk=text_project.pk).model_kind == "random_forest"
    assert sent_tasks == [(TaskName.RETRAIN_REQUESTED, [text_project.pk, manager.pk, "Model changed to Random forest"])]
    assert js_errors == []
