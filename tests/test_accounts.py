"""Accounts: API tokens hashed at rest and shown once, expiry, throttled token failures, login lockout."""
import importlib
import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from axes.models import AccessAttempt
from django.apps import apps
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from labelhub.throttling import ScopedUserRateThrottle
from tests.factories import UserFactory, api_token_for

pytestmark = pytest.mark.django_db

PASSWORD = "pass-word-123"


def api_status(project, key: str) -> int:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api.get(reverse("api-project", args=[project.pk])).status_code


def shown_key(response) -> str | None:
    found = re.search(r'id="api-token-key">([^<]+)<', response.content.decode())
    return found.group(1) if found else None


def assert_no_store(response) -> None:
    assert "no-store" in response["Cache-Control"], response["Cache-Control"]


def stored_values() -> list[str]:
    """Every value of every stored token, as text."""
    return [str(value) for row in AuthToken.objects.values_list() for value in row]


def test_token_page_shows_a_new_token_once_and_stores_only_its_digest(client, annotator, text_project):
    client.force_login(annotator)
    page = client.get(reverse("api-token"))
    assert "You have no API token" in page.content.decode()
    assert_no_store(page)

    created = client.post(reverse("api-token"), {"action": "create"})
    assert created.status_code == 200
    assert_no_store(created)
    first = shown_key(created)
    assert first and "shown only this once" in created.content.decode()
    assert "previous" not in created.content.decode()  # there was none
    assert api_status(text_project, first) == 200
    # Never shown again, and not at rest: only the digest and the first characters are stored.
    again = client.get(reverse("api-token"))
    assert_no_store(again)
    assert shown_key(again) is None and first not in again.content.decode()
    assert first[:8] in again.content.decode()
    assert not any(first in value for value in stored_values())

    regenerated = client.post(reverse("api-token"), {"action": "regenerate"})
    second = shown_key(regenerated)
    assert second and second != first
    assert "Your previous token no longer works." in regenerated.content.decode()
    assert api_status(text_project, first) == 401
    assert api_status(text_project, second) == 200

    client.post(reverse("api-token"), {"action": "revoke"})
    assert not AuthToken.objects.filter(user=annotator).exists()
    assert api_status(text_project, second) == 401


def test_tokens_expire(annotator, text_project, settings):
    key = api_token_for(annotator)
    token = AuthToken.objects.get(user=annotator)
    assert token.expiry - timezone.now() > timedelta(days=89)  # API_TOKEN_TTL_DAYS, 90 by default

    AuthToken.objects.filter(pk=token.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = api.get(reverse("api-project", args=[text_project.pk]))

    assert response.status_code == 401 and "expired" in response.json()["detail"]
    assert not AuthToken.objects.filter(pk=token.pk).exists()


def test_plain_tokens_from_before_are_hashed_and_keep_working(annotator, text_project):
    """The data migration turns DRF's plain tokens into digests and drops the table that held them."""
    plain = "0123456789abcdef0123456789abcdef01234567"  # DRF's tokens: 40 hex characters
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp NOT NULL, user_id bigint)"
        )
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, %s, %s)", [plain, "2024-01-02 03:04:05", annotator.pk])
    migration = importlib.import_module("annotations.migrations.0014_api_tokens_hashed")

    migration.plain_tokens_hash(apps, SimpleNamespace(connection=connection))

    assert "authtoken_token" not in connection.introspection.table_names()
    token = AuthToken.objects.get(user=annotator)
    assert token.created.year == 2024 and token.expiry > timezone.now() + timedelta(days=89)
    assert not any(plain in value for value in stored_values())
    assert api_status(text_project, plain) == 200
    assert api_status(text_project, plain[:-1] + "8") == 401


def test_wrong_tokens_are_throttled_per_address_and_valid_ones_are_not(annotator, text_project, monkeypatch):
    monkeypatch.setitem(ScopedUserRateThrottle.THROTTLE_RATES, "auth_failure", "3/min")
    key = api_token_for(annotator)

    statuses = [api_status(text_project, "f" * 64) for _ in range(4)]

    assert statuses == [401, 401, 401, 429]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token " + "e" * 64)
    throttled = api.get(reverse("api-project", args=[text_project.pk]))
    assert throttled.status_code == 429 and int(throttled["Retry-After"]) > 0
    assert api_status(text_project, key) == 200


def test_token_headers_that_are_not_tokens_are_401(text_project):
    api = APIClient()
    for header in ["Token", "Token a b", "Token " + "a" * 10_000, "Token ñ".encode().decode("latin-1")]:
        api.credentials(HTTP_AUTHORIZATION=header)
        assert api.get(reverse("api-project", args=[text_project.pk])).status_code == 401, header


def test_login_locks_out_after_failed_attempts_with_a_readable_page(client, settings):
    UserFactory(username="expert", password=PASSWORD)
    UserFactory(username="colleague", password=PASSWORD)
    login = reverse("login")

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        failed = client.post(login, {"username": "expert", "password": "guess"})
        assert failed.status_code == 200 and "did not match" in failed.content.decode()
    locked = client.post(login, {"username": "expert", "password": "guess"})
    assert locked.status_code == 429
    # Locked: even the right password is refused, with a page saying why and for how long.
    refused = client.post(login, {"username": "expert", "password": PASSWORD})
    body = refused.content.decode()
    assert refused.status_code == 429 and "_auth_user_id" not in client.session
    assert "Too many failed logins" in body and "15 minutes" in body and "expert" in body
    # Another account from the same address is not locked (lockout by username and address).
    assert client.post(login, {"username": "colleague", "password": PASSWORD}).status_code == 302
    client.logout()

    # After the cool-off the right password works again.
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert client.post(login, {"username": "expert", "password": PASSWORD}).status_code == 302


def test_admin_login_is_locked_out_too(client, settings):
    UserFactory(username="root", password=PASSWORD, is_staff=True, is_superuser=True)
    login = reverse("admin:login")

    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(login, {"username": "root", "password": "guess"})
    refused = client.post(login, {"username": "root", "password": PASSWORD})

    assert refused.status_code == 429 and "Too many failed logins" in refused.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_successful_login_clears_earlier_failures(client, settings):
    UserFactory(username="expert", password=PASSWORD)
    login = reverse("login")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post(login, {"username": "expert", "password": "guess"})
    assert client.post(login, {"username": "expert", "password": PASSWORD}).status_code == 302
    client.logout()

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post(login, {"username": "expert", "password": "guess"})
    assert client.post(login, {"username": "expert", "password": PASSWORD}).status_code == 302
