"""Beat entries of the reconciliation tasks: feature catch-up, retrain triggers, drift, lost runs."""
import json

from django.db import migrations

ENTRIES = [
    # (name, task, every, period)
    ("Catch up item features", "learner.features_reconcile", 10, "minutes"),
    ("Check retrain triggers (label count, degradation)", "learner.triggers_check", 1, "minutes"),
    ("Check data drift", "learner.drift_check_all", 1, "hours"),
    ("Fail training runs whose worker was lost", "learner.training_runs_reap", 5, "minutes"),
]


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every, period in ENTRIES:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
        PeriodicTask.objects.update_or_create(
            name=name, defaults={"task": task, "interval": interval, "args": json.dumps([]), "enabled": True}
        )


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, *_ in ENTRIES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("learner", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
