"""The Celery wiring: every task name sent is a registered task; task defaults and beat entries come from settings."""
import ast
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from labelhub.celery import TaskName, send_task_on_commit
from labelhub.celery import app as celery_app
from tests.sent_tasks import registered_task_names, send_task_fake

ROOT = Path(__file__).resolve().parent.parent
APP_PACKAGES = ("annotations", "learner", "labelhub", "bench")
SENDERS = {"send_task", "send_task_on_commit"}


def _app_modules() -> list[Path]:
    return [
        path for package in APP_PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    ]


def _sends(path: Path) -> list[tuple[int, ast.expr]]:
    """(line, first argument) of every call that sends a task by name in the module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if called in SENDERS and node.args:
            found.append((node.lineno, node.args[0]))
    return found


def test_every_task_registers_under_a_name_of_the_registry_and_every_name_is_registered():
    assert registered_task_names() == set(TaskName)


def test_every_task_sent_by_name_is_named_from_the_registry():
    """A name written out as a string could be misspelt, or outlive a renamed task, and nothing would notice."""
    sends, wrong = 0, []
    for path in _app_modules():
        for line, name in _sends(path):
            sends += 1
            named = (
                isinstance(name, ast.Attribute) and isinstance(name.value, ast.Name) and name.value.id == "TaskName"
                and name.attr in TaskName.__members__
            )
            # The one generic sender passes on the name it was given.
            passed_on = path.name == "celery.py" and isinstance(name, ast.Name) and name.id == "name"
            if not (named or passed_on):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {ast.unparse(name)}")
    assert sends > 15
    assert wrong == []


def test_the_registry_check_would_catch_a_string_name(tmp_path):
    module = tmp_path / "module.py"
    module.write_text('send_task_on_commit("learner.score_pol", [1])\napp.send_task(TaskName.SCORE_POOL, args=[1])\n')
    assert [ast.unparse(name) for _, name in _sends(module)] == ["'learner.score_pol'", "TaskName.SCORE_POOL"]


def test_the_tests_broker_refuses_a_name_no_task_registers_under():
    sent = []
    send_task_fake(sent)(TaskName.SCORE_POOL, args=[1])
    with pytest.raises(AssertionError, match="no Celery task is registered as 'learner.score_pol'"):
        send_task_fake(sent)("learner.score_pol", args=[1])
    assert sent == [("learner.score_pool", [1])]


def test_task_defaults_come_from_settings():
    registered_task_names()
    for name in TaskName:
        task = celery_app.tasks[name]
        assert task.acks_late is True and task.reject_on_worker_lost is True, name
    assert celery_app.tasks[TaskName.FEATURES_COMPUTE_CHUNK].time_limit in (None, settings.CELERY_TASK_TIME_LIMIT)
    assert celery_app.tasks[TaskName.TRAIN_RUN].time_limit == 3600  # what differs stays on the decorator


@pytest.mark.django_db
def test_beat_writes_its_fixed_entries_from_settings_over_the_rows_of_the_same_name(monkeypatch):
    """The rows learner's migrations wrote carry the settings' names: beat updates them, so nothing runs twice."""
    # Beat closes connections past their age between reads; the test's connection holds its transaction.
    monkeypatch.setattr("django_celery_beat.schedulers.close_old_connections", lambda: None)
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert {entry["task"] for entry in schedule.values()} <= registered_task_names()
    written_by_migrations = set(PeriodicTask.objects.values_list("name", flat=True))
    assert written_by_migrations >= set(schedule)
    PeriodicTask.objects.filter(name="Check data drift").update(enabled=False)  # an admin turned it off

    DatabaseScheduler(app=celery_app)  # what beat does when it starts

    for name, entry in schedule.items():
        row = PeriodicTask.objects.get(name=name)
        assert row.task == entry["task"]
        assert timedelta(seconds=row.interval.every) == entry["schedule"] and row.interval.period == "seconds"
        assert PeriodicTask.objects.filter(task=entry["task"]).count() == 1
    assert not PeriodicTask.objects.get(name="Check data drift").enabled


@pytest.mark.django_db(transaction=True)
def test_a_send_the_broker_refuses_is_handed_to_if_refused_after_commit(monkeypatch):
    refused = []
    monkeypatch.setattr(celery_app, "send_task", send_task_fake(raises=ConnectionError("broker unreachable")))
    with transaction.atomic():
        send_task_on_commit(TaskName.IMPORT_JOB_RUN, [7], if_refused=lambda: refused.append(7))
        send_task_on_commit(TaskName.SCORE_POOL, [7])  # nothing to hand it to: logged
        assert refused == []
    assert refused == [7]


@pytest.mark.django_db(transaction=True)
def test_a_send_is_dropped_with_its_transaction(sent_tasks):
    with pytest.raises(RuntimeError), transaction.atomic():
        send_task_on_commit(TaskName.SCORE_POOL, [1])
        raise RuntimeError
    with transaction.atomic():
        send_task_on_commit(TaskName.SCORE_POOL, [2])
    assert sent_tasks == [("learner.score_pool", [2])]
