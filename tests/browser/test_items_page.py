"""In Chromium: a reviewer filters the items browser to disagreements and corrects an item; an expert changes an
older label of their own from My labels."""
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from annotations.models import Annotation, AnnotationCorrection
from tests.browser.test_labeling_page import PASSWORD, log_in
from tests.browser.test_review_page import review_project

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TABLET_PORTRAIT = {"width": 768, "height": 1024}


def no_horizontal_overflow(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def test_a_reviewer_filters_to_disagreements_opens_an_item_and_corrects_it(page: Page, artifacts, js_errors):
    project, items = review_project()
    first, agreed = items["review-0"], items["review-1"]
    log_in(page, "dr-reviewer", reverse("project-items", args=[project.pk]))
    expect(page.locator("#items-table tbody tr")).to_have_count(3)

    page.select_option("select[name=status]", "disagreement")
    page.click("#items-filters button[type=submit]")
    page.wait_for_url(lambda url: "status=disagreement" in url)
    rows = page.locator("#items-table tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator(f"#items-table tr[data-item-id='{agreed.pk}']")).to_have_count(0)
    expect(page.locator("#items-count")).to_contain_text("2 items match")
    assert no_horizontal_overflow(page)
    page.screenshot(path=str(artifacts / "items-page.png"))
    page.set_viewport_size(TABLET_PORTRAIT)
    assert no_horizontal_overflow(page)
    page.screenshot(path=str(artifacts / "items-page-tablet.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 720})

    page.click(f"#items-table tr[data-item-id='{first.pk}'] a")
    page.wait_for_url(lambda url: f"/items/{first.pk}" in url)
    expect(page.locator(".item-page")).to_contain_text("The battery died after two days")
    ben = Annotation.objects.get(item=first, annotator__username="ben")
    row = page.locator(f"#annotation-{ben.pk}")
    expect(row.locator(".annotation-label")).to_have_text("positive")
    row.locator("select[name=label_id]").select_option(label="negative")
    row.locator("input[name=note]").fill("support replaced it: still negative")
    row.locator("button[type=submit]").click()

    row = page.locator(f"#annotation-{ben.pk}")
    expect(row.locator(".annotation-label")).to_have_text("negative")
    expect(row.locator(".correction")).to_contain_text("was positive → negative by dr-reviewer")
    expect(page.locator(".messages")).to_contain_text("the correction is recorded")
    assert AnnotationCorrection.objects.filter(annotation=ben).count() == 1
    assert no_horizontal_overflow(page)
    page.screenshot(path=str(artifacts / "item-page.png"))
    page.set_viewport_size(TABLET_PORTRAIT)
    assert no_horizontal_overflow(page)
    page.screenshot(path=str(artifacts / "item-page-tablet.png"), full_page=True)

    # Back to the list: the item no longer counts as a disagreement.
    page.click("text=← Back to the items")
    page.wait_for_url(lambda url: "status=disagreement" in url)
    expect(page.locator(f"#items-table tr[data-item-id='{first.pk}']")).to_have_count(0)
    assert js_errors == []


def test_an_expert_changes_an_older_label_from_my_labels(page: Page, artifacts, js_errors):
    """Not only the last label: from the labeling page to My labels, the oldest label changed, recorded as theirs."""
    project, items = review_project()
    ada = get_user_model().objects.get(username="ada")
    ada.set_password(PASSWORD)
    ada.save(update_fields=["password"])
    oldest = Annotation.objects.get(item=items["review-0"], annotator=ada)
    Annotation.objects.filter(pk=oldest.pk).update(created_at=timezone.now() - timedelta(days=3))
    log_in(page, "ada", reverse("label", args=[project.pk]))
    page.click("a:has-text('My labels')")
    page.wait_for_url(lambda url: url.endswith(reverse("my-labels", args=[project.pk])))
    rows = page.locator("#my-labels tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.last).to_have_attribute("id", f"my-label-{oldest.pk}")  # newest first: the oldest is last

    row = page.locator(f"#my-label-{oldest.pk}")
    expect(row.locator(".annotation-label")).to_have_text("negative")
    row.locator("select[name=label_id]").select_option(label="positive")
    row.locator("button[type=submit]").click()
    expect(page.locator(".messages")).to_contain_text("Your label of item review-0 is now 'positive'")
    row = page.locator(f"#my-label-{oldest.pk}")
    expect(row.locator(".annotation-label")).to_have_text("positive")
    expect(row.locator(".correction")).to_contain_text("was negative → positive")
    oldest.refresh_from_db()
    assert oldest.label.name == "positive"
    correction = AnnotationCorrection.objects.get(annotation=oldest)
    assert (correction.corrected_by, correction.previous_label.name) == (ada, "negative")
    assert no_horizontal_overflow(page)
    page.screenshot(path=str(artifacts / "my-labels.png"), full_page=True)
    page.set_viewport_size(TABLET_PORTRAIT)
    assert no_horizontal_overflow(page)
    page.screenshot(path=str(artifacts / "my-labels-tablet.png"), full_page=True)
    assert js_errors == []
