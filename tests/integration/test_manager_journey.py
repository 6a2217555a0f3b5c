"""A manager runs a project from an empty database in LabelHub's own pages, no Django admin.

They make a text project with three labels, invite an expert, import a CSV; the expert labels 20
items; the manager labels too, finds the items the two of them disagree on, corrects one of the
expert's labels there, and downloads CSV from the export page: the file holds the correction.
The session's real Celery worker (conftest.py here) imports the file, scores the queue and retrains; the
browser fixtures come from tests/browser/conftest.py.
"""
import csv
import io
from urllib.parse import urlsplit

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from annotations.models import Annotation, AnnotationCorrection, Item, Project
from tests.browser import session
from tests.browser.conftest import (  # noqa: F401 (Debian's Chromium and its pages, as fixtures)
    DESKTOP,
    artifacts,
    browser,
    js_errors,
    page,
)
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PASSWORD = "journey-manager-pass"
EXPERT_PASSWORD = "journey-expert-pass-1"
TABLET = {"width": 768, "height": 1024}
ITEMS = 30
LABELED = 20


def _fits(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def _label(page: Page, key: str, count: int, username: str) -> None:
    """Answer ``count`` items with the key, waiting for each next item, then until every answer is stored.

    The page shows the next item while the answer before it is still on its way.
    """
    for _ in range(count):
        stage = page.locator("#label-stage [data-kind=item]")
        expect(stage).to_be_visible()
        lease = stage.get_attribute("data-lease")
        page.keyboard.press(key)
        expect(page.locator(f"#label-stage [data-kind=item][data-lease='{lease}']")).to_have_count(0)
    stored = Annotation.objects.filter(annotator__username=username)
    for _ in range(100):
        if stored.count() >= count:
            break
        page.wait_for_timeout(100)
    assert stored.count() == count


def test_a_manager_sets_up_watches_corrects_and_exports_without_the_admin(
    browser, page: Page, live_server, celery_worker_process, js_errors, artifacts, tmp_path
):
    UserFactory(username="maria", email="maria@example.org", password=PASSWORD, is_staff=True)
    session.log_in(page, "maria", PASSWORD, reverse("home"))

    # A text project with three labels; each expert's item is also shown to a second one.
    page.click("text=New project")
    page.fill("#id_name", "Support tickets")
    page.select_option("#id_kind", "text")
    page.fill("#id_overlap", "2")
    for i, (name, key) in enumerate([("billing", "b"), ("bug", "g"), ("other", "o")]):
        page.fill(f"#id_labels-{i}-name", name)
        page.fill(f"#id_labels-{i}-shortcut", key)
    page.click("text=Create project and import items")
    page.wait_for_url(lambda url: urlsplit(url).path.endswith("/import"))
    project = Project.objects.get(slug="support-tickets")
    assert project.overlap == 2

    # The CSV.
    rows = "\n".join(f"ticket-{i:02d},Ticket {i}: the invoice or the app broke (case {i})" for i in range(ITEMS))
    upload = tmp_path / "tickets.csv"
    upload.write_text("external_id,text\n" + rows + "\n", encoding="utf-8")
    page.set_input_files("input[type=file]", str(upload))
    page.click("main form button[type=submit]")
    expect(page.locator("main")).to_contain_text("Queued 1 file for import.")
    for _ in range(300):  # the worker imports the file; the import page follows the job as htmx polls it
        if Item.objects.filter(project=project).count() == ITEMS:
            break
        page.wait_for_timeout(100)
    assert Item.objects.filter(project=project).count() == ITEMS
    page.reload()
    expect(page.locator("main")).to_contain_text("tickets.csv")

    # The expert's invitation.
    page.goto(reverse("project-members", args=[project.pk]))
    page.fill("input[name=email]", "eva@example.org")
    page.locator("form:has(input[value=invite]) select[name=role]").select_option("annotator")
    page.click("text=Create invitation link")
    link = page.locator("#invitation-link").input_value()

    expert_context = browser.new_context(viewport=DESKTOP, base_url=live_server.url)
    expert_context.set_default_timeout(15_000)
    expert = expert_context.new_page()
    expert.on("pageerror", lambda exc: js_errors.append(str(exc)))
    try:
        expert.goto(link)
        expert.fill("input[name=username]", "eva")
        expert.fill("input[name=password]", EXPERT_PASSWORD)
        expert.fill("input[name=password_again]", EXPERT_PASSWORD)
        expert.click("text=Create account and join")
        expert.wait_for_url(f"**{reverse('project-detail', args=[project.pk])}")
        expert.goto(reverse("label", args=[project.pk]))
        _label(expert, "b", LABELED, "eva")  # the expert calls every ticket billing
    finally:
        expert_context.close()
    assert Annotation.objects.filter(item__project=project, annotator__username="eva").count() == LABELED

    # The manager labels too, and calls every ticket a bug: where both labeled, they disagree.
    page.goto(reverse("label", args=[project.pk]))
    _label(page, "g", LABELED, "maria")
    both = Item.objects.filter(project=project, annotations__annotator__username="eva").filter(
        annotations__annotator__username="maria")
    assert both.exists()

    # The items the two disagree on, then one of them.
    page.goto(reverse("project-items", args=[project.pk]))
    page.select_option("select[name=status]", "disagreement")
    page.click("#items-filters button[type=submit]")
    table_rows = page.locator("#items-table tbody tr")
    expect(table_rows).to_have_count(both.count())
    first = table_rows.first
    item_id = int(first.get_attribute("data-item-id"))
    first.locator("a").first.click()
    page.wait_for_url(lambda url: f"/items/{item_id}" in url)
    eva = Annotation.objects.get(item_id=item_id, annotator__username="eva")
    row = page.locator(f"#annotation-{eva.pk}")
    row.locator("select[name=label_id]").select_option(label="bug")
    row.locator("input[name=note]").fill("a crash, not an invoice")
    row.locator("button[type=submit]").click()
    expect(page.locator(f"#annotation-{eva.pk} .annotation-label")).to_have_text("bug")
    assert AnnotationCorrection.objects.filter(annotation=eva).count() == 1

    # Every label as CSV, from the export page.
    page.goto(reverse("project-export", args=[project.pk]))
    page.check("input[name=format][value=csv]")
    page.check("input[name=mode][value=all]")
    with page.expect_download() as info:
        page.click("#export-download")
    with open(info.value.path(), encoding="utf-8", newline="") as file:
        exported = list(csv.DictReader(io.StringIO(file.read())))
    item = Item.objects.get(pk=item_id)
    labels_of_item = {(r["annotator"], r["label"]) for r in exported if r["external_id"] == item.external_id}
    assert labels_of_item == {("eva", "bug"), ("maria", "bug")}
    assert len(exported) == 2 * LABELED

    page.set_viewport_size(TABLET)
    assert _fits(page)
    assert js_errors == []
