"""API tokens hashed at rest: DRF's plain tokens become django-rest-knox tokens (digest only), and DRF's table goes.

Each existing token keeps working, so that scripts need no change: its SHA-512 digest is stored as
a knox token of the same user, with an expiry API_TOKEN_TTL_DAYS after this migration, and the
table that held the tokens in plain text (``authtoken_token``, of the ``rest_framework.authtoken``
app, no longer installed) is dropped with its migration records. A database that never had the
table is left as it is. The digests cannot be turned back into tokens: reversing does nothing.
"""
from datetime import UTC, datetime

from django.db import migrations
from django.utils import timezone
from django.utils.dateparse import parse_datetime

PLAIN_TABLE = "authtoken_token"


def _aware(value) -> datetime:
    """A token's creation time as read by a raw cursor (SQLite gives text), timezone-aware."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is None:
        return timezone.now()
    return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)


def plain_tokens_hash(apps, schema_editor) -> None:
    from knox.crypto import hash_token
    from knox.settings import CONSTANTS, knox_settings

    connection = schema_editor.connection
    if PLAIN_TABLE not in connection.introspection.table_names():
        return
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {quote('key')}, {quote('user_id')}, {quote('created')} FROM {quote(PLAIN_TABLE)}")
        plain = cursor.fetchall()
    AuthToken = apps.get_model("knox", "AuthToken")
    expiry = timezone.now() + knox_settings.TOKEN_TTL
    for key, user_id, created in plain:
        token = AuthToken(digest=hash_token(key), token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH], user_id=user_id,
                          expiry=expiry)
        AuthToken.objects.bulk_create([token])
        AuthToken.objects.filter(pk=token.pk).update(created=_aware(created))  # auto_now_add made it now
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {quote(PLAIN_TABLE)}")
        cursor.execute(f"DELETE FROM {quote('django_migrations')} WHERE {quote('app')} = %s", ["authtoken"])


class Migration(migrations.Migration):
    dependencies = [
        ("annotations", "0013_import_job_runs"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [migrations.RunPython(plain_tokens_hash, migrations.RunPython.noop)]
