"""A staff user makes a text project with three labels in Chromium, lands on its import page, then sets it up."""
from urllib.parse import urlsplit

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from annotations.models import Project
from tests.browser import session
from tests.browser.conftest import DESKTOP
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "project-setup-checked"
TABLET = {"width": 768, "height": 1024}


def _no_horizontal_overflow(page: Page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def _screenshots(page: Page, artifacts, name: str) -> None:
    for size, suffix in ((DESKTOP, "desktop"), (TABLET, "tablet")):
        page.set_viewport_size(size)
        _no_horizontal_overflow(page)
        page.screenshot(path=str(artifacts / f"{name}-{suffix}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def test_staff_create_a_text_project_then_change_its_settings(page: Page, live_server, js_errors, artifacts):
    UserFactory(username="page-staff", password=PASSWORD, is_staff=True)
    session.log_in(page, "page-staff", PASSWORD, reverse("home"))

    page.click("text=New project")
    page.fill("#id_name", "Product reviews")
    page.select_option("#id_kind", "text")
    page.fill("#id_instructions", "Is the review positive, negative or neutral?")
    page.click("#label-row-add")  # a fourth row, in a colour no other row has
    colors = page.eval_on_selector_all("#label-rows input[type=color]", "inputs => inputs.map(i => i.value)")
    assert len(colors) == 4 and len(set(colors)) == 4
    for i, (name, key) in enumerate([("positive", "p"), ("negative", "n"), ("neutral", "u")]):
        page.fill(f"#id_labels-{i}-name", name)
        page.fill(f"#id_labels-{i}-shortcut", key)
    _screenshots(page, artifacts, "project-new")
    page.click("text=Create project and import items")

    page.wait_for_url(lambda url: urlsplit(url).path.endswith("/import"))
    project = Project.objects.get()
    assert urlsplit(page.url).path == reverse("project-import", args=[project.pk])
    assert (project.slug, project.kind) == ("product-reviews", "text")
    assert list(project.labels.order_by("order").values_list("name", "shortcut")) == [
        ("positive", "p"), ("negative", "n"), ("neutral", "u")]
    expect(page.get_by_text("Project “Product reviews” is ready")).to_be_visible()

    page.goto(reverse("project-settings", args=[project.pk]))
    page.fill("#id_audit_share", "1.5")
    page.click("text=Save settings")
    expect(page.locator("#id_audit_share_error")).to_have_text(
        "Audit share: Ensure this value is less than or equal to 1.0.")
    project.refresh_from_db()
    assert project.audit_share == 0.1
    page.fill("#id_audit_share", "0.3")
    page.click("text=Save settings")
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    project.refresh_from_db()
    assert project.audit_share == 0.3
    _screenshots(page, artifacts, "project-settings")
    assert js_errors == []
