"""A manager invites an annotator on the Members page in Chromium; the invitee, in a browser of their own, sets a
password through the copied link, lands in the project and opens the labeling page."""
import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from annotations.models import Invitation, Membership, Project
from tests.browser.conftest import DESKTOP
from tests.factories import ItemFactory, LabelFactory, MembershipFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "members-page-checked"
INVITEE_PASSWORD = "heron-lantern-42"
TABLET_PORTRAIT = {"width": 768, "height": 1024}


def _fits(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def _watch(page: Page, problems: list[str]) -> None:
    # A refused form answers 4xx, which Chromium logs as a failed load: that is no fault of the page.
    page.on("console", lambda msg: problems.append(msg.text[:160]) if (
        msg.type == "error" and "Failed to load resource" not in msg.text) or "Content Security Policy" in msg.text
        else None)


def test_an_invited_annotator_sets_a_password_and_labels(browser, page: Page, live_server, js_errors, artifacts):
    manager = UserFactory(username="page-manager", email="manager@example.org", password=PASSWORD)
    project = ProjectFactory(name="Herons", kind=Project.Kind.TEXT)
    for i, name in enumerate(["grey", "white"]):
        LabelFactory(project=project, name=name, shortcut=str(i + 1), order=i)
    for i in range(3):
        ItemFactory(project=project, text=f"a heron {i}")
    MembershipFactory(project=project, user=manager, role=Membership.Role.MANAGER)
    MembershipFactory(project=project, user=UserFactory(username="rita-reviewer", email="rita@example.org"),
                      role=Membership.Role.REVIEWER)
    problems: list[str] = []
    _watch(page, problems)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto("/accounts/login/")
    page.fill("input[name=username]", manager.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)

    page.goto(reverse("project-detail", args=[project.pk]))
    page.click("nav.subnav >> text=Members")
    expect(page.locator("main h1")).to_contain_text("Members")
    expect(page.get_by_text("No pending invitations.")).to_be_visible()
    page.fill("input[name=email]", "ines@example.org")
    page.locator("form:has(input[value=invite]) select[name=role]").select_option("annotator")
    page.click("text=Create invitation link")
    link = page.locator("#invitation-link").input_value()
    assert "/invitations/" in link
    page.click("text=Copy link")
    expect(page.locator("button[data-copy]")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == link
    expect(page.locator("main table").last).to_contain_text("ines@example.org")
    assert _fits(page)
    page.screenshot(path=str(artifacts / "members-page.png"), full_page=True)
    page.set_viewport_size(TABLET_PORTRAIT)
    assert _fits(page)
    page.screenshot(path=str(artifacts / "members-page-tablet.png"), full_page=True)

    invitee_context = browser.new_context(viewport=DESKTOP, base_url=live_server.url)
    invitee_context.set_default_timeout(15_000)
    invitee = invitee_context.new_page()
    invitee.on("pageerror", lambda exc: js_errors.append(str(exc)))
    _watch(invitee, problems)
    try:
        invitee.goto(link)
        expect(invitee.locator("main h1")).to_have_text("Join Herons")
        assert _fits(invitee)
        invitee.screenshot(path=str(artifacts / "invitation-accept.png"), full_page=True)
        invitee.set_viewport_size(TABLET_PORTRAIT)
        assert _fits(invitee)
        invitee.screenshot(path=str(artifacts / "invitation-accept-tablet.png"), full_page=True)
        invitee.fill("input[name=username]", "ines")
        invitee.fill("input[name=password]", "short")
        invitee.fill("input[name=password_again]", "short")
        invitee.click("text=Create account and join")
        expect(invitee.locator("main")).to_contain_text("too short")
        invitee.fill("input[name=password]", INVITEE_PASSWORD)
        invitee.fill("input[name=password_again]", INVITEE_PASSWORD)
        invitee.click("text=Create account and join")
        invitee.wait_for_url(f"**{reverse('project-detail', args=[project.pk])}")
        expect(invitee.locator("main")).to_contain_text("Welcome to Herons. Your role here: annotator.")
        invitee.goto(reverse("label", args=[project.pk]))
        expect(invitee.locator("#label-stage [data-kind=item]")).to_contain_text("a heron")
        # The link is used up: opened again, it says so in words.
        invitee.goto(link)
        expect(invitee.locator("#invitation-problem")).to_contain_text("already been used")
    finally:
        invitee_context.close()

    assert Membership.objects.get(project=project, user__username="ines").role == "annotator"
    assert Invitation.objects.get().accepted_by.username == "ines"
    page.goto(reverse("project-members", args=[project.pk]))
    expect(page.locator("main table").first).to_contain_text("ines@example.org")
    assert problems == [] and js_errors == []
