"""A manager rolls back on the model versions page in Chromium; the dashboard's job panel follows a job live."""
import numpy as np
import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from annotations.models import ImportJob, Project
from learner.models import LiveModel, ModelVersion
from learner.services.models import model_version_force_promote
from learner.services.training import training_run_execute, training_run_request
from tests.browser import session
from tests.factories import AnnotationFactory, UserFactory
from tests.learner.conftest import blob_items, versions_made

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "versions-and-more-versions"


def project_with_two_versions(project: Project, manager) -> Project:
    """The wine project on two blob classes: v1 promoted by the gate, v2 kept out (rule 'better') and promoted
    anyway, so v1 is retired."""
    project.feature_names = ["x0", "x1"]
    project.promotion_rule = "better"
    project.save()
    negative, positive = project.labels.order_by("order")[:2]
    expert = UserFactory(username="dr-lee")
    for i, item in enumerate(blob_items(project, np.random.default_rng(7), 160)):
        AnnotationFactory(item=item, annotator=manager if i % 3 else expert, label=positive if i % 2 else negative,
                          is_audit=i >= 100)
    for note in ("first batch", "second batch"):
        training_run_execute(training_run_request(project_id=project.pk, trigger="manual", evidence={"note": note}).pk)
    model_version_force_promote(version=ModelVersion.objects.get(project=project, number=2), actor=manager,
                                reason="try the newer one")
    return project


def log_in(page: Page, username: str, next_url: str) -> None:
    session.log_in(page, username, PASSWORD, next_url)


@pytest.fixture
def manager_user(db):
    return UserFactory(username="manager", password=PASSWORD)


def test_a_manager_rolls_back_and_the_live_version_changes(
    page: Page, live_server, artifacts, js_errors, tabular_project, manager_user
):
    project = project_with_two_versions(tabular_project, manager_user)
    url = reverse("project-models", args=[project.pk])
    log_in(page, "manager", url)

    expect(page.locator("#live-version")).to_contain_text("Live: v2")
    expect(page.locator("#version-2 .badge")).to_have_text("Live")
    expect(page.locator("#version-1 .badge")).to_have_text("Retired")
    expect(page.locator("#timeline tbody tr").first).to_contain_text("manager, promoting anyway")
    expect(page.locator("figure.plot svg").first).to_be_visible()
    page.screenshot(path=str(artifacts / "versions-page.png"), full_page=True)

    row = page.locator("#version-1")
    row.get_by_label("Reason to roll back to v1").fill("v2 confuses the new batch")
    row.get_by_role("button", name="Roll back to v1").click()

    expect(page.locator(".messages")).to_contain_text("Version 1 is live.")
    expect(page.locator("#live-version")).to_contain_text("Live: v1")
    expect(page.locator("#version-1 .badge")).to_have_text("Live")
    expect(page.locator("#version-2 .badge")).to_have_text("Retired")
    first_span = page.locator("#timeline tbody tr").first
    expect(first_span).to_contain_text("rolled back by manager")
    expect(first_span).to_contain_text("v2 confuses the new batch")
    assert LiveModel.objects.get(project=project).version.number == 1

    # Compare the two side by side through the selects.
    page.select_option("select[name=a]", "1")
    page.select_option("select[name=b]", "2")
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("#compare tbody tr").first.locator("td")).to_have_text(["Live", "Retired"])
    expect(page.locator("figure.plot svg")).to_have_count(2)
    page.screenshot(path=str(artifacts / "versions-compare.png"), full_page=True)

    page.get_by_role("link", name="v1", exact=True).first.click()
    expect(page.locator("h1")).to_contain_text("Model v1")
    expect(page.locator(".per-class")).to_contain_text("class_0")
    expect(page.locator("figure.plot svg").first).to_be_visible()
    page.screenshot(path=str(artifacts / "version-page.png"), full_page=True)
    assert js_errors == []


def test_a_manager_pages_back_to_the_oldest_versions_with_the_live_one_above_each_page(
    page: Page, live_server, artifacts, js_errors, tabular_project, manager_user
):
    versions_made(tabular_project, 120, live=5, actor=manager_user)
    url = reverse("project-models", args=[tabular_project.pk])
    log_in(page, "manager", url)

    expect(page.locator("#live-row #version-5 .badge")).to_have_text("Live")
    expect(page.locator("#versions > tbody:not(.pinned) > tr")).to_have_count(50)
    expect(page.locator("nav.pager").first).to_contain_text("Page 1 of 3")
    page.screenshot(path=str(artifacts / "versions-page-many.png"), full_page=True)

    for where in ("Page 2 of 3", "Page 3 of 3"):
        page.locator("nav.pager").first.get_by_role("link", name="Next (older) →").click()
        expect(page.locator("nav.pager").first).to_contain_text(where)
    # The oldest twenty, the live v5 among them and not shown twice.
    expect(page.locator("#versions > tbody > tr")).to_have_count(20)
    expect(page.locator("#live-row")).to_have_count(0)
    expect(page.locator("#version-1")).to_be_visible()

    page.locator("nav.pager").first.get_by_role("link", name="« Newest").click()
    page.locator("#live-row").get_by_role("link", name="page 3").click()
    expect(page.locator("#version-5")).to_be_in_viewport()
    assert js_errors == []


def test_the_dashboard_follows_a_running_job_until_it_ends(
    page: Page, live_server, artifacts, js_errors, tabular_project, manager_user
):
    project = project_with_two_versions(tabular_project, manager_user)
    job = ImportJob.objects.create(project=project, filename="april.csv", status="done", features_status="running",
                                   features_total=40, features_done=10, created_by=manager_user)
    url = reverse("project-dashboard", args=[project.pk])
    log_in(page, "manager", url)

    jobs = page.locator("#dashboard-jobs")
    expect(jobs).to_contain_text("Import april.csv · computing features · 25%")
    expect(page.locator("#counts")).to_contain_text("160")
    expect(page.locator("figure.plot svg").first).to_be_visible()
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)

    ImportJob.objects.filter(pk=job.pk).update(features_done=30)
    expect(jobs).to_contain_text("75%")
    expect(jobs.locator("progress")).to_have_attribute("value", "75")
    ImportJob.objects.filter(pk=job.pk).update(features_done=40, features_status="done")
    expect(jobs).to_contain_text("Nothing is running.")
    expect(jobs).to_have_attribute("data-running", "false")
    expect(jobs).not_to_have_attribute("hx-get", url)
    assert js_errors == []
