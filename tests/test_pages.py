"""The login page, the project list, item media and the project page's links reach the right people."""
import pytest
from django.urls import reverse

from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_login_page_renders(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b"Log in" in response.content


def test_project_list_requires_login(client):
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def test_member_sees_own_project_only(client, text_project, tabular_project, annotator):
    client.force_login(annotator)
    body = client.get(reverse("home")).content.decode()
    assert "Sentiment" in body
    assert "Wine" not in body
    assert client.get(reverse("project-detail", args=[tabular_project.pk])).status_code == 404
    assert client.get(reverse("project-detail", args=[text_project.pk])).status_code == 200


def test_project_page_links_reviewers_to_the_dashboard_and_versions(client, text_project, annotator):
    reviewer = UserFactory(username="reviewer")
    MembershipFactory(project=text_project, user=reviewer, role="reviewer")
    client.force_login(reviewer)
    body = client.get(reverse("project-detail", args=[text_project.pk])).content.decode()
    assert reverse("project-dashboard", args=[text_project.pk]) in body
    assert reverse("project-models", args=[text_project.pk]) in body
    client.force_login(annotator)
    body = client.get(reverse("project-detail", args=[text_project.pk])).content.decode()
    assert reverse("project-dashboard", args=[text_project.pk]) not in body


def test_favicon_is_served_and_named_by_every_page(client):
    response = client.get("/favicon.ico", follow=True)
    assert response.status_code == 200
    assert response.redirect_chain and response.redirect_chain[0][1] == 301
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert body[:4] == b"\x00\x00\x01\x00"  # an ICO file
    page = client.get(reverse("login")).content.decode()
    assert '<link rel="icon" href="/static/favicon.ico"' in page


def test_the_admin_names_swap_history_in_english(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    body = client.get(reverse("admin:index")).content.decode()
    assert "Swap history" in body and "Swap historys" not in body
