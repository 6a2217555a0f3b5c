"""Every page works under the Content-Security-Policy: Chromium reports no violation and no script error."""
import pytest
from django.urls import reverse
from playwright.sync_api import Page

from annotations.models import Membership, Project
from tests.factories import ItemFactory, LabelFactory, MembershipFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "policy-checked-pages"


@pytest.fixture
def staff_project():
    """A text project with items, and a staff user who manages it."""
    staff = UserFactory(username="root-admin", password=PASSWORD, is_staff=True, is_superuser=True)
    project = ProjectFactory(name="Policies", kind=Project.Kind.TEXT, instructions="Is the clause *risky*?")
    for i, name in enumerate(["safe", "risky"]):
        LabelFactory(project=project, name=name, shortcut=str(i + 1), order=i)
    for i in range(5):
        ItemFactory(project=project, text=f"clause {i} <b>not bold</b>")
    MembershipFactory(project=project, user=staff, role=Membership.Role.MANAGER)
    return project, staff


def pages(project: Project) -> list[tuple[str, str]]:
    """(url, a selector that shows the page has rendered) for each page a person opens."""
    pk = project.pk
    return [
        (reverse("home"), "main"),
        (reverse("project-detail", args=[pk]), "main"),
        (reverse("label", args=[pk]), "#label-stage"),
        (reverse("project-import", args=[pk]), "main form"),
        (reverse("project-models", args=[pk]), "main"),
        (reverse("project-dashboard", args=[pk]), "main"),
        (reverse("model-versions-compare", args=[pk]), "main"),
        (reverse("project-experiments", args=[pk]), "main"),
        (reverse("project-clients", args=[pk]), "main form"),
        (reverse("project-new"), "main form"),
        (reverse("project-settings", args=[pk]), "main form"),
        (reverse("review", args=[pk]), "main"),
        (reverse("agreement", args=[pk]), "main"),
        (reverse("api-token"), "main"),
        (reverse("api-docs"), ".swagger-ui .info"),
        (reverse("admin:index"), "#content"),
        (reverse("admin:annotations_project_changelist"), "#changelist"),
    ]


def test_pages_load_their_scripts_and_styles_within_the_policy(page: Page, live_server, js_errors, staff_project):
    project, staff = staff_project
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(f"{page.url}: {msg.text[:160]}") if "Content Security Policy" in msg.text else None)

    page.goto("/accounts/login/")
    page.fill("input[name=username]", staff.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)

    for url, ready in pages(project):
        response = page.goto(url)
        assert response is not None and response.ok, url
        assert "default-src 'self'" in response.headers.get("content-security-policy", ""), url
        page.wait_for_selector(ready)
        page.wait_for_load_state("networkidle")
    assert violations == []
    assert js_errors == []
