"""The Celery application; configuration comes from Django settings (CELERY_ namespace)."""
import logging
import os
import threading

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelhub.settings")

app = Celery("labelhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)


@worker_init.connect
def _import_machine_learning(**kwargs) -> None:
    """Workers train, score and evaluate: import that stack once, in the main process before the pool forks."""
    from learner.ml import import_stack

    import_stack()


def send_task_on_commit(name: str, args: list, *, coalesce_seconds: float = 0) -> None:
    """Send a task by name once the current transaction commits; a broker failure is logged, never raised.

    robust=True keeps what was committed whatever the broker does (beat reconciles later). The
    callback is a named function, not a functools.partial: Django 5.2 logs a failed robust
    callback by its ``__qualname__``, which a partial lacks, so that log line itself would raise.

    ``coalesce_seconds``: the calls for one task and args that commit within that many seconds
    of the first of them send one message, that many seconds after it (see ``_Coalescer``).
    """
    from django.db import transaction

    def send_task() -> None:
        if coalesce_seconds:
            _coalescer.send_later(name, args, coalesce_seconds)
        else:
            app.send_task(name, args=args)

    transaction.on_commit(send_task, robust=True)


class _Coalescer:
    """Per process, one delayed message for many calls: a project whose experts label a hundred items
    a second sends a couple of messages a second instead of one per label.

    The first call arms a timer; calls while it is armed add nothing; when it fires, the message
    goes out and the next call arms a new one. The task therefore runs after every call it stands
    for had committed, and sees their rows. The delay is kept here rather than in the broker (a
    countdown): a worker holding a not-yet-due message loses it, and may crash, when Redis
    restarts. Timers pending when the process exits are lost; the beat tasks reconcile those.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: set[tuple[str, str]] = set()

    def send_later(self, name: str, args: list, seconds: float) -> None:
        key = (name, repr(args))
        with self._lock:
            if key in self._armed:
                return
            self._armed.add(key)
        timer = threading.Timer(seconds, self._fire, (key, name, args))
        timer.daemon = True
        timer.start()

    def _fire(self, key: tuple[str, str], name: str, args: list) -> None:
        with self._lock:
            self._armed.discard(key)
        try:
            app.send_task(name, args=args)
        except Exception:  # a timer thread has no caller to raise to: log, and let beat reconcile
            logger.exception("Could not send %s%r; the reconciliation beat will catch up.", name, args)


_coalescer = _Coalescer()
