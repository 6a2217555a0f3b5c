"""A stand-in for the broker in tests: tasks sent by name are recorded, and a name no task registers under fails."""
from collections.abc import Callable
from functools import cache

from labelhub.celery import app as celery_app

Sent = list[tuple[str, list]]


@cache
def registered_task_names() -> frozenset[str]:
    """Names of the project's registered Celery tasks, after importing every app's tasks module as a worker does."""
    celery_app.autodiscover_tasks(force=True)
    return frozenset(name for name in celery_app.tasks if not name.startswith("celery."))


def task_name_checked(name: str) -> str:
    """The name, if a task is registered under it; else fail the test (a renamed or misspelt task)."""
    assert name in registered_task_names(), f"no Celery task is registered as {name!r}"
    return name


def send_task_fake(sent: Sent | None = None, *, raises: BaseException | None = None) -> Callable[..., None]:
    """A replacement for ``app.send_task`` that checks the name, then records (name, args) in ``sent`` or raises."""
    registered_task_names()  # now, not in the first send, which may run on a timer's thread after the test looked

    def send_task(name: str, args: list | tuple | None = None, **kwargs: object) -> None:
        task_name_checked(name)
        if raises is not None:
            raise raises
        if sent is not None:
            sent.append((str(name), list(args or [])))

    return send_task
