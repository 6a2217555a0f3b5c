"""An expert labels digits in Chromium with the keyboard: prefetch, undo, progress, all done, leases given back."""
import io
import random
import re
import time
import zipfile
from collections.abc import Callable
from datetime import timedelta

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from PIL import Image
from playwright.sync_api import Page, expect
from sklearn.datasets import load_digits

from annotations.models import Annotation, Item, Lease, Membership, Project, QueueScoring
from annotations.imports.services import import_jobs_submit
from annotations.services import lease_release, queue_next
from tests.browser import session
from tests.browser.conftest import TABLET
from tests.factories import LabelFactory, MembershipFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

User = get_user_model()
PASSWORD = "digits-and-more-digits"
COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
STAGE_ITEM = "#label-stage [data-kind=item]"
SHELF_ITEM = "#label-shelf [data-kind=item]"


def digits_zip(count: int) -> tuple[bytes, dict[str, int]]:
    """The first ``count`` scikit-learn digits as 8×8 PNGs (dark ink on white) in a ZIP, and each file's digit."""
    digits = load_digits()
    buffer, truth = io.BytesIO(), {}
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(count):
            pixels = (255 - digits.images[i] * (255 / 16)).round().astype(np.uint8)
            png = io.BytesIO()
            Image.fromarray(pixels, mode="L").save(png, format="PNG")
            name = f"scan-{i:03d}.png"  # the file name must not give the answer away
            archive.writestr(name, png.getvalue())
            truth[name] = int(digits.target[i])
    return buffer.getvalue(), truth


def digits_project(*, items: int, expert_name: str = "dr-lee") -> tuple[Project, dict[int, int]]:
    """An image project of digits with labels 0–9 on keys 0–9, an expert member, and each item's digit."""
    expert = UserFactory(username=expert_name, password=PASSWORD)
    manager = UserFactory(username="manager", password=PASSWORD)
    project = ProjectFactory(
        name="Handwritten digits",
        kind=Project.Kind.IMAGE,
        instructions=(
            "Label each scan with the digit it shows.\n\n"
            "If a scan is ambiguous or unreadable, skip it rather than guess."
        ),
    )
    for d in range(10):
        LabelFactory(project=project, name=str(d), shortcut=str(d), order=d, color=COLORS[d])
    MembershipFactory(project=project, user=expert, role=Membership.Role.ANNOTATOR)
    MembershipFactory(project=project, user=manager, role=Membership.Role.MANAGER)
    data, truth = digits_zip(items)
    (job,) = import_jobs_submit(project=project, user=manager, uploads=[("digits.zip", io.BytesIO(data))], wait=True)
    assert job.created_count == items, job.errors
    by_item = {pk: truth[external_id] for pk, external_id in Item.objects.filter(project=project).values_list(
        "pk", "external_id"
    )}
    return project, by_item


def score_pool(project: Project, truth: dict[int, int]) -> None:
    """A complete scoring by model v1, as the learner writes it: most suggestions right, a few wrong."""
    rng = random.Random(7)
    scoring = QueueScoring.objects.create(
        project=project, model_version=1, strategy=Project.Strategy.MARGIN, status=QueueScoring.Status.COMPLETE,
        finished_at=timezone.now() - timedelta(minutes=3),
    )
    labels = {int(label.name): label for label in project.labels.all()}
    for item_id, digit in truth.items():
        guess = digit if rng.random() < 0.8 else (digit + 3) % 10
        scoring.scores.create(
            item_id=item_id, priority=rng.random(), predicted_label=labels[guess], confidence=rng.uniform(0.45, 0.97)
        )


def log_in(page: Page, username: str, next_url: str) -> None:
    session.log_in(page, username, PASSWORD, next_url)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def shown_item(page: Page) -> int:
    return int(page.locator(STAGE_ITEM).get_attribute("data-item-id"))


def wait_for_prefetch(page: Page) -> int:
    """Wait until the next item and its image are ready in the hidden shelf; return its item id."""
    page.wait_for_function(
        """sel => { const el = document.querySelector(sel); const img = el && el.querySelector('img');
                    return img && img.complete && img.naturalWidth > 0; }""",
        arg=SHELF_ITEM,
    )
    return int(page.locator(SHELF_ITEM).first.get_attribute("data-item-id"))


def test_an_expert_labels_five_digits_with_the_keyboard_undoes_one_and_the_labels_are_stored(
    page: Page, live_server, artifacts, js_errors
):
    project, truth = digits_project(items=12)
    score_pool(project, truth)
    Project.objects.filter(pk=project.pk).update(audit_share=0.0)  # no audit draw, so every suggestion is shown
    label_url = reverse("label", args=[project.pk])

    log_in(page, "dr-lee", label_url)

    progress = page.locator("#label-progress")
    expect(page.locator(STAGE_ITEM)).to_be_visible()
    expect(progress).to_have_attribute("data-labeled", "0")
    expect(progress.locator(".label-progress-count")).to_have_text("0 of 12 items labeled")
    expect(progress).to_contain_text("Queue ranked by model v1 (margin) · scored 3")
    expect(page.locator("#label-stage .label-suggestion")).to_contain_text("Model suggests")
    # Every key is shown on its button.
    for d in range(10):
        expect(page.locator(f".label-button[data-key='{d}'] kbd")).to_have_text(str(d))

    # The 8×8 scan is drawn large and with sharp pixels.
    image = page.locator("#label-stage img.label-image")
    assert image.evaluate("img => img.naturalWidth") == 8
    box = image.bounding_box()
    assert min(box["width"], box["height"]) >= 300
    assert image.evaluate("img => getComputedStyle(img).imageRendering") == "pixelated"

    # At 1280×720 the item and every action are on screen without scrolling.
    assert page.evaluate("document.documentElement.scrollHeight <= window.innerHeight")
    for control in page.locator(".label-button, [data-action=skip], [data-action=undo]").all():
        b = control.bounding_box()
        assert b["y"] >= 0 and b["y"] + b["height"] <= 720 and b["x"] + b["width"] <= 1280

    pressed: dict[int, int] = {}
    for n in range(5):
        current = shown_item(page)
        prefetched = wait_for_prefetch(page)
        assert prefetched != current
        digit = truth[current]
        page.keyboard.press(str(digit))
        pressed[current] = digit
        # The prefetched item is swapped in by the key press itself, not after a request.
        assert shown_item(page) == prefetched
        expect(progress).to_have_attribute("data-labeled", str(n + 1))

    expect(progress.locator(".label-progress-count")).to_have_text("5 of 12 items labeled")
    expect(progress.locator("progress")).to_have_attribute("value", "5")
    expect(progress).to_have_attribute("data-mine-today", "5")
    last_item = list(pressed)[-1]
    expect(page.locator("#label-status")).to_have_text(f"Saved “{pressed[last_item]}” for item {last_item}")
    wait_for_prefetch(page)
    page.screenshot(path=str(artifacts / "labeling-page.png"))

    before_undo = shown_item(page)
    page.keyboard.press("Backspace")

    expect(page.locator(STAGE_ITEM)).to_have_attribute("data-item-id", str(last_item))
    expect(progress).to_have_attribute("data-labeled", "4")
    expect(progress.locator(".label-progress-count")).to_have_text("4 of 12 items labeled")
    # The item that was on screen waits in the shelf, ahead of the one prefetched behind it.
    expect(page.locator(SHELF_ITEM).first).to_have_attribute("data-item-id", str(before_undo))
    assert "audit" not in page.content().lower()

    del pressed[last_item]
    stored = Annotation.objects.filter(item__project=project).select_related("label", "annotator")
    assert len(stored) == 4
    assert {a.item_id: int(a.label.name) for a in stored} == pressed
    assert {a.annotator.username for a in stored} == {"dr-lee"}
    assert all(a.source == Annotation.Source.QUEUE and a.time_spent_ms > 0 for a in stored)
    assert not Annotation.objects.filter(item_id=last_item).exists()
    assert Lease.objects.filter(item_id=last_item, status=Lease.Status.ACTIVE, user__username="dr-lee").exists()

    # The first press after the undo labels the undone item again.
    page.keyboard.press(str(truth[last_item]))
    expect(progress).to_have_attribute("data-labeled", "5")
    assert shown_item(page) == before_undo
    assert Annotation.objects.get(item_id=last_item).label.name == str(truth[last_item])

    # Tablet width: the sidebar stacks under the item and the buttons stay usable.
    page.set_viewport_size(TABLET)
    page.evaluate("window.scrollTo(0, 0)")
    stage = page.locator("#label-stage").bounding_box()
    side = page.locator(".labeling-side").bounding_box()
    assert side["y"] >= stage["y"] + stage["height"]
    assert stage["width"] >= 700
    for control in page.locator(".label-button").all():
        b = control.bounding_box()
        assert b["height"] >= 44 and b["x"] + b["width"] <= TABLET["width"]
    page.screenshot(path=str(artifacts / "labeling-page-tablet.png"), full_page=True)
    assert js_errors == []


def stage_look(page: Page) -> dict:
    """What the item on stage looks like, ids left out: its text, elements, attribute names and size."""
    look = page.locator(STAGE_ITEM).evaluate(
        """el => ({
            text: el.innerText,
            elements: [el, ...el.querySelectorAll("*")].map(e => e.tagName + "." + [...e.classList].sort().join(".")),
            attributes: [el, ...el.querySelectorAll("*")].map(e => e.getAttributeNames().sort().join(" ")),
            size: [el.getBoundingClientRect().width, el.getBoundingClientRect().height],
        })"""
    )
    look["text"] = re.sub(r"\d+", "N", look["text"])
    return look


def test_an_audit_item_shows_no_suggestion_and_looks_like_an_ordinary_item_whose_suggestion_is_withheld(
    page: Page, live_server, artifacts, js_errors
):
    project, truth = digits_project(items=12)
    score_pool(project, truth)
    expert = User.objects.get(username="dr-lee")
    project.audit_share = 1.0
    audit = queue_next(project=project, user=expert)
    # An ordinary item whose suggestion is withheld (w = 0.43 at an audit share of 0.3), held next.
    project.audit_share = 0.3
    Project.objects.filter(pk=project.pk).update(audit_share=0.3)
    random.seed(4)
    for _ in range(50):
        ordinary = queue_next(project=project, user=expert, exclude=[audit.pk])
        if not ordinary.is_audit and ordinary.suggestion_withheld:
            break
        lease_release(lease_id=ordinary.pk, user=expert)
    assert (audit.is_audit, audit.suggestion_withheld, ordinary.is_audit, ordinary.suggestion_withheld) == (
        True, True, False, True
    )
    assert audit.predicted_label_id is not None and ordinary.predicted_label_id is not None

    log_in(page, "dr-lee", reverse("label", args=[project.pk]))

    expect(page.locator(STAGE_ITEM)).to_have_attribute("data-item-id", str(audit.item_id))
    assert wait_for_prefetch(page) == ordinary.item_id
    expect(page.locator("#label-stage .label-suggestion")).to_have_count(0)
    expect(page.locator("#label-stage")).not_to_contain_text("suggests")
    expect(page.locator(".label-button.suggested")).to_have_count(0)  # no button picked out either
    audit_look = stage_look(page)
    page.screenshot(path=str(artifacts / "labeling-audit-item.png"))

    page.keyboard.press(str(truth[audit.item_id]))

    expect(page.locator(STAGE_ITEM)).to_have_attribute("data-item-id", str(ordinary.item_id))
    expect(page.locator("#label-stage .label-suggestion")).to_have_count(0)
    expect(page.locator(".label-button.suggested")).to_have_count(0)
    assert stage_look(page) == audit_look
    expect(page.locator(".label-button.pressed")).to_have_count(0)  # the key's flash is over
    page.screenshot(path=str(artifacts / "labeling-withheld-item.png"))
    assert "audit" not in page.content().lower()
    assert js_errors == []


def test_the_last_item_leads_to_all_done(page: Page, live_server, artifacts, js_errors):
    project, truth = digits_project(items=2)
    log_in(page, "dr-lee", reverse("label", args=[project.pk]))

    first = shown_item(page)
    wait_for_prefetch(page)
    # What a busy server may do by itself: the request for the item behind the last one is answered
    # before the label is stored (an all-done message counting no label today), and that answer
    # arrives only after the expert has moved on.
    held: dict = {"submits": []}

    def submit_held(route) -> None:
        held["submits"].append(route)

    page.route(lambda url: url.endswith("/submit"), submit_held)

    def next_answered_early(route) -> None:
        if "next" in held or not held["submits"]:
            route.continue_()
            return
        held["next"] = (route, route.fetch())
        for submit in held["submits"]:
            submit.continue_()

    page.route(lambda url: url.endswith("/label/next"), next_answered_early)
    page.keyboard.press(str(truth[first]))
    second = shown_item(page)
    expect(page.locator("#label-progress")).to_have_attribute("data-labeled", "1")
    page.keyboard.press("s")  # skip the last one
    route, early = held["next"]
    route.fulfill(response=early)

    expect(page.locator("#label-stage .label-done")).to_contain_text("All done")
    expect(page.locator("#label-stage .label-done")).to_contain_text("You labeled 1 item today")
    expect(page.locator("#label-stage .label-done-count")).to_have_text(
        page.locator("#label-progress").get_attribute("data-mine-today"))
    expect(page.locator(".label-button").first).to_be_disabled()
    wait_for(lambda: Lease.objects.get(item_id=second, status__in=["skipped", "active"]).status == "skipped",
             "the skip to be stored")
    assert Annotation.objects.get().item_id == first
    page.screenshot(path=str(artifacts / "labeling-all-done.png"))
    assert js_errors == []


def test_leaving_the_page_gives_the_held_items_back(page: Page, live_server, js_errors):
    project, _ = digits_project(items=5)
    log_in(page, "dr-lee", reverse("label", args=[project.pk]))
    wait_for_prefetch(page)
    held = set(Lease.objects.filter(status=Lease.Status.ACTIVE).values_list("pk", flat=True))
    assert len(held) == 2

    page.click("a:has-text('Project overview')")
    page.wait_for_url(f"**{reverse('project-detail', args=[project.pk])}")

    wait_for(
        lambda: set(Lease.objects.filter(pk__in=held, status=Lease.Status.RELEASED).values_list("pk", flat=True))
        == held,
        "the page's beacons to release both leases",
    )
    assert js_errors == []


def test_a_label_that_does_not_reach_the_server_is_put_back_with_a_readable_error(
    page: Page, live_server, artifacts, js_errors
):
    project, truth = digits_project(items=4)
    log_in(page, "dr-lee", reverse("label", args=[project.pk]))
    first = shown_item(page)
    prefetched = wait_for_prefetch(page)

    page.route("**/submit", lambda route: route.abort("connectionfailed"))
    page.keyboard.press(str(truth[first]))

    toast = page.locator("#label-toast")
    expect(toast).to_be_visible()
    expect(toast).to_contain_text(f"Item {first} was not saved: The server could not be reached.")
    expect(page.locator(STAGE_ITEM)).to_have_attribute("data-item-id", str(first))
    # The item that had replaced it waits next in line again.
    expect(page.locator(SHELF_ITEM).first).to_have_attribute("data-item-id", str(prefetched))
    page.screenshot(path=str(artifacts / "labeling-error.png"))
    assert not Annotation.objects.exists()

    page.unroute("**/submit")
    page.keyboard.press(str(truth[first]))
    expect(page.locator("#label-progress")).to_have_attribute("data-labeled", "1")
    assert shown_item(page) == prefetched
    assert Annotation.objects.get().item_id == first
    assert js_errors == []


def test_a_label_on_an_item_given_back_meanwhile_is_refused_and_the_page_moves_on(
    page: Page, live_server, js_errors
):
    project, truth = digits_project(items=4)
    log_in(page, "dr-lee", reverse("label", args=[project.pk]))
    first = shown_item(page)
    prefetched = wait_for_prefetch(page)
    Lease.objects.filter(item_id=first, status=Lease.Status.ACTIVE).update(status=Lease.Status.RELEASED)

    page.keyboard.press(str(truth[first]))

    expect(page.locator("#label-toast")).to_contain_text(
        f"Item {first} was not saved: This item was given back; ask for the next one."
    )
    assert shown_item(page) == prefetched
    assert not Annotation.objects.exists()
    expect(page.locator("#label-progress")).to_have_attribute("data-labeled", "0")
    assert js_errors == []


def test_held_leases_are_renewed_while_the_page_is_open_and_buttons_work_by_touch(
    page: Page, live_server, js_errors
):
    project, truth = digits_project(items=4)
    Project.objects.filter(pk=project.pk).update(lease_ttl_seconds=10)  # a heartbeat every 3⅓ s
    log_in(page, "dr-lee", reverse("label", args=[project.pk]))
    wait_for_prefetch(page)
    first_expiry = dict(Lease.objects.filter(status=Lease.Status.ACTIVE).values_list("pk", "expires_at"))
    assert len(first_expiry) == 2

    wait_for(
        lambda: all(
            Lease.objects.get(pk=pk).expires_at > expiry + timedelta(seconds=2) for pk, expiry in first_expiry.items()
        ),
        "the heartbeat to renew both leases",
    )

    current = shown_item(page)
    page.locator(f".label-button[data-key='{truth[current]}']").click()
    expect(page.locator("#label-progress")).to_have_attribute("data-labeled", "1")
    page.keyboard.press("Control+z")
    expect(page.locator("#label-progress")).to_have_attribute("data-labeled", "0")
    expect(page.locator(STAGE_ITEM)).to_have_attribute("data-item-id", str(current))
    assert not Annotation.objects.exists()
    assert js_errors == []
