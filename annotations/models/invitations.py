"""Invitations to join a project: a single-use link, stored as the digest of its token, that expires."""
from django.conf import settings
from django.db import models

from annotations.models.projects import Membership, Project

# The roles a manager may invite to (API clients are made on their own page).
INVITABLE_ROLES = (Membership.Role.ANNOTATOR, Membership.Role.REVIEWER, Membership.Role.MANAGER)


class Invitation(models.Model):
    """One invitation of an email address to a project with a role; pending until accepted, revoked or expired."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(max_length=254)
    role = models.CharField(max_length=10, choices=Membership.Role.choices)
    # SHA-256 of the token in the link: the link itself is shown once and never stored.
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="invitations_sent"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="invitations_accepted"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "accepted_at", "revoked_at"], name="invitation_project_open")]

    def __str__(self) -> str:
        return f"{self.email} · {self.role} · {self.project}"
