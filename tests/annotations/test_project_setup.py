"""Making a project and editing its labels: slugs from names, distinct colours, delete and merge, bounds."""
import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from annotations import services
from annotations.models import Annotation, AnnotationCorrection, Item, ItemScore, Label, Lease, Project
from annotations.services.labels import LABEL_PALETTE
from labelhub.api import Conflict, DomainError
from labelhub.celery import TaskName
from learner.models import TrainingRun
from learner.services.triggers import requested_trigger
from tests.annotations.test_queue import make_scoring
from tests.factories import AnnotationFactory, ItemFactory, UserFactory

pytestmark = pytest.mark.django_db

THREE = [{"name": "cat", "shortcut": "c"}, {"name": "dog", "shortcut": "d"}, {"name": "bird", "shortcut": "b"}]


@pytest.fixture
def staff(db):
    return UserFactory(username="root", is_staff=True)


def test_the_slug_comes_from_the_name_and_is_made_unique(staff):
    first = services.project_create(user=staff, name="Chest X-rays", kind="image")
    second = services.project_create(user=staff, name="Chest X-rays", kind="image")
    third = services.project_create(user=staff, name="Chest  x rays!", kind="image")
    nameless = services.project_create(user=staff, name="日本語", kind="text")

    assert [first.slug, second.slug, third.slug] == ["chest-x-rays", "chest-x-rays-2", "chest-x-rays-3"]
    assert nameless.slug == "project"


def test_a_given_slug_is_kept_and_a_taken_one_refused(staff):
    assert services.project_create(user=staff, name="A", slug="my-slug", kind="text").slug == "my-slug"
    with pytest.raises(DomainError) as exc:
        services.project_create(user=staff, name="B", slug="my-slug", kind="text")
    assert "slug" in exc.value.details and Project.objects.filter(name="B").count() == 0


def test_labels_come_in_order_with_distinct_default_colours(staff):
    project = services.project_create(user=staff, name="Pets", kind="text", labels=THREE)
    labels = list(project.labels.order_by("order"))

    assert [(label.name, label.shortcut) for label in labels] == [("cat", "c"), ("dog", "d"), ("bird", "b")]
    assert [label.color for label in labels] == list(LABEL_PALETTE[:3])
    added = [services.label_create(project=project, name=f"extra{i}") for i in range(17)]
    colors = [label.color for label in [*labels, *added]]
    assert len(set(colors)) == 20 and len(set(LABEL_PALETTE)) == 20
    assert added[-1].order == 19  # a new label goes last


@pytest.mark.parametrize("labels, reason", [
    ([{"name": "cat", "shortcut": "c"}, {"name": "dog", "shortcut": "c"}], "key"),
    ([{"name": "cat"}, {"name": "Cat"}], "named"),
    ([{"name": "cat", "color": "red"}, {"name": "dog"}], "Invalid"),
    ([{"name": "x" * 101}, {"name": "dog"}], "Invalid"),
])
def test_a_bad_label_stores_no_project(staff, labels, reason):
    with pytest.raises(DomainError) as exc:
        services.project_create(user=staff, name="Pets", kind="text", labels=labels)
    assert reason in exc.value.message
    assert not Project.objects.exists() and not Label.objects.exists()


@pytest.mark.parametrize("field, value", [("audit_share", 1.5), ("overlap", 0), ("overlap", 21),
                                          ("lease_ttl_seconds", 5), ("kind", "video")])
def test_a_setting_out_of_bounds_stores_no_project(staff, field, value):
    with pytest.raises(DomainError) as exc:
        services.project_create(user=staff, labels=THREE, **{"name": "Pets", "kind": "text", field: value})
    assert field in exc.value.details and not Project.objects.exists()


def test_who_may_create_projects(manager):
    with pytest.raises(PermissionDenied):
        services.project_create(user=manager, name="Mine", kind="text")
    manager.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotations"))
    manager = type(manager).objects.get(pk=manager.pk)  # permissions are cached on the user object

    project = services.project_create(user=manager, name="Mine", kind="text")
    assert project.memberships.get().user == manager and project.memberships.get().role == "manager"


def test_api_creates_a_project_without_a_slug(staff, text_project):
    client = APIClient()
    client.force_authenticate(staff)
    made = client.post(reverse("api-projects"), {"name": "Sentiment", "kind": "text"}, format="json")
    again = client.post(reverse("api-projects"), {"name": "Sentiment", "kind": "text", "slug": ""}, format="json")
    given = client.post(reverse("api-projects"), {"name": "Other", "kind": "text", "slug": "sentiment"}, format="json")

    assert made.status_code == 201 and made.json()["slug"] == "sentiment-2"  # "sentiment" is text_project's
    assert again.status_code == 201 and again.json()["slug"] == "sentiment-3"
    assert given.status_code == 400 and "slug" in given.json()["errors"]


def test_a_label_in_use_is_not_deleted_and_says_how_it_is_used(text_project, annotator, manager):
    negative, positive = text_project.labels.order_by("order")
    items = [ItemFactory(project=text_project) for _ in range(3)]
    for item in items[:2]:
        AnnotationFactory(item=item, annotator=annotator, label=negative)
    Item.objects.filter(pk=items[2].pk).update(gold_label=negative)

    with pytest.raises(Conflict) as exc:
        services.label_delete(label=negative)
    assert "used by 2 annotations and 1 gold label" in exc.value.message and "merge" in exc.value.message
    assert Label.objects.filter(pk=negative.pk).exists()

    unused = services.label_create(project=text_project, name="neutral")
    make_scoring(text_project, {items[0]: 0.5}, label=unused)
    services.label_delete(label=unused)
    assert not Label.objects.filter(pk=unused.pk).exists()
    # The queue keeps the item's score; it suggests nothing now.
    assert list(ItemScore.objects.values_list("item_id", "predicted_label_id")) == [(items[0].pk, None)]


def test_merge_moves_everything_to_the_other_label_and_asks_for_a_retrain(
    text_project, annotator, manager, sent_tasks, django_capture_on_commit_callbacks
):
    negative, positive = text_project.labels.order_by("order")
    neutral = services.label_create(project=text_project, name="neutral", shortcut="3")
    items = [ItemFactory(project=text_project) for _ in range(3)]
    moved = AnnotationFactory(item=items[0], annotator=annotator, label=neutral, predicted_label=neutral)
    kept = AnnotationFactory(item=items[1], annotator=annotator, label=positive)
    Item.objects.filter(pk=items[0].pk).update(resolved_label=neutral)
    Item.objects.filter(pk=items[2].pk).update(gold_label=neutral)
    AnnotationCorrection.objects.create(annotation=kept, previous_label=neutral, new_label=positive)
    scoring = make_scoring(text_project, {items[2]: 0.7}, label=neutral)
    stamp = Annotation.objects.get(pk=moved.pk).updated_at

    with django_capture_on_commit_callbacks(execute=True):
        usage = services.label_merge(label=neutral, into=positive, user_id=manager.pk)

    assert usage == {"annotations": 1, "resolved": 1, "gold": 1, "corrections": 1}
    assert not Label.objects.filter(pk=neutral.pk).exists()
    moved = Annotation.objects.get(pk=moved.pk)
    assert (moved.label_id, moved.predicted_label_id) == (positive.pk, positive.pk) and moved.updated_at > stamp
    assert Item.objects.get(pk=items[0].pk).resolved_label_id == positive.pk
    assert Item.objects.get(pk=items[2].pk).gold_label_id == positive.pk
    assert AnnotationCorrection.objects.get().previous_label_id == positive.pk
    assert ItemScore.objects.get(scoring=scoring).predicted_label_id == positive.pk
    assert Annotation.objects.get(pk=kept.pk).label_id == positive.pk
    assert sent_tasks == [(TaskName.RETRAIN_REQUESTED, [text_project.pk, manager.pk,
                                                        "Label “neutral” merged into “positive”."])]

    run = requested_trigger(*sent_tasks[0][1])
    assert run.trigger == TrainingRun.Trigger.MANUAL and run.evidence["requested_by"] == "manager"
    assert requested_trigger(*sent_tasks[0][1]) is None  # one active run per project


def test_merge_refuses_another_projects_label_and_itself(text_project, tabular_project):
    negative, _ = text_project.labels.order_by("order")
    for into in (negative, tabular_project.labels.first()):
        with pytest.raises(DomainError):
            services.label_merge(label=negative, into=into)
    assert Label.objects.filter(pk=negative.pk).exists()


def test_labels_move_up_and_down(text_project):
    neutral = services.label_create(project=text_project, name="neutral")
    services.label_move(label=neutral, step=-1)
    assert [label.name for label in text_project.labels.order_by("order")] == ["negative", "neutral", "positive"]
    services.label_move(label=neutral, step=-1)
    services.label_move(label=neutral, step=-1)  # already first: nothing moves
    assert [label.name for label in text_project.labels.order_by("order")] == ["neutral", "negative", "positive"]


def test_a_merged_labels_suggestion_on_an_open_lease_moves_too(text_project, annotator):
    negative, positive = text_project.labels.order_by("order")
    lease = Lease.objects.create(project=text_project, item=ItemFactory(project=text_project), user=annotator,
                                 expires_at=timezone.now(), predicted_label=negative)
    services.label_merge(label=negative, into=positive)
    assert Lease.objects.get(pk=lease.pk).predicted_label_id == positive.pk
