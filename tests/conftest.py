"""Shared fixtures: isolated media and model stores, users and projects."""
import pytest
from django.core.cache import caches
from django.db import connection

from annotations.models import Membership, Project
from labelhub.celery import app as celery_app
from tests.factories import LabelFactory, MembershipFactory, ProjectFactory, UserFactory
from tests.sent_tasks import Sent, send_task_fake


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the tests marked ``postgres`` (PostgreSQL's own mechanisms) when the database is another."""
    if connection.vendor == "postgresql":
        return
    kept, left_out = [], []
    for item in items:
        (left_out if item.get_closest_marker("postgres") else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


@pytest.fixture(autouse=True)
def _isolated_storage(settings, tmp_path):
    """Keep every test's media and model files in its own temporary folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MODEL_STORE_ROOT = tmp_path / "models"
    settings.STORAGES = {
        **settings.STORAGES,
        "models": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "models")},
        },
    }


@pytest.fixture(autouse=True)
def _fresh_rate_counters():
    """Start every test with no requests counted against any rate (the counters live in this process's memory).

    SQLite gives a rolled-back test's ids to the next test's users, whose requests would otherwise count on top
    of the earlier ones. Failed logins (django-axes) are rows in the database, so each test's rollback forgets them.
    """
    caches["throttle"].clear()


@pytest.fixture
def sent_tasks(monkeypatch) -> Sent:
    """The tasks sent by name, as (name, args), recorded instead of sent; a name no task registers under fails."""
    sent: Sent = []
    monkeypatch.setattr(celery_app, "send_task", send_task_fake(sent))
    return sent


@pytest.fixture
def manager(db):
    return UserFactory(username="manager")


@pytest.fixture
def annotator(db):
    return UserFactory(username="annotator")


@pytest.fixture
def text_project(db, manager, annotator) -> Project:
    project = ProjectFactory(name="Sentiment", slug="sentiment", kind=Project.Kind.TEXT)
    for i, name in enumerate(["negative", "positive"]):
        LabelFactory(project=project, name=name, shortcut=str(i + 1), order=i)
    MembershipFactory(project=project, user=manager, role=Membership.Role.MANAGER)
    MembershipFactory(project=project, user=annotator, role=Membership.Role.ANNOTATOR)
    return project


@pytest.fixture
def tabular_project(db, manager) -> Project:
    project = ProjectFactory(name="Wine", slug="wine", kind=Project.Kind.TABULAR)
    for i, name in enumerate(["class_0", "class_1", "class_2"]):
        LabelFactory(project=project, name=name, shortcut=str(i + 1), order=i)
    MembershipFactory(project=project, user=manager, role=Membership.Role.MANAGER)
    return project


@pytest.fixture
def image_project(db, manager) -> Project:
    project = ProjectFactory(name="Digits", slug="digits", kind=Project.Kind.IMAGE)
    for i in range(10):
        LabelFactory(project=project, name=str(i), shortcut=str(i), order=i)
    MembershipFactory(project=project, user=manager, role=Membership.Role.MANAGER)
    return project
