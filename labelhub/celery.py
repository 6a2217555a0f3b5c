"""The Celery application; configuration comes from Django settings (CELERY_ namespace)."""
import ctypes
import logging
import os
import threading
from collections.abc import Callable
from enum import StrEnum

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelhub.settings")


class TaskName(StrEnum):
    """Every Celery task of the project, by the name it registers under and is sent by.

    Tasks are sent by name so that annotations never imports learner, and learner's services
    never import the tasks that call them. tests/test_celery.py checks that each name is a
    registered task, that every task registers under one of these, and that every send names one.
    """

    IMPORT_JOB_RUN = "annotations.import_job_run"
    FEATURES_COMPUTE = "learner.features_compute"
    FEATURES_COMPUTE_CHUNK = "learner.features_compute_chunk"
    FEATURES_RECONCILE = "learner.features_reconcile"
    FEATURES_REFRESH = "learner.features_refresh"
    SCORE_POOL = "learner.score_pool"
    SCORE_CHUNK = "learner.score_chunk"
    SCORE_INDEX_REST = "learner.score_index_rest"
    SCORE_POOL_RECONCILE = "learner.score_pool_reconcile"
    LABELS_ADDED = "learner.labels_added"
    EXPERIMENT_EVALUATE = "learner.experiment_evaluate"
    EXPERIMENTS_EVALUATE = "learner.experiments_evaluate"
    RETRAIN_SCHEDULED = "learner.retrain_scheduled"
    RETRAIN_REQUESTED = "learner.retrain_requested"
    TRIGGERS_CHECK = "learner.triggers_check"
    DRIFT_CHECK = "learner.drift_check"
    DRIFT_CHECK_ALL = "learner.drift_check_all"
    TRAIN_RUN = "learner.train_run"
    TRAINING_RUNS_REAP = "learner.training_runs_reap"
    SCHEDULE_SYNC = "learner.schedule_sync"


app = Celery("labelhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)


# glibc's malloc options (mallopt(3)): blocks below the threshold come from the heap, and freed
# heap memory is given back to the kernel only above the trim threshold. 32 MiB is the largest
# threshold glibc accepts on 64-bit.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 512 * 1024 * 1024


@worker_init.connect
def _import_machine_learning(**kwargs) -> None:
    """Workers train, score and evaluate: import that stack once, and set how freed memory is kept, in the
    main process before the pool forks."""
    from learner.ml import import_stack

    import_stack()
    _heap_memory_kept()


def _heap_memory_kept() -> None:
    """Keep a worker's freed memory for its next task instead of returning it to the kernel (glibc).

    Each chunk of pool scoring allocates and frees arrays of megabytes. By default glibc maps such
    blocks afresh and unmaps them when freed, so every chunk faults its memory in again page by
    page; with two workers on two cores those faults took half the machine's time in the kernel,
    and a second worker added almost nothing. Set in the main process, the options hold in the
    pool's forked processes.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        set_option = libc.mallopt
    except (OSError, AttributeError):
        return  # not glibc: its allocator has its own policy
    if not (set_option(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and set_option(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)):
        logger.warning("glibc refused the malloc thresholds; workers return freed memory to the kernel")
    # What NUMPY_MADVISE_HUGEPAGE=0 does at numpy's import: no transparent huge pages asked for
    # large arrays, which on kernels that compact memory to find them costs more than it saves here.
    from numpy._core import multiarray

    hugepages = getattr(multiarray, "_set_madvise_hugepage", None)
    if hugepages is not None:
        hugepages(False)


@task_prerun.connect
@task_postrun.connect
def _database_connections_recycled(task=None, **kwargs) -> None:
    """Around each task, what Django does around each request: drop connections that are past
    CONN_MAX_AGE or broken, and health-check the others on their next use (CELERY_DB_REUSE_MAX
    stops Celery's own close of every connection around every task)."""
    if task is not None and getattr(task.request, "is_eager", False):
        return  # run inline, inside the caller's transaction
    from django.db import close_old_connections

    close_old_connections()


def send_task_on_commit(
    name: TaskName, args: list, *, coalesce_seconds: float = 0, if_refused: Callable[[], object] | None = None
) -> None:
    """Send a task by name once the current transaction commits; a broker failure is logged, never raised.

    The one way the project sends a task after commit. robust=True keeps what was committed
    whatever the broker does (beat reconciles later). The callback is a named function, not a
    functools.partial: Django 5.2 logs a failed robust callback by its ``__qualname__``, which a
    partial lacks, so that log line itself would raise.

    ``coalesce_seconds``: the calls for one task and args that commit within that many seconds
    of the first of them send one message, that many seconds after it (see ``_Coalescer``).
    ``if_refused``: called, after the failure is logged, when the broker refuses the message
    (for work that nothing reconciles, which must then be marked as not started).
    """
    from django.db import transaction

    def send_task() -> None:
        if coalesce_seconds:
            _coalescer.send_later(name, args, coalesce_seconds)
            return
        try:
            app.send_task(name, args=args)
        except Exception:  # kombu and redis raise many types when the broker is down
            if if_refused is None:
                raise  # robust: Django logs it
            logger.warning("Could not send %s%r.", name, args, exc_info=True)
            if_refused()

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

    def send_later(self, name: TaskName, args: list, seconds: float) -> None:
        key = (name, repr(args))
        with self._lock:
            if key in self._armed:
                return
            self._armed.add(key)
        timer = threading.Timer(seconds, self._fire, (key, name, args))
        timer.daemon = True
        timer.start()

    def _fire(self, key: tuple[str, str], name: TaskName, args: list) -> None:
        with self._lock:
            self._armed.discard(key)
        try:
            app.send_task(name, args=args)
        except Exception:  # a timer thread has no caller to raise to: log, and let beat reconcile
            logger.exception("Could not send %s%r; the reconciliation beat will catch up.", name, args)


_coalescer = _Coalescer()
