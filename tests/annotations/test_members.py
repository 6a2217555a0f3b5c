"""The team's services: add by username or email, invite and accept, single-use expiring tokens, the last manager."""
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.utils import timezone

from annotations import selectors, services
from annotations.models import Invitation, Lease, Membership
from annotations.selectors.members import InvitationUnusable, invitation_token_hash
from labelhub.api import Conflict, DomainError, NotFound
from tests.factories import ItemFactory, MembershipFactory, ProjectFactory, UserFactory, api_client_for

pytestmark = pytest.mark.django_db

STRONG = "tall-river-quiet-7"


@pytest.fixture
def project():
    return ProjectFactory()


@pytest.fixture
def manager(project):
    user = UserFactory(username="boss", email="boss@example.org")
    MembershipFactory(project=project, user=user, role="manager")
    return user


def _invite(project, manager, email="new@example.org", role="annotator"):
    return services.invitation_create(project=project, email=email, role=role, created_by=manager)


def test_add_an_existing_account_by_username_or_by_email(project):
    UserFactory(username="ann")
    UserFactory(username="rev", email="Rev@Example.org")
    assert services.member_add(project=project, identifier=" ann ", role="annotator").role == "annotator"
    assert services.member_add(project=project, identifier="rev@example.org", role="reviewer").user.username == "rev"
    assert dict(Membership.objects.filter(project=project).values_list("user__username", "role")) == {
        "ann": "annotator", "rev": "reviewer"}


def test_adding_names_what_is_wrong(project):
    UserFactory(username="ann")
    with pytest.raises(NotFound, match="No account has the username or email 'ghost'"):
        services.member_add(project=project, identifier="ghost", role="annotator")
    services.member_add(project=project, identifier="ann", role="annotator")
    with pytest.raises(Conflict, match="already a member"):
        services.member_add(project=project, identifier="ann", role="manager")
    with pytest.raises(DomainError, match="Choose a role"):
        services.member_add(project=project, identifier="ann", role="client")
    with pytest.raises(DomainError, match="username or email"):
        services.member_add(project=project, identifier="x" * 300, role="annotator")
    UserFactory(username="twin1", email="twin@example.org")
    UserFactory(username="twin2", email="TWIN@example.org")
    with pytest.raises(Conflict, match="Several accounts"):
        services.member_add(project=project, identifier="twin@example.org", role="annotator")
    assert Membership.objects.get(project=project, user__username="ann").role == "annotator"


def test_an_api_client_account_or_a_deactivated_one_cannot_join(project):
    api_client_for(ProjectFactory(), "svc")
    client_name = Membership.objects.get(role="client").user.username
    with pytest.raises(DomainError, match="API client account"):
        services.member_add(project=project, identifier=client_name, role="annotator")
    gone = UserFactory(username="gone")
    gone.is_active = False
    gone.save()
    with pytest.raises(DomainError, match="deactivated"):
        services.member_add(project=project, identifier="gone", role="annotator")
    assert not Membership.objects.filter(project=project).exists()


def test_an_invitation_stores_only_the_digest_and_mails_the_link(project, manager, settings):
    settings.LABELHUB_EMAIL_ENABLED = True
    invitation, token = _invite(project, manager, email=" New@Example.ORG ")
    assert invitation.email == "new@example.org" and token not in invitation.token_hash
    assert invitation.token_hash == invitation_token_hash(token)
    assert timedelta(days=6, hours=23) < invitation.expires_at - timezone.now() <= timedelta(days=7)
    assert services.invitation_email_send(invitation=invitation, link=f"http://x/invitations/{token}/")
    assert mail.outbox[-1].to == ["new@example.org"] and token in mail.outbox[-1].body
    settings.LABELHUB_EMAIL_ENABLED = False
    assert not services.invitation_email_send(invitation=invitation, link="http://x/")
    assert len(mail.outbox) == 1


def test_a_new_invitation_of_the_same_address_withdraws_the_earlier_one(project, manager):
    _first, old = _invite(project, manager)
    _second, new = _invite(project, manager, role="reviewer")
    with pytest.raises(InvitationUnusable, match="withdrawn"):
        selectors.invitation_get_by_token(old)
    assert selectors.invitation_get_by_token(new).role == "reviewer"
    assert [i.role for i in selectors.invitation_list_pending(project)] == ["reviewer"]


def test_inviting_refuses_a_bad_address_a_bad_role_and_a_member(project, manager):
    for email, role, message in [("not-an-email", "annotator", "valid email"), ("a@b.org", "client", "Choose a role"),
                                 ("a@b.org", "owner", "Choose a role"), ("x" * 250 + "@b.org", "annotator", "valid"),
                                 ("BOSS@example.org", "annotator", "already a member")]:
        with pytest.raises(DomainError, match=message):
            _invite(project, manager, email=email, role=role)
    assert not Invitation.objects.exists()


def test_accepting_creates_the_account_with_the_role_and_the_token_works_once(project, manager):
    invitation, token = _invite(project, manager, role="reviewer")
    invitation = selectors.invitation_get_by_token(token)
    user = services.invitation_register(invitation=invitation, username="newbie", password=STRONG,
                                        password_again=STRONG)
    assert user.email == "new@example.org" and user.check_password(STRONG)
    assert Membership.objects.get(project=project, user=user).role == "reviewer"
    assert Invitation.objects.get(pk=invitation.pk).accepted_by == user
    with pytest.raises(InvitationUnusable, match="already been used"):
        selectors.invitation_get_by_token(token)
    # The invitation object read before it was used is refused too: the row is checked again under a lock.
    with pytest.raises(InvitationUnusable):
        services.invitation_register(invitation=invitation, username="second", password=STRONG, password_again=STRONG)
    assert not get_user_model().objects.filter(username="second").exists()


def test_registering_checks_username_and_password_and_stores_nothing_on_error(project, manager):
    UserFactory(username="Taken")
    invitation, _token = _invite(project, manager)
    cases = [("", STRONG, STRONG, "username"), ("taken", STRONG, STRONG, "username"),
             ("bad name!", STRONG, STRONG, "username"), ("ok", "short", "short", "password"),
             ("ok", "password123", "password123", "password"), ("ok", STRONG, STRONG + "x", "password")]
    for username, password, again, field in cases:
        with pytest.raises(DomainError) as caught:
            services.invitation_register(invitation=invitation, username=username, password=password,
                                         password_again=again)
        assert field in caught.value.details
    assert get_user_model().objects.count() == 2
    assert Invitation.objects.get(pk=invitation.pk).accepted_at is None


def test_an_expired_or_unknown_or_revoked_token_is_refused_in_words(project, manager):
    invitation, token = _invite(project, manager)
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(InvitationUnusable, match="expired"):
        selectors.invitation_get_by_token(token)
    assert not selectors.invitation_list_pending(project).exists()
    with pytest.raises(NotFound, match="not known"):
        selectors.invitation_get_by_token("nope")
    with pytest.raises(NotFound):
        selectors.invitation_get_by_token("x" * 10_000)
    invitation, token = _invite(project, manager, email="other@example.org")
    services.invitation_revoke(invitation=selectors.invitation_get_pending(project, invitation.pk))
    with pytest.raises(InvitationUnusable, match="withdrawn"):
        selectors.invitation_get_by_token(token)


def test_a_logged_in_account_accepts_as_itself_once(project, manager):
    existing = UserFactory(username="existing")
    invitation, token = _invite(project, manager, role="manager")
    services.invitation_accept(invitation=selectors.invitation_get_by_token(token), user=existing)
    assert Membership.objects.get(project=project, user=existing).role == "manager"
    invitation, token = _invite(project, manager, email="again@example.org")
    with pytest.raises(Conflict, match="already a member"):
        services.invitation_accept(invitation=selectors.invitation_get_by_token(token), user=existing)
    # Refused without using the link up.
    assert selectors.invitation_get_by_token(token).accepted_at is None


def test_the_last_manager_can_be_neither_demoted_nor_removed(project, manager):
    own = Membership.objects.get(project=project, user=manager)
    with pytest.raises(Conflict, match="last manager"):
        services.member_role_change(project=project, membership=own, role="annotator")
    with pytest.raises(Conflict, match="last manager"):
        services.member_remove(project=project, membership=own)
    assert Membership.objects.get(pk=own.pk).role == "manager"
    second = MembershipFactory(project=project, user=UserFactory(username="second"), role="manager")
    services.member_role_change(project=project, membership=own, role="reviewer")
    assert Membership.objects.get(pk=own.pk).role == "reviewer"
    with pytest.raises(Conflict, match="last manager"):
        services.member_remove(project=project, membership=second)


def test_removing_a_member_gives_back_their_items(project, manager):
    member = MembershipFactory(project=project, user=UserFactory(username="leaver"), role="annotator")
    lease = Lease.objects.create(project=project, item=ItemFactory(project=project), user=member.user,
                                 expires_at=timezone.now() + timedelta(minutes=5))
    services.member_remove(project=project, membership=member)
    assert not Membership.objects.filter(pk=member.pk).exists()
    assert Lease.objects.get(pk=lease.pk).status == Lease.Status.RELEASED


def test_a_membership_of_another_project_or_a_client_is_not_found(project, manager):
    elsewhere = MembershipFactory(project=ProjectFactory(), user=UserFactory(username="far"), role="annotator")
    client_user, _ = api_client_for(project, "svc")
    client_membership = Membership.objects.get(user=client_user)
    for membership_id in (elsewhere.pk, client_membership.pk, 2**63):
        with pytest.raises(NotFound):
            selectors.member_get(project, membership_id)
    assert [m.user.username for m in selectors.member_list(project)] == ["boss"]
    assert selectors.member_client_count(project) == 1
