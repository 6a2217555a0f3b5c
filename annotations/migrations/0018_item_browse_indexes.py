"""Indexes of the items browser: newest first per project, gold and resolved items; on PostgreSQL
also metadata (GIN, for field=value filters) and trigrams of the external id and text (for search)."""
from django.db import migrations, models

# pg_trgm is a trusted extension (PostgreSQL 13+): a database owner may create it.
POSTGRESQL = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS item_metadata ON annotations_item USING gin (metadata jsonb_path_ops)",
    "CREATE INDEX IF NOT EXISTS item_search_external_id ON annotations_item"
    " USING gin (UPPER(external_id) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS item_search_text ON annotations_item USING gin (UPPER(text) gin_trgm_ops)",
]
POSTGRESQL_BACK = [
    "DROP INDEX IF EXISTS item_metadata",
    "DROP INDEX IF EXISTS item_search_external_id",
    "DROP INDEX IF EXISTS item_search_text",
]


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in POSTGRESQL:
            schema_editor.execute(statement)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in POSTGRESQL_BACK:
            schema_editor.execute(statement)


class Migration(migrations.Migration):

    dependencies = [
        ('annotations', '0017_invitation'),
    ]

    operations = [
        migrations.RunPython(forwards, backwards),
        migrations.AddIndex(
            model_name='item',
            index=models.Index(fields=['project', 'id'], name='item_project_newest'),
        ),
        migrations.AddIndex(
            model_name='item',
            index=models.Index(condition=models.Q(('gold_label__isnull', False)), fields=['project'], name='item_gold'),
        ),
        migrations.AddIndex(
            model_name='item',
            index=models.Index(
                condition=models.Q(('resolved_label__isnull', False)), fields=['project'], name='item_resolved'
            ),
        ),
    ]
