"""Schemathesis fuzzes every documented endpoint: no 5xx, and every response conforms to the OpenAPI document.

The Django app is called in-process over WSGI, as a manager of a seeded project (token auth), with
a bounded, derandomized number of examples per operation. Path parameters named ``project_id``
point at the seeded project, so that generated bodies and queries reach the views' validation
instead of stopping at a 404.
"""
import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from annotations.models import Membership, Project
from labelhub.throttling import ScopedUserRateThrottle
from tests.factories import (
    AnnotationFactory, ItemFactory, LabelFactory, MembershipFactory, ProjectFactory, UserFactory, api_token_for,
)

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture
def seeded(db, monkeypatch):
    """A text project with labels, items and annotations, its manager's token, and no rate limit in the way."""
    for scope in ("user", "queue", "predict", "export"):
        monkeypatch.setitem(ScopedUserRateThrottle.THROTTLE_RATES, scope, "100000/min")
    # The WSGI handler would close the test's connection (and its transaction) around every request.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    project = ProjectFactory(name="Fuzz", slug="fuzz", kind=Project.Kind.TEXT)
    labels = [LabelFactory(project=project, name=name, shortcut=str(i + 1), order=i)
              for i, name in enumerate(["negative", "positive"])]
    manager = UserFactory(username="fuzz-manager")
    MembershipFactory(project=project, user=manager, role=Membership.Role.MANAGER)
    for n in range(12):
        item = ItemFactory(project=project, external_id=f"f{n}", text=f"=formula {n}")
        if n < 8:
            AnnotationFactory(item=item, annotator=manager, label=labels[n % 2], is_audit=n % 4 == 0)
    yield project, api_token_for(manager)
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


# Loaded when the module is collected (generating the document needs no database).
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@schema.parametrize()
@hypothesis_settings(
    max_examples=10, derandomize=True, deadline=None, phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_never_fails_and_matches_its_schema(case, seeded):
    project, token = seeded
    if case.path_parameters and "project_id" in case.path_parameters:
        case.path_parameters["project_id"] = project.pk
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)
