"""An expert sees the metadata the project chose, zooms into a scan and skips one with a reason, in Chromium."""
import time

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from annotations.models import Item, Lease
from tests.browser.test_labeling_page import STAGE_ITEM, digits_project, log_in, shown_item, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PORTRAIT_TABLET = {"width": 768, "height": 1024}


def test_metadata_zoom_and_a_skip_with_a_reason(page, live_server, artifacts, js_errors):
    project, _truth = digits_project(items=6)
    project.shown_metadata_fields = ["scanner", "batch", "notes"]
    project.save()
    for n, item in enumerate(Item.objects.filter(project=project).order_by("pk")):
        item.metadata = {
            "scanner": f"<b>Scanner {n}</b>", "batch": 7, "patient_name": "Ada Secret",
            "notes": "Ink smudged at the top left corner; the writer crossed out a first attempt. " * 4,
        }
        item.save(update_fields=["metadata"])
    log_in(page, "dr-lee", reverse("label", args=[project.pk]))
    expect(page.locator(STAGE_ITEM)).to_be_visible()

    details = page.locator(f"{STAGE_ITEM} .label-metadata")
    expect(details.locator("dt")).to_have_text(["scanner", "batch", "notes"])
    item_no = Item.objects.filter(project=project).order_by("pk").values_list("pk", flat=True)
    expect(details.locator("dd").first).to_have_text(f"<b>Scanner {list(item_no).index(shown_item(page))}</b>")
    assert "Ada Secret" not in page.content()
    notes = details.locator("details")
    expect(notes.locator("summary")).to_contain_text("…")
    notes.locator("summary").click()
    expect(notes.locator(".label-metadata-full")).to_contain_text("crossed out a first attempt. Ink smudged")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.evaluate("document.documentElement.scrollHeight <= window.innerHeight")
    page.screenshot(path=str(artifacts / "labeling-metadata.png"))

    # Zoom: a click zooms in where it points, + and − step, a click on a zoomed scan fits it again.
    frame = page.locator(f"{STAGE_ITEM} .label-zoom")
    image = frame.locator("img")
    fitted = """el => { const img = el.querySelector('img');
        return img.naturalWidth * Math.min(el.clientWidth / img.naturalWidth, el.clientHeight / img.naturalHeight); }"""
    fit_width = page.evaluate(fitted, frame.element_handle())  # the drawn scan, inside the box object-fit leaves
    box_width = image.bounding_box()["width"]
    frame.click()
    expect(frame).to_have_attribute("data-zoom", "2")
    expect(page.locator(f"{STAGE_ITEM} .label-zoom-state")).to_have_text("Zoom 2× · click to fit")
    assert image.bounding_box()["width"] == pytest.approx(2 * fit_width, abs=1)
    assert page.evaluate("el => el.scrollHeight > el.clientHeight", frame.element_handle())  # it pans
    page.keyboard.press("+")
    expect(frame).to_have_attribute("data-zoom", "4")
    page.keyboard.press("-")
    expect(frame).to_have_attribute("data-zoom", "2")
    # Dragging pans instead of zooming out.
    box = frame.bounding_box()
    before = page.evaluate("el => [el.scrollLeft, el.scrollTop]", frame.element_handle())
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 80, box["y"] + box["height"] / 2 + 60, steps=5)
    page.mouse.up()
    expect(frame).to_have_attribute("data-zoom", "2")
    assert page.evaluate("el => [el.scrollLeft, el.scrollTop]", frame.element_handle()) != before
    frame.click()
    expect(frame).to_have_attribute("data-zoom", "1")
    assert abs(image.bounding_box()["width"] - box_width) < 1
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    # A skip with a reason; the label keys and the skip key still work afterwards.
    reasoned = shown_item(page)
    page.click("button[data-action=skip-reason]")
    expect(page.locator("#label-skip-reason")).to_be_focused()
    page.keyboard.type("Two digits 3 and 5 in one scan")  # the digit keys type here, they label nothing
    page.keyboard.press("Enter")
    expect(page.locator("#label-skip-form")).to_be_hidden()
    expect(page.locator("#label-status")).to_have_text(f"Skipped item {reasoned}")
    lease = Lease.objects.get(item_id=reasoned, user__username="dr-lee")
    assert lease.status == Lease.Status.SKIPPED and lease.skip_reason == "Two digits 3 and 5 in one scan"
    assert not project.items.get(pk=reasoned).annotations.exists()

    plain = shown_item(page)
    page.keyboard.press("s")
    expect(page.locator("#label-status")).to_have_text(f"Skipped item {plain}")
    wait_for(lambda: Lease.objects.filter(item_id=plain, status=Lease.Status.SKIPPED).exists(), "the keyboard skip")
    assert Lease.objects.get(item_id=plain, user__username="dr-lee").skip_reason == ""

    page.set_viewport_size(PORTRAIT_TABLET)
    page.evaluate("window.scrollTo(0, 0)")
    time.sleep(0.2)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    expect(page.locator(f"{STAGE_ITEM} .label-metadata")).to_be_visible()
    page.screenshot(path=str(artifacts / "labeling-metadata-tablet.png"), full_page=True)
    assert js_errors == []
