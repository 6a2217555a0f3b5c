# Each run's label ids become ranges changed from a base run's (learner.ml.lineage); existing runs
# keep theirs whole, as ranges (keyframes).

from django.db import migrations, models


def _ranges(ids):
    # learner.ml.lineage.ranges as of this migration: a migration keeps its own copy of what it runs.
    out = []
    for i in sorted(set(ids)):
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def ids_to_keyframes(apps, schema_editor):
    TrainingRun = apps.get_model("learner", "TrainingRun")
    for pk, ids in TrainingRun.objects.exclude(label_ids=[]).values_list("pk", "label_ids").iterator(chunk_size=100):
        ids = [int(i) for i in ids or []]
        lineage = {"base": None, "added": _ranges(ids), "removed": [], "count": len(set(ids))}
        TrainingRun.objects.filter(pk=pk).update(label_lineage=lineage)


def keyframes_to_ids(apps, schema_editor):
    TrainingRun = apps.get_model("learner", "TrainingRun")
    runs = TrainingRun.objects.filter(label_lineage__isnull=False).order_by("pk")
    whole = {}
    for pk, lineage in runs.values_list("pk", "label_lineage").iterator(chunk_size=100):
        ids = set(whole.get(lineage["base"], ()))
        ids.difference_update(i for first, last in lineage["removed"] for i in range(first, last + 1))
        ids.update(i for first, last in lineage["added"] for i in range(first, last + 1))
        whole[pk] = ids
        TrainingRun.objects.filter(pk=pk).update(label_ids=sorted(ids))


class Migration(migrations.Migration):

    dependencies = [
        ('learner', '0010_longer_feature_space'),
    ]

    operations = [
        migrations.AddField(
            model_name='trainingrun',
            name='label_lineage',
            field=models.JSONField(blank=True, help_text="The annotation ids it trained on, as ranges changed from a base run's (learner.ml.lineage).", null=True),
        ),
        migrations.RunPython(ids_to_keyframes, keyframes_to_ids),
        migrations.RemoveField(
            model_name='trainingrun',
            name='label_ids',
        ),
    ]
