"""Item scores keyed by (scoring, item); on PostgreSQL a table partitioned by scoring; chunk bookkeeping on scorings.

PostgreSQL: ``annotations_itemscore`` becomes a table partitioned by LIST on ``scoring_id``. Each
planned scoring creates an UNLOGGED partition of its own (annotations.services.scoring), indexed
once its last chunk is stored and dropped whole when a newer scoring completes; rows of any
other scoring land in the DEFAULT partition, which carries the (scoring, item) primary-key index
and the queue-order index. The parent itself has no indexes, so that a scoring's partition has
none while its chunks are copied in; the Django state below still declares the model's key and
index, which SQLite gets as they are. Existing scores are kept (moved into the new table).
"""
import django.db.models.deletion
from django.db import migrations, models

TABLE = "annotations_itemscore"
COLUMNS = "scoring_id, item_id, priority, predicted_label_id, confidence"

POSTGRESQL = [
    f"ALTER TABLE {TABLE} RENAME TO {TABLE}_old",
    "DROP INDEX IF EXISTS score_queue_order",
    "DROP INDEX IF EXISTS score_item",
    (
        f"CREATE TABLE {TABLE} (scoring_id bigint NOT NULL, item_id bigint NOT NULL, priority double precision NOT NULL,"
        " predicted_label_id bigint NULL, confidence double precision NULL) PARTITION BY LIST (scoring_id)"
    ),
    f"CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT",
    f"INSERT INTO {TABLE}_default ({COLUMNS}) SELECT {COLUMNS} FROM {TABLE}_old",
    f"CREATE UNIQUE INDEX {TABLE}_default_pk ON {TABLE}_default (scoring_id, item_id)",
    f"CREATE INDEX {TABLE}_default_queue ON {TABLE}_default (scoring_id, priority DESC, item_id)",
    f"DROP TABLE {TABLE}_old",
]

SQLITE = [
    f'ALTER TABLE "{TABLE}" RENAME TO "{TABLE}_old"',
    'DROP INDEX IF EXISTS "score_queue_order"',
    'DROP INDEX IF EXISTS "score_item"',
    (
        f'CREATE TABLE "{TABLE}" ("scoring_id" bigint NOT NULL, "item_id" bigint NOT NULL, "priority" real NOT NULL,'
        ' "predicted_label_id" bigint NULL, "confidence" real NULL, PRIMARY KEY ("scoring_id", "item_id"))'
    ),
    f'CREATE INDEX "score_queue_order" ON "{TABLE}" ("scoring_id", "priority" DESC, "item_id")',
    f'INSERT INTO "{TABLE}" ({COLUMNS}) SELECT {COLUMNS} FROM "{TABLE}_old"',
    f'DROP TABLE "{TABLE}_old"',
]


def forwards(apps, schema_editor):
    statements = POSTGRESQL if schema_editor.connection.vendor == "postgresql" else SQLITE
    for statement in statements:
        schema_editor.execute(statement)


def backwards(apps, schema_editor):
    # Scores are derived data: going back drops them (with every partition) and the next scoring
    # writes them again.
    schema_editor.execute(f"DROP TABLE {TABLE}" + (" CASCADE" if schema_editor.connection.vendor == "postgresql" else ""))
    schema_editor.create_model(apps.get_model("annotations", "ItemScore"))


class Migration(migrations.Migration):

    dependencies = [
        ("annotations", "0007_review_corrections"),
    ]

    operations = [
        # Runs before the state changes, so that ``backwards`` sees the old model to recreate.
        migrations.RunPython(forwards, backwards),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="ItemScore"),
                migrations.CreateModel(
                    name="ItemScore",
                    fields=[
                        ("pk", models.CompositePrimaryKey("scoring", "item", blank=True, editable=False,
                                                          primary_key=True, serialize=False)),
                        ("priority", models.FloatField(help_text="Higher is asked sooner.")),
                        ("confidence", models.FloatField(null=True)),
                        ("item", models.ForeignKey(db_constraint=False, db_index=False,
                                                   on_delete=django.db.models.deletion.DO_NOTHING,
                                                   related_name="scores", to="annotations.item")),
                        ("predicted_label", models.ForeignKey(db_constraint=False, db_index=False, null=True,
                                                              on_delete=django.db.models.deletion.CASCADE,
                                                              related_name="+", to="annotations.label")),
                        ("scoring", models.ForeignKey(db_constraint=False, db_index=False,
                                                      on_delete=django.db.models.deletion.CASCADE,
                                                      related_name="scores", to="annotations.queuescoring")),
                    ],
                    options={
                        "indexes": [models.Index(fields=["scoring", "-priority", "item"], name="score_queue_order")],
                    },
                ),
            ],
        ),
        migrations.AddField(
            model_name="queuescoring",
            name="chunk_ranges",
            field=models.BinaryField(blank=True, default=bytes),
        ),
        migrations.AddField(
            model_name="queuescoring",
            name="chunks_stored",
            field=models.BinaryField(blank=True, default=bytes),
        ),
        migrations.AddField(
            model_name="queuescoring",
            name="progressed_at",
            field=models.DateTimeField(
                blank=True, help_text="When a chunk was last stored, or its missing chunks were sent again.", null=True
            ),
        ),
    ]
