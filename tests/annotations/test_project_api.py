"""Projects, labels, items and annotations over REST: who may do what, cursor pages, filters, errors, tokens."""
import importlib
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from annotations.models import Item, Lease, Membership, Project
from tests.factories import AnnotationFactory, ItemFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_staff_create_projects_managers_update_them(text_project, manager, annotator):
    staff = UserFactory(username="root", is_staff=True)
    body = {"name": "Reviews", "slug": "reviews", "kind": "text", "overlap": 2}

    assert client_for(manager).post(reverse("api-projects"), body, format="json").status_code == 403
    created = client_for(staff).post(reverse("api-projects"), body, format="json")
    assert created.status_code == 201 and created.json()["overlap"] == 2 and created.json()["role"] == "admin"
    duplicate = client_for(staff).post(reverse("api-projects"), body, format="json")
    assert duplicate.status_code == 400 and "slug" in duplicate.json()["errors"]

    url = reverse("api-project", args=[text_project.pk])
    assert client_for(annotator).patch(url, {"name": "x"}, format="json").status_code == 404
    changed = client_for(manager).patch(url, {"name": "Sentiment v2", "audit_share": 0.2}, format="json")
    assert changed.status_code == 200 and changed.json()["name"] == "Sentiment v2"
    bad = client_for(manager).patch(url, {"audit_share": 3, "overlap": 0}, format="json")
    assert bad.status_code == 400 and set(bad.json()["errors"]) == {"audit_share", "overlap"}


def test_project_list_shows_only_my_projects_with_my_role(text_project, annotator):
    Project.objects.create(name="Hidden", slug="hidden", kind="text")

    rows = client_for(annotator).get(reverse("api-projects")).json()

    assert [(row["slug"], row["role"]) for row in rows] == [("sentiment", "annotator")]


def test_labels_list_create_update(text_project, manager, annotator):
    url = reverse("api-labels", args=[text_project.pk])
    assert [row["name"] for row in client_for(annotator).get(url).json()] == ["negative", "positive"]
    assert client_for(annotator).post(url, {"name": "neutral"}, format="json").status_code == 404

    created = client_for(manager).post(url, {"name": "neutral", "shortcut": "3", "color": "#aabbcc"}, format="json")
    assert created.status_code == 201
    duplicate = client_for(manager).post(url, {"name": "neutral"}, format="json")
    assert duplicate.status_code == 400
    bad_colour = client_for(manager).post(url, {"name": "other", "color": "red"}, format="json")
    assert bad_colour.status_code == 400 and "color" in bad_colour.json()["errors"]

    label_url = reverse("api-label", args=[text_project.pk, created.json()["id"]])
    renamed = client_for(manager).patch(label_url, {"name": "mixed"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "mixed"
    taken = client_for(manager).patch(label_url, {"shortcut": "1"}, format="json")
    assert taken.status_code == 400
    assert client_for(manager).patch(reverse("api-label", args=[text_project.pk, 10**9]), {}).status_code == 404


def test_items_are_walked_by_cursor_pages(text_project, manager, settings):
    settings.LABELHUB_API_PAGE_SIZE = 2
    for n in range(5):
        ItemFactory(project=text_project, external_id=f"r{n}")
    client = client_for(manager)

    seen, url = [], reverse("api-items", args=[text_project.pk])
    while url:
        page = client.get(url).json()
        seen += [row["external_id"] for row in page["results"]]
        url = page["next"]

    assert seen == [f"r{n}" for n in range(5)]
    assert client.get(reverse("api-items", args=[text_project.pk]) + "?cursor=garbage").status_code == 400


def test_annotations_filters_and_reviewer_access(text_project, manager, annotator):
    negative, positive = text_project.labels.order_by("order")
    reviewer = UserFactory(username="rev")
    MembershipFactory(project=text_project, user=reviewer, role=Membership.Role.REVIEWER)
    one, two = ItemFactory(project=text_project), ItemFactory(project=text_project)
    AnnotationFactory(item=one, annotator=annotator, label=positive, is_audit=True)
    AnnotationFactory(item=two, annotator=manager, label=negative)
    Item.objects.filter(pk=two.pk).update(resolved_label=positive)
    url = reverse("api-annotations", args=[text_project.pk])
    client = client_for(reviewer)

    def names(**params):
        response = client.get(url, params)
        assert response.status_code == 200, response.json()
        return [row["annotator"] for row in response.json()["results"]]

    assert names() == ["annotator", "manager"]
    assert names(annotator="manager") == ["manager"]
    assert names(label="positive") == ["annotator"]
    assert names(reviewed="true") == ["manager"] and names(reviewed="false") == ["annotator"]
    assert names(audit="true") == ["annotator"]
    assert names(updated_since=(timezone.now() + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")) == []
    bad = client.get(url, {"updated_since": "yesterday", "audit": "perhaps", "label": "nope"})
    assert bad.status_code == 400 and set(bad.json()["errors"]) == {"updated_since", "audit"}
    unknown = client.get(url, {"label": "nope"})
    assert unknown.status_code == 400 and "label" in unknown.json()["errors"]
    assert client_for(annotator).get(url).status_code == 404


def test_annotator_filter_does_not_tell_whether_a_user_exists_outside_the_project(text_project, annotator):
    reviewer = UserFactory(username="rev")
    MembershipFactory(project=text_project, user=reviewer, role=Membership.Role.REVIEWER)
    UserFactory(username="outsider")  # an account that exists, elsewhere
    former = UserFactory(username="former")  # labeled here, then left the project
    AnnotationFactory(item=ItemFactory(project=text_project), annotator=former, label=text_project.labels.first())
    client = client_for(reviewer)
    url = reverse("api-annotations", args=[text_project.pk])

    def answer(name: str) -> tuple[int, str]:
        response = client.get(url, {"annotator": name})
        return response.status_code, str(response.json()).replace(repr(name), "NAME")

    assert answer("outsider") == answer("nobody-has-this-name")
    assert answer("outsider")[0] == 400 and "annotator" in client.get(url, {"annotator": "outsider"}).json()["errors"]
    assert client.get(url, {"annotator": "annotator"}).status_code == 200  # a member who has not labeled yet
    assert [row["annotator"] for row in client.get(url, {"annotator": "former"}).json()["results"]] == ["former"]


def test_throttled_callers_get_a_json_429(text_project, annotator, settings, monkeypatch):
    from labelhub.throttling import ScopedUserRateThrottle

    monkeypatch.setitem(ScopedUserRateThrottle.THROTTLE_RATES, "user", "2/day")
    client = client_for(annotator)
    url = reverse("api-labels", args=[text_project.pk])
    statuses = [client.get(url).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    throttled = client.get(url)
    assert "throttled" in throttled.json()["detail"] and int(throttled["Retry-After"]) > 0
    # The queue has its own, higher rate.
    assert client.get(reverse("api-queue-progress", args=[text_project.pk])).status_code == 200


def test_unknown_api_urls_answer_json_404(annotator):
    response = client_for(annotator).get("/api/projects/-1/labels")

    assert response.status_code == 404 and response.json() == {"detail": "Not found."}


# Bounded settings: the same bounds on every database (SQLite would store any 64-bit integer)

# setting → (largest value taken, the first value refused)
SETTING_BOUNDS = {
    "lease_ttl_seconds": (24 * 3600, 24 * 3600 + 1),
    "retrain_every_n_labels": (1_000_000, 1_000_001),
    "retrain_interval_minutes": (366 * 24 * 60, 366 * 24 * 60 + 1),
    "degradation_window": (100_000, 100_001),
    "drift_threshold": (10.0, 10.5),
}


@pytest.mark.parametrize("setting", sorted(SETTING_BOUNDS))
def test_numeric_settings_are_bounded_on_every_database(text_project, manager, setting):
    taken, refused = SETTING_BOUNDS[setting]
    url = reverse("api-project", args=[text_project.pk])
    for value in (refused, 10**12, 2**63, 10**400):
        response = client_for(manager).patch(url, {setting: value}, format="json")
        assert response.status_code == 400, (value, response.content)
        assert list(response.json()["errors"]) == [setting]
    assert client_for(manager).patch(url, {setting: taken}, format="json").status_code == 200


def test_a_lease_ttl_of_10_to_the_12_is_refused_and_the_queue_keeps_serving(text_project, manager):
    ItemFactory(project=text_project)
    url = reverse("api-project", args=[text_project.pk])
    refused = client_for(manager).patch(url, {"lease_ttl_seconds": 10**12}, format="json")
    assert refused.status_code == 400
    assert refused.json()["errors"]["lease_ttl_seconds"] == ["Ensure this value is less than or equal to 86400."]

    served = client_for(manager).post(reverse("api-queue-next", args=[text_project.pk]), {}, format="json")
    assert served.status_code == 200


def test_a_stored_lease_ttl_beyond_the_bound_leases_for_a_day_at_most(text_project, manager):
    # A value written before the bound existed (SQLite took 10^12; PostgreSQL's column tops out at 2^31 - 1).
    Project.objects.filter(pk=text_project.pk).update(lease_ttl_seconds=2**31 - 1)
    ItemFactory(project=text_project)

    served = client_for(manager).post(reverse("api-queue-next", args=[text_project.pk]), {}, format="json")

    assert served.status_code == 200
    lease = Lease.objects.get()
    assert lease.expires_at <= timezone.now() + timedelta(days=1)


def test_the_migration_brings_stored_settings_within_the_bounds(text_project):
    migration = importlib.import_module("annotations.migrations.0016_setting_bounds")
    Project.objects.filter(pk=text_project.pk).update(
        lease_ttl_seconds=2**31 - 1, retrain_interval_minutes=2**31 - 1, degradation_window=2**31 - 1,
        drift_threshold=-3.0, instructions="x" * 25_000,
    )

    migration.clamp_settings(django_apps, None)

    text_project.refresh_from_db()
    assert (text_project.lease_ttl_seconds, text_project.retrain_interval_minutes) == (86_400, 527_040)
    assert (text_project.degradation_window, text_project.drift_threshold) == (100_000, 0.0)
    assert len(text_project.instructions) == 20_000
    text_project.full_clean()


def test_the_admin_form_refuses_a_setting_beyond_its_bound(client, text_project):
    staff = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(staff)
    url = reverse("admin:annotations_project_change", args=[text_project.pk])
    form = client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    data = {name: ("[]" if name == "feature_names" else value) for name, value in data.items() if value is not None}
    data["lease_ttl_seconds"] = str(10**12)
    for inline in ("labels", "memberships"):  # the inlines unchanged: no forms sent
        data.update({f"{inline}-TOTAL_FORMS": "0", f"{inline}-INITIAL_FORMS": "0"})

    response = client.post(url, data)

    assert response.status_code == 200  # the form again, with the error
    assert "Ensure this value is less than or equal to 86400." in response.content.decode()
    text_project.refresh_from_db()
    assert text_project.lease_ttl_seconds == 600
