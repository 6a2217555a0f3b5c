"""The Members page and the invitation page: who reaches them, what each action answers, hostile input refused."""
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from annotations import services
from annotations.models import Invitation, Membership
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

STRONG = "tall-river-quiet-7"


@pytest.fixture
def project():
    return ProjectFactory(name="Birds")


@pytest.fixture
def boss(project):
    user = UserFactory(username="boss", email="boss@example.org")
    MembershipFactory(project=project, user=user, role="manager")
    return user


def _url(project):
    return reverse("project-members", args=[project.pk])


@pytest.mark.parametrize("role", ["annotator", "reviewer"])
def test_only_managers_reach_the_page_others_get_what_other_manager_pages_give(client, project, boss, role):
    member = UserFactory(username=f"a-{role}")
    MembershipFactory(project=project, user=member, role=role)
    client.force_login(member)
    for method in ("get", "post"):
        members = getattr(client, method)(_url(project))
        clients = getattr(client, method)(reverse("project-clients", args=[project.pk]))
        assert members.status_code == clients.status_code == 404
    client.force_login(boss)
    body = client.get(_url(project)).content.decode()
    assert "boss@example.org" in body and _url(project) in body  # the sub-navigation links here
    detail = client.get(reverse("project-detail", args=[project.pk])).content.decode()
    assert _url(project) in detail
    client.force_login(member)
    assert _url(project) not in client.get(reverse("project-detail", args=[project.pk])).content.decode()


def test_a_manager_adds_an_account_and_hears_of_a_missing_one(client, project, boss):
    UserFactory(username="ann", email="ann@example.org")
    client.force_login(boss)
    response = client.post(_url(project), {"action": "add", "user": "ann@example.org", "role": "reviewer"}, follow=True)
    assert "ann is added as reviewer." in response.content.decode()
    assert Membership.objects.get(project=project, user__username="ann").role == "reviewer"
    response = client.post(_url(project), {"action": "add", "user": "ghost", "role": "annotator"})
    assert response.status_code == 404 and "No account has the username or email" in response.content.decode()
    assert 'value="ghost"' in response.content.decode()  # what was typed stays in the form
    response = client.post(_url(project), {"action": "add", "user": "ann", "role": "annotator"})
    assert response.status_code == 409 and "already a member" in response.content.decode()


def test_hostile_input_gets_a_message_not_a_500(client, project, boss):
    other = MembershipFactory(project=ProjectFactory(), user=UserFactory(username="far"), role="annotator")
    own = Membership.objects.get(user=boss)
    client.force_login(boss)
    cases = [({"action": "remove", "membership_id": other.pk}, 404, "Member not found"),
             ({"action": "role", "membership_id": "abc", "role": "manager"}, 404, "Member not found"),
             ({"action": "role", "membership_id": str(2**70), "role": "manager"}, 404, "Member not found"),
             ({"action": "role", "membership_id": own.pk, "role": "admin"}, 400, "Choose a role"),
             ({"action": "revoke", "invitation_id": "1e9"}, 404, "Invitation not found"),
             ({"action": "explode"}, 400, "Unknown action"),
             ({"action": "invite", "email": "nope", "role": "annotator"}, 400, "valid email")]
    for data, status, message in cases:
        response = client.post(_url(project), data)
        assert (response.status_code, message in response.content.decode()) == (status, True), data
    assert Membership.objects.get(pk=other.pk).role == "annotator" and own.role == "manager"


def test_the_last_manager_is_told_why_they_cannot_step_down(client, project, boss):
    own = Membership.objects.get(user=boss)
    client.force_login(boss)
    response = client.post(_url(project), {"action": "role", "membership_id": own.pk, "role": "annotator"})
    assert response.status_code == 409 and "last manager" in response.content.decode()
    response = client.post(_url(project), {"action": "remove", "membership_id": own.pk})
    assert response.status_code == 409 and Membership.objects.get(pk=own.pk).role == "manager"
    # With a second manager, stepping down works and leads to a page still theirs.
    MembershipFactory(project=project, user=UserFactory(username="co"), role="manager")
    response = client.post(_url(project), {"action": "role", "membership_id": own.pk, "role": "annotator"})
    assert response["Location"] == reverse("project-detail", args=[project.pk])
    assert client.get(_url(project)).status_code == 404


def test_an_invitation_link_is_shown_once_and_revoked_on_request(client, project, boss, mailoutbox, settings):
    settings.LABELHUB_EMAIL_ENABLED = True
    client.force_login(boss)
    response = client.post(_url(project), {"action": "invite", "email": "new@example.org", "role": "annotator"})
    body = response.content.decode()
    invitation = Invitation.objects.get()
    link = mailoutbox[0].body.split()[-1]
    assert link in body and "/invitations/" in link and "sent by email" in body
    again = client.get(_url(project)).content.decode()
    assert "new@example.org" in again and link not in again
    response = client.post(_url(project), {"action": "revoke", "invitation_id": invitation.pk}, follow=True)
    assert "is withdrawn" in response.content.decode()
    client.logout()
    page = client.get(link)
    assert page.status_code == 410 and "withdrawn" in page.content.decode()


def test_an_invitee_creates_an_account_and_lands_in_the_project(client, project, boss):
    _invitation, token = services.invitation_create(project=project, email="new@example.org", role="annotator",
                                                    created_by=boss)
    url = reverse("invitation-accept", args=[token])
    page = client.get(url).content.decode()
    assert "Join Birds" in page and "new@example.org" in page and "annotator" in page
    response = client.post(url, {"action": "register", "username": "newbie", "password": "short",
                                 "password_again": "short"})
    assert response.status_code == 400 and "too short" in response.content.decode()
    assert not get_user_model().objects.filter(username="newbie").exists()
    response = client.post(url, {"action": "register", "username": "newbie", "password": STRONG,
                                 "password_again": STRONG})
    assert response["Location"] == reverse("project-detail", args=[project.pk])
    assert client.get(reverse("label", args=[project.pk])).status_code == 200  # logged in, as annotator
    client.logout()
    used = client.get(url)
    assert used.status_code == 410 and "already been used" in used.content.decode()
    unknown = client.get(reverse("invitation-accept", args=["not-a-token"]))
    assert unknown.status_code == 404 and "not known" in unknown.content.decode()


def test_a_logged_in_user_accepts_and_an_expired_link_says_so(client, project, boss):
    existing = UserFactory(username="existing")
    invitation, token = services.invitation_create(project=project, email="e@example.org", role="reviewer",
                                                   created_by=boss)
    url = reverse("invitation-accept", args=[token])
    client.force_login(existing)
    assert "Join as existing" in client.get(url).content.decode()
    response = client.post(url, {"action": "register", "username": "x", "password": STRONG, "password_again": STRONG})
    assert response.status_code == 400 and "log out first" in response.content.decode()
    response = client.post(url, {"action": "accept"})
    assert response.status_code == 302 and Membership.objects.get(user=existing, project=project).role == "reviewer"
    _invitation, token = services.invitation_create(project=project, email="late@example.org", role="annotator",
                                                    created_by=boss)
    Invitation.objects.filter(email="late@example.org").update(expires_at=timezone.now() - timedelta(minutes=1))
    client.logout()
    response = client.post(reverse("invitation-accept", args=[token]),
                           {"action": "register", "username": "late", "password": STRONG, "password_again": STRONG})
    assert response.status_code == 410 and "expired" in response.content.decode()
    assert not get_user_model().objects.filter(username="late").exists()
