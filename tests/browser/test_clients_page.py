"""A manager makes an API client on its page in Chromium; the token shown once works, and a bad name never leaves."""
import json
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import Page, expect

from annotations.models import Membership, Project
from tests.factories import LabelFactory, MembershipFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "clients-page-checked"


def _predict(live_server, project_id: int, token: str) -> int:
    request = urllib.request.Request(
        f"{live_server.url}/api/projects/{project_id}/predict", data=json.dumps({"values": [1.0]}).encode(),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"}, method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_manager_creates_a_client_and_its_token_works(page: Page, live_server, js_errors):
    manager = UserFactory(username="page-manager", password=PASSWORD)
    project = ProjectFactory(name="Shop", slug="shop", kind=Project.Kind.TABULAR, feature_names=["x"])
    LabelFactory(project=project, name="yes", order=0)
    MembershipFactory(project=project, user=manager, role=Membership.Role.MANAGER)
    console: list[str] = []
    # The name field's pattern must compile in the browser (an invalid one is only a console warning).
    page.on("console", lambda msg: console.append(msg.text)
            if msg.type in ("error", "warning") and "Failed to load resource" not in msg.text else None)
    page.goto("/accounts/login/")
    page.fill("input[name=username]", manager.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)

    page.goto(f"/projects/{project.pk}/clients/")
    expect(page.get_by_text("No API clients yet.")).to_be_visible()
    # A name the account could not take is stopped by the form itself.
    page.fill("input[name=name]", "bad name")
    page.click("text=Create and show its token")
    assert page.url.endswith(f"/projects/{project.pk}/clients/")
    assert not Membership.objects.filter(project=project, role="client").exists()

    page.fill("input[name=name]", "web-shop")
    page.click("text=Create and show its token")
    token = page.locator("#api-client-token").inner_text().strip()
    expect(page.get_by_text("web-shop@shop")).to_have_count(2)  # the notice and the list
    # The token authenticates; no model is live yet, so the answer is a 409, not a 401.
    assert _predict(live_server, project.pk, token) == 409
    page.click("text=New token")
    renewed = page.locator("#api-client-token").inner_text().strip()
    assert renewed != token and _predict(live_server, project.pk, token) == 401
    page.click("button:has-text('Remove')")
    expect(page.get_by_text("is removed")).to_be_visible()
    assert _predict(live_server, project.pk, renewed) == 401
    assert console == [] and js_errors == []
