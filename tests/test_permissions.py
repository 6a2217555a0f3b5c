"""Every URL of the project, for every role: who may use it and what the others get (403/404, or the login page).

The table below names each URL pattern with its methods, the minimum role for each method and how
to build its arguments. A URL without an entry fails the test, so a new endpoint must say here who
may use it. Allowed requests are sent empty: they must not be refused (no 401/403/404/405) and not
fail (no 5xx); a 4xx validation error or a 409 is the answer to an empty request.
"""
import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.shortcuts import resolve_url
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from PIL import Image

from annotations.models import ImportJob, Item, Lease, Membership, Project
from annotations.services import invitation_create
from learner.models import Experiment, ModelVersion, PredictionLog
from learner.services.models import model_version_promote
from tests.factories import (
    AnnotationFactory,
    ItemFactory,
    LabelFactory,
    MembershipFactory,
    ProjectFactory,
    UserFactory,
    api_client_for,
)

pytestmark = pytest.mark.django_db

# Who is asking, weakest first; a rule's minimum role admits that user and everyone after it. An API
# client stands below the annotator: only rules that name it (``ClientOr``) admit it beyond USER.
ROLES = ["anonymous", "non-member", "client", "annotator", "reviewer", "manager", "staff"]
PUBLIC, USER, CLIENT, ANNOTATOR, REVIEWER, MANAGER, ADMIN = ROLES  # minimum roles: "public" admits anonymous visitors


@dataclass(frozen=True)
class ClientOr:
    """The project's API clients, and everyone from ``minimum`` up (predict and feedback)."""

    minimum: str
EXCLUDED_NAMESPACES = {"admin"}  # Django's admin enforces staff itself


@dataclass
class World:
    """One project with every kind of object a URL names, and a user per role."""

    project: Project
    users: dict[str, Any]
    item: Item
    annotation: Any
    import_job: ImportJob
    experiment: Experiment
    prediction: PredictionLog
    leases: list[Lease] = field(default_factory=list)

    def client_for(self, role: str) -> int:
        """A fresh API client account of the project (one the asking role may renew or remove once)."""
        user, _ = api_client_for(self.project, f"made-for-{role}")
        return user.pk

    def lease_for(self, role: str) -> uuid.UUID:
        """A fresh active lease of the asking user, or of the annotator when the asker may not label here."""
        user = self.users["annotator" if role in ("anonymous", "non-member") else role]
        item = ItemFactory(project=self.project)
        lease = Lease.objects.create(
            project=self.project, item=item, user=user, expires_at=timezone.now() + timedelta(minutes=10)
        )
        return lease.pk


Kwargs = Callable[[World, str], dict[str, Any]]


def project(w: World, role: str) -> dict[str, Any]:
    return {"project_id": w.project.pk}


def nothing(w: World, role: str) -> dict[str, Any]:
    return {}


def project_and(**more: Callable[[World, str], Any]) -> Kwargs:
    return lambda w, role: {"project_id": w.project.pk, **{k: f(w, role) for k, f in more.items()}}


def only(**values: Callable[[World, str], Any]) -> Kwargs:
    return lambda w, role: {k: f(w, role) for k, f in values.items()}


def item(w, role):
    return w.item.pk


def annotation(w, role):
    return w.annotation.pk


def own_annotation(w, role):
    """A label of the asking user (so that an allowed user's request reaches the form), the annotator's otherwise."""
    user = w.users.get(role)
    if user is None or role in ("non-member", "client"):
        return w.annotation.pk
    label = w.project.labels.first()
    return AnnotationFactory(item=ItemFactory(project=w.project), annotator=user, label=label).pk


def lease(w, role):
    return w.lease_for(role)


def version(w, role):
    return 2


def invitation_token(w):
    """A fresh invitation's token, so that every role finds it pending."""
    return invitation_create(project=w.project, email="invitee@example.org", role="annotator",
                             created_by=w.users["manager"])[1]


@dataclass(frozen=True)
class Rule:
    methods: dict[str, str | ClientOr]  # HTTP method → minimum role
    kwargs: Kwargs = nothing


# url name → methods with their minimum role, and how to build the URL's arguments.
RULES: dict[str, Rule] = {
    # Accounts and API documentation
    "login": Rule({"GET": PUBLIC}),
    "favicon": Rule({"GET": PUBLIC}),
    "logout": Rule({"POST": PUBLIC}),
    "api-schema": Rule({"GET": PUBLIC}),
    "api-docs": Rule({"GET": PUBLIC}),
    # Projects, import, media (annotations/views.py, apis.py)
    "home": Rule({"GET": USER}),
    "project-detail": Rule({"GET": ANNOTATOR}, project),
    "item-media": Rule({"GET": ANNOTATOR}, only(item_id=item, variant=lambda w, r: "image")),
    "project-import": Rule({"GET": MANAGER, "POST": MANAGER}, project),
    "import-job-panel": Rule({"GET": MANAGER}, only(job_id=lambda w, r: w.import_job.pk)),
    "api-import-create": Rule({"POST": MANAGER}, project),
    "api-import-detail": Rule({"GET": MANAGER}, only(job_id=lambda w, r: w.import_job.pk)),
    # Projects, labels, items, annotations and export over REST (project_apis.py, exports/apis.py), API token page
    "api-token": Rule({"GET": USER, "POST": USER}),
    "api-projects": Rule({"GET": USER, "POST": ADMIN}),
    "api-project": Rule({"GET": ANNOTATOR, "PATCH": MANAGER}, project),
    "api-labels": Rule({"GET": ANNOTATOR, "POST": MANAGER}, project),
    "api-label": Rule({"PATCH": MANAGER}, project_and(label_id=lambda w, r: w.project.labels.first().pk)),
    "api-items": Rule({"GET": REVIEWER}, project),
    "api-annotations": Rule({"GET": REVIEWER}, project),
    "api-project-export": Rule({"GET": MANAGER}, project),
    # API clients (client_apis.py, views.py)
    "project-clients": Rule({"GET": MANAGER, "POST": MANAGER}, project),
    # Making and setting up a project (project_views.py); a user an admin gave annotations.add_project may too
    "project-new": Rule({"GET": ADMIN, "POST": ADMIN}),
    "project-settings": Rule({"GET": MANAGER, "POST": MANAGER}, project),
    "project-label-add": Rule({"POST": MANAGER}, project),
    "project-label-change": Rule({"POST": MANAGER}, project_and(label_id=lambda w, r: w.annotation.label_id)),
    "project-export": Rule({"GET": MANAGER}, project),
    "api-clients": Rule({"GET": MANAGER, "POST": MANAGER}, project),
    "api-client": Rule({"DELETE": MANAGER}, project_and(client_id=lambda w, r: w.client_for(r))),
    "api-client-token": Rule({"POST": MANAGER}, project_and(client_id=lambda w, r: w.client_for(r))),
    # Members and invitations (member_views.py): the accept page is public, its token is the key
    "project-members": Rule({"GET": MANAGER, "POST": MANAGER}, project),
    "invitation-accept": Rule({"GET": PUBLIC, "POST": PUBLIC}, only(token=lambda w, r: invitation_token(w))),
    # Labeling page and queue (label_views.py, apis.py)
    "label": Rule({"GET": ANNOTATOR}, project),
    "label-next": Rule({"POST": ANNOTATOR}, project),
    "label-undo": Rule({"POST": ANNOTATOR}, project),
    "label-submit": Rule({"POST": ANNOTATOR}, project_and(lease_id=lease)),
    "label-skip": Rule({"POST": ANNOTATOR}, project_and(lease_id=lease)),
    "label-renew": Rule({"POST": ANNOTATOR}, project_and(lease_id=lease)),
    "label-release": Rule({"POST": ANNOTATOR}, project_and(lease_id=lease)),
    "api-queue-next": Rule({"POST": ANNOTATOR}, project),
    "api-queue-progress": Rule({"GET": ANNOTATOR}, project),
    "api-queue-undo": Rule({"POST": ANNOTATOR}, project),
    "api-lease-submit": Rule({"POST": ANNOTATOR}, only(lease_id=lease)),
    "api-lease-skip": Rule({"POST": ANNOTATOR}, only(lease_id=lease)),
    "api-lease-release": Rule({"POST": ANNOTATOR}, only(lease_id=lease)),
    "api-lease-renew": Rule({"POST": ANNOTATOR}, only(lease_id=lease)),
    # Review (review_views.py, review_apis.py)
    "review": Rule({"GET": REVIEWER}, project),
    "review-item": Rule({"GET": REVIEWER}, project_and(item_id=item)),
    "review-resolve": Rule({"POST": REVIEWER}, project_and(item_id=item)),
    "review-correct": Rule({"POST": REVIEWER}, project_and(annotation_id=annotation)),
    "agreement": Rule({"GET": REVIEWER}, project),
    # Items browser, item page, an expert's own labels (browse_views.py)
    "project-items": Rule({"GET": REVIEWER}, project),
    "project-item": Rule({"GET": REVIEWER}, project_and(item_id=item)),
    "project-item-correct": Rule({"POST": REVIEWER}, project_and(item_id=item)),
    "my-labels": Rule({"GET": ANNOTATOR}, project),
    "my-label-change": Rule({"POST": ANNOTATOR}, project_and(annotation_id=own_annotation)),
    "api-review-items": Rule({"GET": REVIEWER}, project),
    "api-agreement": Rule({"GET": REVIEWER}, project),
    "api-item-resolve": Rule({"POST": REVIEWER}, only(item_id=item)),
    "api-annotation-correct": Rule({"POST": REVIEWER}, only(annotation_id=annotation)),
    "api-item-gold": Rule({"POST": MANAGER}, only(item_id=item)),
    # Models and experiments (learner/views.py, apis.py, experiment_apis.py)
    "project-models": Rule({"GET": REVIEWER}, project),
    "project-retrain": Rule({"POST": MANAGER}, project),
    "model-version-detail": Rule({"GET": REVIEWER}, project_and(number=version)),
    "model-versions-compare": Rule({"GET": REVIEWER}, project),
    "project-dashboard": Rule({"GET": REVIEWER}, project),
    "project-dashboard-jobs": Rule({"GET": REVIEWER}, project),
    "project-model-status": Rule({"GET": ANNOTATOR}, project),
    "model-version-rollback": Rule({"POST": MANAGER}, project_and(number=version)),
    "model-version-promote": Rule({"POST": MANAGER}, project_and(number=version)),
    "project-model-settings": Rule({"GET": MANAGER, "POST": MANAGER}, project),
    "project-experiments": Rule({"GET": MANAGER}, project),
    "experiment-start": Rule({"POST": MANAGER}, project),
    "experiment-stop": Rule({"POST": MANAGER}, project_and(experiment_id=lambda w, r: w.experiment.pk)),
    "api-retrain": Rule({"POST": MANAGER}, project),
    "api-runs": Rule({"GET": REVIEWER}, project),
    "api-model-versions": Rule({"GET": REVIEWER}, project),
    "api-model-version-rollback": Rule({"POST": MANAGER}, project_and(number=version)),
    "api-model-version-promote": Rule({"POST": MANAGER}, project_and(number=version)),
    "api-model-settings": Rule({"GET": ANNOTATOR, "PATCH": MANAGER}, project),
    "api-predict": Rule({"POST": ClientOr(MANAGER)}, project),
    "api-prediction-feedback": Rule(
        {"POST": ClientOr(MANAGER)}, project_and(prediction_id=lambda w, r: w.prediction.pk)),
    "api-experiments": Rule({"GET": MANAGER, "POST": MANAGER}, project),
    "api-experiment": Rule({"GET": MANAGER}, project_and(experiment_id=lambda w, r: w.experiment.pk)),
    "api-experiment-stop": Rule({"POST": MANAGER}, project_and(experiment_id=lambda w, r: w.experiment.pk)),
}


def _patterns(patterns, namespace: str | None = None) -> Iterator[tuple[str | None, str]]:
    """(name, route) of every URL pattern, outside the excluded namespaces."""
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace in EXCLUDED_NAMESPACES:
                continue
            yield from _patterns(entry.url_patterns, entry.namespace or namespace)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name
            yield name, str(entry.pattern)


def test_every_url_has_a_rule_and_every_rule_a_url():
    found = list(_patterns(get_resolver().url_patterns))
    unnamed = [route for name, route in found if name is None]
    assert not unnamed, f"URL patterns without a name cannot be checked: {unnamed}"
    names = {name for name, _ in found}
    missing = sorted(names - RULES.keys())
    assert not missing, f"Add these URL names to RULES in tests/test_permissions.py: {missing}"
    stale = sorted(RULES.keys() - names)
    assert not stale, f"RULES names URLs that no longer exist: {stale}"


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 200).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def world(db) -> World:
    users = {
        "non-member": UserFactory(username="outsider"),
        "annotator": UserFactory(username="annotator"),
        "reviewer": UserFactory(username="reviewer"),
        "manager": UserFactory(username="manager"),
        "staff": UserFactory(username="staff"),
    }
    users["staff"].is_staff = True
    users["staff"].save(update_fields=["is_staff"])
    project = ProjectFactory(kind=Project.Kind.IMAGE)
    labels = [LabelFactory(project=project, name=name, shortcut=str(i)) for i, name in enumerate(["cat", "dog"])]
    for role in ("annotator", "reviewer", "manager"):
        MembershipFactory(project=project, user=users[role], role=role)
    users["client"], _ = api_client_for(project, "service")
    # The outsider manages another project: a role elsewhere gives nothing here.
    MembershipFactory(project=ProjectFactory(), user=users["non-member"], role=Membership.Role.MANAGER)
    item = ItemFactory(project=project)
    item.image.save("permissions.png", ContentFile(_png()), save=True)
    annotation = AnnotationFactory(item=item, annotator=users["annotator"], label=labels[0])
    job = ImportJob.objects.create(project=project, created_by=users["manager"], filename="x.zip",
                                   status=ImportJob.Status.DONE)
    versions = [
        ModelVersion.objects.create(
            project=project, number=n, algorithm="logistic regression", feature_space="image-v1",
            classes=[label.pk for label in labels], artifact_name=f"v{n}.skops", artifact_sha256="0" * 64,
            label_snapshot_hash="0" * 64,
        )
        for n in (1, 2)
    ]
    model_version_promote(versions[0], reason="first")
    experiment = Experiment.objects.create(
        project=project, champion=versions[0], challenger=versions[1], mode=Experiment.Mode.SHADOW,
        rule={"test": "mcnemar", "alpha": 0.05, "min_gain": 0.02, "looks": 4, "min_sample": 100},
        created_by=users["manager"],
    )
    prediction = PredictionLog.objects.create(
        project_id=project.pk, version_id=versions[0].pk, label_id=labels[0].pk, confidence=0.9,
        client_id=users["client"].pk,
    )
    return World(project, users, item, annotation, job, experiment, prediction)


def _allowed(role: str, minimum: str | ClientOr) -> bool:
    if isinstance(minimum, ClientOr):
        return role == CLIENT or _allowed(role, minimum.minimum)
    return ROLES.index(role) >= ROLES.index(minimum)


def _is_login_redirect(response) -> bool:
    return response.status_code == 302 and response["Location"].startswith(resolve_url(settings.LOGIN_URL)) and (
        "next=" in response["Location"]
    )




@pytest.mark.parametrize("name", sorted(RULES))
def test_each_role_gets_what_the_table_says(client, world, name):
    rule = RULES[name]
    failures = []
    for method, minimum in rule.methods.items():
        for role in ROLES:
            client.logout()
            if role != "anonymous":
                client.force_login(world.users[role])
            url = reverse(name, kwargs=rule.kwargs(world, role))
            response = getattr(client, method.lower())(url)
            status = response.status_code
            api = url.startswith("/api/") and name not in ("api-schema", "api-docs")
            if _allowed(role, minimum):
                ok = status < 500 and status not in (401, 403, 404, 405) and not _is_login_redirect(response)
                expected = "allowed (2xx/3xx, or 4xx for an empty request)"
            elif role == "anonymous":
                ok = status in (401, 403) if api else _is_login_redirect(response)
                expected = "401/403" if api else "a redirect to the login page"
            else:
                ok = status in (403, 404)
                expected = "403/404"
            if not ok:
                failures.append(f"{method} {url} as {role}: {status}, expected {expected}")
    assert not failures, "\n".join(failures)
