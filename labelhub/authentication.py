"""API token authentication in one precompiled statement (the queue's clients send a token with every request),
and the page of a login locked out by django-axes.

Tokens are django-rest-knox's: the database holds only the SHA-512 digest of each, which is also
its primary key, so a token is found by hashing what the client sent and reading one row by key.
"""
from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox import auth
from knox.crypto import hash_token
from knox.models import AuthToken
from rest_framework import exceptions

from labelhub import rows
from labelhub.throttling import AuthFailureThrottle

# Our tokens are 64 hex characters (40 for those made before tokens were hashed); anything much longer is not one.
MAX_TOKEN_LENGTH = 200


class TokenAuthentication(auth.TokenAuthentication):
    """``Authorization: Token <token>``: the token's owner, read with the token in one raw row.

    A wrong or expired token is a 401 until the caller's address has sent ``auth_failure``'s rate of
    them, then a 429; the count is taken only on failure, so valid requests pay nothing for it.
    """

    def authenticate(self, request) -> tuple | None:
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            throttle = AuthFailureThrottle()
            if not throttle.allow_request(request, None):
                raise exceptions.Throttled(throttle.wait()) from None
            raise

    def authenticate_credentials(self, token: bytes) -> tuple:
        try:
            key = token.decode("ascii")
        except UnicodeDecodeError:
            key = None
        if not key or len(key) > MAX_TOKEN_LENGTH:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        User = get_user_model()
        q = rows.qn
        row = rows.fetch_one(
            f"SELECT {rows.columns(AuthToken, 't')}, {rows.columns(User, 'u')} FROM {q(AuthToken._meta.db_table)} t"
            f" INNER JOIN {q(User._meta.db_table)} u ON u.{q(User._meta.pk.column)} = t.{q('user_id')}"
            f" WHERE t.{q('digest')} = %s",
            [hash_token(key)],
        )
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        auth_token, end = rows.build(AuthToken, row)
        user, _end = rows.build(User, row, end)
        if auth_token.expiry is not None and auth_token.expiry <= timezone.now():
            AuthToken.objects.filter(pk=auth_token.pk).delete()
            raise exceptions.AuthenticationFailed(_("Token expired: make a new one on the API token page."))
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        auth_token.user = user
        return user, auth_token


class TokenScheme(OpenApiAuthenticationExtension):
    """The OpenAPI document's name for it: ``Authorization: Token <token>``, as DRF's token scheme was."""

    target_class = TokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema) -> dict:
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Token")


def login_locked_out(request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None):
    """django-axes' answer to a locked-out login (the login page's or the admin's): a page saying why and how long."""
    cool_off = get_cool_off(request)
    context = {
        "failure_limit": get_failure_limit(request, credentials),
        "username": get_client_username(request, credentials) or "",
        "cooloff_minutes": round(cool_off.total_seconds() / 60) if cool_off else None,
    }
    return render(request, "registration/locked_out.html", context, status=429)
