"""Beat entry of the scoring reconciliation: resend chunks of stalled scorings, drop stale score partitions."""
import json

from django.db import migrations

NAME = "Resend chunks of stalled pool scorings"
TASK = "learner.score_pool_reconcile"


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    PeriodicTask.objects.update_or_create(
        name=NAME, defaults={"task": TASK, "interval": interval, "args": json.dumps([]), "enabled": True}
    )


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("learner", "0004_versions_lineage_drift_checks"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
