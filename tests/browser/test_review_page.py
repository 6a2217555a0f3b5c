"""A reviewer resolves a disagreement in Chromium with one key press: the final label is stored and the item leaves the queue."""
import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from annotations.models import Annotation, Item, Membership, Project
from tests.browser.test_labeling_page import PASSWORD, log_in, wait_for
from tests.factories import AnnotationFactory, ItemFactory, LabelFactory, MembershipFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REVIEWS = [
    ("The battery died after two days, but support replaced it at once.", "negative", "positive"),
    ("Arrived on time. Does what it says.", "positive", "positive"),
    ("I wanted to love it.", "positive", "negative"),
]


def review_project() -> tuple[Project, dict[str, Item]]:
    """Three product reviews labeled by two experts each: two disagreements, one agreement."""
    project = ProjectFactory(name="Product reviews", kind=Project.Kind.TEXT, overlap=2)
    negative = LabelFactory(project=project, name="negative", shortcut="1", order=0, color="#e15759")
    positive = LabelFactory(project=project, name="positive", shortcut="2", order=1, color="#59a14f")
    labels = {"negative": negative, "positive": positive}
    reviewer = UserFactory(username="dr-reviewer", password=PASSWORD)
    MembershipFactory(project=project, user=reviewer, role=Membership.Role.REVIEWER)
    experts = [UserFactory(username=name) for name in ("ada", "ben")]
    for expert in experts:
        MembershipFactory(project=project, user=expert, role=Membership.Role.ANNOTATOR)
    items = {}
    for i, (text, first, second) in enumerate(REVIEWS):
        item = ItemFactory(project=project, external_id=f"review-{i}", text=text)
        AnnotationFactory(item=item, annotator=experts[0], label=labels[first])
        AnnotationFactory(item=item, annotator=experts[1], label=labels[second])
        items[f"review-{i}"] = item
    # As the queue keeps them once both experts answered (the factories write the labels alone).
    Item.objects.filter(project=project).update(label_count=2, queue_done=True)
    # The model was sure the first one is positive.
    Annotation.objects.filter(item=items["review-0"], annotator=experts[0]).update(
        predicted_label=positive, predicted_confidence=0.93, model_version=4
    )
    return project, items


def test_a_reviewer_resolves_a_disagreement_with_a_key_and_the_item_leaves_the_queue(
    page: Page, live_server, artifacts, js_errors
):
    project, items = review_project()
    first, agreed, last = items["review-0"], items["review-1"], items["review-2"]
    review_url = reverse("review", args=[project.pk])
    log_in(page, "dr-reviewer", review_url)

    rows = page.locator("#review-list li")
    expect(rows).to_have_count(2)
    expect(page.locator(f"#review-row-{agreed.pk}")).to_have_count(0)
    expect(page.locator(f"#review-row-{first.pk}")).to_have_attribute("aria-current", "true")
    panel = page.locator("#review-panel")
    expect(panel.locator("[data-kind=review-item]")).to_have_attribute("data-item-id", str(first.pk))
    expect(panel).to_contain_text("The battery died after two days")
    # Every expert's label and the model's suggestion are on screen.
    expect(panel.locator(".review-annotations tbody tr")).to_have_count(2)
    expect(panel.locator(".review-annotations")).to_contain_text("ada")
    expect(panel.locator(".review-annotations")).to_contain_text("ben")
    expect(panel.locator(".review-suggestion")).to_contain_text("positive")
    expect(panel.locator(".review-suggestion")).to_contain_text("93% confident")
    expect(page.locator(".review-filters [aria-current=page]")).to_contain_text("Needs review 2")
    page.screenshot(path=str(artifacts / "review-queue.png"))

    # Key 2 is "positive": the first item is resolved and the next one shown.
    page.keyboard.press("2")
    wait_for(lambda: Item.objects.get(pk=first.pk).resolved_label_id is not None, "the resolution to be stored")
    resolved = Item.objects.select_related("resolved_label", "resolved_by").get(pk=first.pk)
    assert resolved.resolved_label.name == "positive"
    assert resolved.resolved_by.username == "dr-reviewer"
    expect(page.locator(f"#review-row-{first.pk}")).to_have_count(0)
    expect(rows).to_have_count(1)
    expect(panel.locator("[data-kind=review-item]")).to_have_attribute("data-item-id", str(last.pk))
    expect(page.locator(f"#review-row-{last.pk}")).to_have_attribute("aria-current", "true")
    expect(page.locator("#review-status")).to_have_text(f"Item {first.pk} resolved as “positive”.")
    # The filter tabs count again without a reload.
    expect(page.locator(".review-filters [aria-current=page]")).to_contain_text("Needs review 1")
    expect(page.locator("#review-count-resolved")).to_have_text("1")

    # After a reload the item is still out of the queue, and listed under "Resolved".
    page.goto(review_url)
    expect(page.locator(f"#review-row-{first.pk}")).to_have_count(0)
    page.click(".review-filters a[data-filter=resolved]")
    expect(page.locator(f"#review-row-{first.pk}")).to_contain_text("resolved: positive")
    assert js_errors == []


def test_a_reviewer_corrects_an_experts_label_from_the_item_view(page: Page, live_server, artifacts, js_errors):
    project, items = review_project()
    last = items["review-2"]
    log_in(page, "dr-reviewer", reverse("review", args=[project.pk]))
    page.click(f"#review-row-{last.pk} a")
    panel = page.locator("#review-panel")
    expect(panel.locator("[data-kind=review-item]")).to_have_attribute("data-item-id", str(last.pk))
    # The list marks the row once htmx has settled the new panel (and wired its forms).
    expect(page.locator(f"#review-row-{last.pk}")).to_have_attribute("aria-current", "true")
    ada = Annotation.objects.get(item=last, annotator__username="ada")
    row = panel.locator(f"#annotation-{ada.pk}")
    row.locator("select").select_option(label="negative")
    row.locator("input[name=note]").fill("irony")
    row.locator("button").click()
    expect(panel.locator(f"#annotation-{ada.pk} .correction")).to_contain_text("was positive → negative by dr-reviewer")
    ada.refresh_from_db()
    assert ada.label.name == "negative" and ada.corrections.get().note == "irony"
    # The experts agree now; a label key in the note field types text instead of resolving.
    row = panel.locator(f"#annotation-{ada.pk}")
    row.locator("input[name=note]").press("2")
    assert Item.objects.get(pk=last.pk).resolved_label_id is None
    assert js_errors == []
