"""API token authentication in one precompiled statement (the queue's clients send a token with every request)."""
from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from labelhub import rows


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication (``Authorization: Token <key>``), reading token and user in one raw row."""

    def authenticate_credentials(self, key: str) -> tuple:
        User = get_user_model()
        q = rows.qn
        row = rows.fetch_one(
            f"SELECT {rows.columns(Token, 't')}, {rows.columns(User, 'u')} FROM {q(Token._meta.db_table)} t"
            f" INNER JOIN {q(User._meta.db_table)} u ON u.{q(User._meta.pk.column)} = t.{q('user_id')}"
            f" WHERE t.{q('key')} = %s",
            [key],
        )
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token, end = rows.build(Token, row)
        user, _end = rows.build(User, row, end)
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        token.user = user
        return user, token
