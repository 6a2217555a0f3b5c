"""The Celery application; configuration comes from Django settings (CELERY_ namespace)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelhub.settings")

app = Celery("labelhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def send_task_on_commit(name: str, args: list) -> None:
    """Send a task by name once the current transaction commits; a broker failure is logged, never raised.

    robust=True keeps what was committed whatever the broker does (beat reconciles later). The
    callback is a named function, not a functools.partial: Django 5.2 logs a failed robust
    callback by its ``__qualname__``, which a partial lacks, so that log line itself would raise.
    """
    from django.db import transaction

    def send_task() -> None:
        app.send_task(name, args=args)

    transaction.on_commit(send_task, robust=True)
