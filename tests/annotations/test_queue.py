"""The labeling queue's services: what an expert is served next, leases, submits, skips and undo."""
import random
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from annotations import selectors, services
from annotations.services.queue import serving as queue_services
from annotations.models import Annotation, Item, ItemScore, Lease, Membership, QueueScoring
from labelhub.api import Conflict, DomainError, NotFound
from labelhub.celery import app as celery_app
from tests.factories import AnnotationFactory, ItemFactory, LabelFactory, MembershipFactory, UserFactory
from tests.sent_tasks import send_task_fake

pytestmark = pytest.mark.django_db


def make_items(project, n: int) -> list[Item]:
    return [ItemFactory(project=project, random_key=(i + 0.5) / n) for i in range(n)]


def make_scoring(project, priorities: dict[Item, float], *, model_version: int = 3, label=None,
                 status=QueueScoring.Status.COMPLETE, finished_ago: timedelta = timedelta(0)) -> QueueScoring:
    """A scoring as the learner writes it; every score suggests ``label`` with confidence 1 - priority."""
    scoring = QueueScoring.objects.create(
        project=project, model_version=model_version, strategy=project.query_strategy, status=status,
        finished_at=timezone.now() - finished_ago if status == QueueScoring.Status.COMPLETE else None,
        items_total=len(priorities), items_scored=len(priorities),
    )
    label = label or project.labels.first()
    ItemScore.objects.bulk_create(
        ItemScore(scoring=scoring, item=item, priority=p, predicted_label=label, confidence=1 - p)
        for item, p in priorities.items()
    )
    return scoring


def expert(project, name: str):
    user = UserFactory(username=name)
    MembershipFactory(project=project, user=user, role=Membership.Role.ANNOTATOR)
    return user


def expire(lease: Lease) -> None:
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def submit(lease: Lease, user, project, **kwargs) -> Annotation:
    if "label_name" not in kwargs and "label_id" not in kwargs:
        kwargs["label_id"] = project.labels.first().pk
    return services.annotation_submit(lease_id=lease.pk, user=user, **kwargs)


@pytest.fixture
def project(text_project):
    text_project.audit_share = 0.0
    text_project.save()
    return text_project


# What is served


def test_serves_highest_priority_first_with_the_scorings_suggestion(project, annotator):
    items = make_items(project, 5)
    positive = project.labels.get(name="positive")
    make_scoring(project, {item: 0.1 * i for i, item in enumerate(items)}, model_version=4, label=positive)

    served = []
    for _ in range(5):
        lease = services.queue_next(project=project, user=annotator)
        served.append(lease.item)
        annotation = submit(lease, annotator, project)
    assert served == items[::-1]
    assert services.queue_next(project=project, user=annotator) is None

    assert (lease.model_version, lease.predicted_label, lease.predicted_confidence, lease.is_audit) == (
        4, positive, pytest.approx(1.0), False
    )
    annotation.refresh_from_db()
    assert (annotation.model_version, annotation.predicted_label, annotation.predicted_confidence) == (
        4, positive, pytest.approx(1.0)
    )
    assert (annotation.source, annotation.is_audit, annotation.lease_id) == (
        Annotation.Source.QUEUE, False, lease.pk
    )


def test_serves_from_the_newest_complete_scoring_only(project, annotator):
    a, b, c = make_items(project, 3)
    make_scoring(project, {a: 0.9, b: 0.5, c: 0.1}, model_version=1, finished_ago=timedelta(hours=2))
    newest = make_scoring(project, {a: 0.1, b: 0.5, c: 0.9}, model_version=2, finished_ago=timedelta(hours=1))
    make_scoring(project, {a: 0.9, b: 0.95, c: 0.1}, model_version=3, status=QueueScoring.Status.RUNNING)
    make_scoring(project, {b: 0.99}, model_version=5, status=QueueScoring.Status.FAILED)

    assert selectors.scoring_current(project.pk) == newest
    lease = services.queue_next(project=project, user=annotator)
    assert (lease.item, lease.model_version) == (c, 2)


def test_a_done_item_leaves_the_served_scoring(project, annotator):
    project.overlap = 2
    project.save()
    item, other = make_items(project, 2)
    old = make_scoring(project, {item: 0.9, other: 0.1}, model_version=1, finished_ago=timedelta(hours=1))
    served = make_scoring(project, {item: 0.9, other: 0.1}, model_version=2)

    submit(services.queue_next(project=project, user=annotator), annotator, project)
    assert ItemScore.objects.filter(scoring=served).count() == 2  # one label of two: still asked
    second = expert(project, "second")
    submit(services.queue_next(project=project, user=second), second, project)

    assert list(ItemScore.objects.filter(scoring=served).values_list("item_id", flat=True)) == [other.pk]
    assert ItemScore.objects.filter(scoring=old).count() == 2
    assert Annotation.objects.filter(item=item, model_version=2, predicted_label__isnull=False).count() == 2


def test_without_a_scoring_items_come_in_random_key_order(project, annotator):
    items = make_items(project, 8)
    Item.objects.filter(pk=items[0].pk).update(random_key=0.99)
    key = dict(Item.objects.values_list("pk", "random_key"))

    left = set(key)
    while lease := services.queue_next(project=project, user=annotator):
        assert (lease.model_version, lease.predicted_label) == (None, None)
        if not lease.is_audit:  # an audit draw starts at a random key (before a model, half the draws are audit)
            assert key[lease.item_id] == min(key[i] for i in left)
        left.remove(lease.item_id)
        submit(lease, annotator, project)
    assert not left


def test_once_scored_items_run_out_the_rest_come_in_random_order(project, annotator):
    items = make_items(project, 4)
    make_scoring(project, {items[3]: 0.7, items[2]: 0.2}, model_version=6)

    served = []
    while lease := services.queue_next(project=project, user=annotator):
        served.append((lease.item_id, lease.model_version, lease.predicted_label_id is not None))
        submit(lease, annotator, project)
    assert served == [
        (items[3].pk, 6, True), (items[2].pk, 6, True), (items[0].pk, 6, False), (items[1].pk, 6, False)
    ]


def test_audit_share_is_respected_and_audit_draws_ignore_priority(project, annotator):
    project.audit_share = 0.5
    project.save()
    items = make_items(project, 400)
    make_scoring(project, {item: i / 400 for i, item in enumerate(items)})

    audit_ranks, other_ranks = [], []
    for _ in range(400):
        lease = services.queue_next(project=project, user=annotator)
        rank = items.index(lease.item)
        (audit_ranks if lease.is_audit else other_ranks).append(rank)
        submit(lease, annotator, project)

    # Binomial(400, 0.5): mean 200, sd 10; 5 sd either way fails about once in 3 million runs.
    assert 150 <= len(audit_ranks) <= 250
    assert Annotation.objects.filter(is_audit=True).count() == len(audit_ranks)
    # Uncertainty draws take the highest priority left, so they come in descending order...
    assert other_ranks == sorted(other_ranks, reverse=True)
    # ...while audit draws are spread over the pool, many of them in its least uncertain half.
    assert sum(rank < 200 for rank in audit_ranks) > len(audit_ranks) // 4


def test_an_audit_draw_records_the_items_score_in_the_current_scoring(project, annotator):
    project.audit_share = 1.0
    project.save()
    (item,) = make_items(project, 1)
    negative = project.labels.get(name="negative")
    make_scoring(project, {item: 0.25}, model_version=7, label=negative)

    lease = services.queue_next(project=project, user=annotator)
    annotation = submit(lease, annotator, project)

    assert (lease.is_audit, lease.model_version, lease.predicted_label, lease.priority) == (True, 7, negative, 0.25)
    assert (annotation.is_audit, annotation.model_version, annotation.predicted_label_id) == (True, 7, negative.pk)
    assert annotation.predicted_confidence == pytest.approx(0.75)


def test_audit_draws_without_a_scoring_record_no_prediction(project, annotator):
    project.audit_share = 1.0
    project.save()
    make_items(project, 3)

    lease = services.queue_next(project=project, user=annotator)
    assert (lease.is_audit, lease.model_version, lease.predicted_label) == (True, None, None)


# Before the first model, and suggestions withheld


def draw(project, user, n: int) -> list[Lease]:
    """Serve and label n items, returning their leases."""
    leases = []
    for _ in range(n):
        lease = services.queue_next(project=project, user=user)
        submit(lease, user, project)
        leases.append(lease)
    return leases


def test_until_a_model_ranks_the_queue_half_the_draws_are_audit_then_the_projects_share(project, annotator):
    project.audit_share = 0.1
    project.save()
    items = make_items(project, 600)
    random.seed(16)

    no_scoring = draw(project, annotator, 120)
    make_scoring(project, {item: 0.5 for item in items}, model_version=0)  # the seeding: no model yet
    seeding = draw(project, annotator, 120)
    make_scoring(project, {item: i / 600 for i, item in enumerate(items)}, model_version=1)
    ranked = draw(project, annotator, 300)

    # Binomial(120, 0.5): 60, sd 5.5; Binomial(300, 0.1): 30, sd 5.2; bounds 5 sd either way.
    assert 33 <= sum(lease.is_audit for lease in no_scoring) <= 87
    assert 33 <= sum(lease.is_audit for lease in seeding) <= 87
    assert 4 <= sum(lease.is_audit for lease in ranked) <= 56
    audit = sum(lease.is_audit for lease in no_scoring + seeding + ranked)
    assert Annotation.objects.filter(is_audit=True).count() == audit


def test_the_cold_start_share_only_ever_raises_the_projects_share(project):
    scoring = QueueScoring(project=project, model_version=0)
    for share, before, after in [(0.0, 0.5, 0.0), (0.1, 0.5, 0.1), (0.8, 0.8, 0.8)]:
        project.audit_share = share
        assert queue_services.audit_share_effective(project, None) == before
        assert queue_services.audit_share_effective(project, scoring) == before
        assert queue_services.audit_share_effective(project, QueueScoring(project=project, model_version=2)) == after


def test_as_many_ordinary_leases_withhold_their_suggestion_as_audit_leases(project, annotator):
    """w = a / (1 - a): half of the leases without a suggestion are audit leases, at any audit share below 1/2."""
    assert [queue_services.withheld_share(a) for a in (0.0, 0.1, 0.2, 0.5, 0.8, 1.0)] == pytest.approx(
        [0.0, 1 / 9, 0.25, 1.0, 1.0, 1.0]
    )
    project.audit_share = 0.2
    project.save()
    items = make_items(project, 400)
    negative = project.labels.get(name="negative")
    make_scoring(project, {item: i / 400 for i, item in enumerate(items)}, model_version=3, label=negative)
    random.seed(3)

    leases = draw(project, annotator, 400)

    audit = [lease for lease in leases if lease.is_audit]
    ordinary = [lease for lease in leases if not lease.is_audit]
    assert all(Lease.objects.get(pk=lease.pk).suggestion_withheld for lease in audit)
    withheld = sum(Lease.objects.get(pk=lease.pk).suggestion_withheld for lease in ordinary)
    # About 320 ordinary leases at w = 0.25: 80, sd 7.7; bounds 5 sd either way.
    assert abs(withheld - 0.25 * len(ordinary)) <= 5 * (0.25 * 0.75 * len(ordinary)) ** 0.5
    # About half of the leases without a suggestion are audit leases (about 160 of them: sd 0.04).
    assert 0.3 <= len(audit) / (len(audit) + withheld) <= 0.7
    # A withheld suggestion is still the prediction stored with the label: degradation monitoring reads it.
    stored = Annotation.objects.filter(lease__suggestion_withheld=True)
    assert stored.count() == len(audit) + withheld
    assert set(stored.values_list("model_version", "predicted_label_id")) == {(3, negative.pk)}
    assert not stored.filter(predicted_confidence__isnull=True).exists()


def test_undo_leases_the_item_back_with_its_suggestion_withheld_or_shown_as_before(project, annotator):
    items = make_items(project, 2)
    make_scoring(project, {items[0]: 0.9, items[1]: 0.1}, model_version=2)
    for withheld in (True, False):
        lease = services.queue_next(project=project, user=annotator)
        Lease.objects.filter(pk=lease.pk).update(suggestion_withheld=withheld)
        submit(lease, annotator, project)

        again = services.annotation_undo(project=project, user=annotator)

        assert (again.item_id, again.suggestion_withheld, again.is_audit) == (lease.item_id, withheld, False)
        assert services.queue_next(project=project, user=annotator).suggestion_withheld is withheld
        submit(again, annotator, project)


# Held leases


def test_a_held_lease_is_returned_again_and_renewed(project, annotator):
    make_items(project, 5)
    first = services.queue_next(project=project, user=annotator)
    Lease.objects.filter(pk=first.pk).update(expires_at=timezone.now() + timedelta(seconds=30))

    again = services.queue_next(project=project, user=annotator)
    assert again.pk == first.pk
    assert again.expires_at > timezone.now() + timedelta(seconds=project.lease_ttl_seconds - 5)
    again.refresh_from_db()
    assert again.expires_at > timezone.now() + timedelta(seconds=project.lease_ttl_seconds - 5)


def test_exclude_prefetches_up_to_three_leases(project, annotator):
    make_items(project, 6)
    held: list[Lease] = []
    for _ in range(3):
        held.append(services.queue_next(project=project, user=annotator, exclude=[str(x.pk) for x in held]))
    assert len({lease.item_id for lease in held}) == 3

    # At the cap, the oldest held lease that is not excluded comes back, and then the oldest.
    assert services.queue_next(project=project, user=annotator, exclude=[held[0].pk]).pk == held[1].pk
    assert services.queue_next(project=project, user=annotator, exclude=[x.pk for x in held]).pk == held[0].pk
    assert Lease.objects.filter(user=annotator, status=Lease.Status.ACTIVE).count() == 3


def test_bad_exclude_is_a_domain_error(project, annotator):
    make_items(project, 1)
    with pytest.raises(DomainError, match="lease ids"):
        services.queue_next(project=project, user=annotator, exclude=["not-a-uuid"])


# Expiry, overlap and skips


def test_an_expired_lease_is_served_to_someone_else_and_cannot_be_kept(project, annotator):
    (item,) = make_items(project, 1)
    other = expert(project, "other")
    lease = services.queue_next(project=project, user=annotator)
    assert services.queue_next(project=project, user=other) is None

    expire(lease)
    taken = services.queue_next(project=project, user=other)
    assert taken.item == item

    with pytest.raises(Conflict, match="expired and it may have gone to someone else") as renew_error:
        services.lease_renew(lease_id=lease.pk, user=annotator)
    with pytest.raises(Conflict, match="expired") as submit_error:
        submit(lease, annotator, project)
    assert renew_error.value.status_code == submit_error.value.status_code == 409
    submit(taken, other, project)
    assert list(Annotation.objects.values_list("annotator__username", flat=True)) == ["other"]


def test_an_expired_lease_nobody_took_can_still_be_renewed_and_submitted(project, annotator):
    make_items(project, 2)
    lease = services.queue_next(project=project, user=annotator)
    expire(lease)

    renewed = services.lease_renew(lease_id=lease.pk, user=annotator)
    assert renewed.expires_at > timezone.now()
    expire(lease)
    annotation = submit(lease, annotator, project)
    assert annotation.item_id == lease.item_id
    assert Item.objects.get(pk=lease.item_id).label_count == 1


def test_an_expired_lease_is_served_again_to_its_own_expert(project, annotator):
    (item,) = make_items(project, 1)
    old = services.queue_next(project=project, user=annotator)
    expire(old)

    new = services.queue_next(project=project, user=annotator)
    assert (new.item, new.pk != old.pk) == (item, True)
    old.refresh_from_db()
    assert old.status == Lease.Status.RELEASED


def test_overlap_two_serves_each_item_to_two_distinct_experts(project, annotator):
    project.overlap = 2
    project.save()
    (item,) = make_items(project, 1)
    second, third = expert(project, "second"), expert(project, "third")

    first_lease = services.queue_next(project=project, user=annotator)
    assert services.queue_next(project=project, user=annotator, exclude=[first_lease.pk]) is None
    second_lease = services.queue_next(project=project, user=second)
    assert services.queue_next(project=project, user=third) is None
    assert (first_lease.item, second_lease.item) == (item, item)

    submit(first_lease, annotator, project)
    item.refresh_from_db()
    assert (item.label_count, item.queue_done) == (1, False)
    assert services.queue_next(project=project, user=annotator) is None  # never twice to one expert
    assert services.queue_next(project=project, user=third) is None  # the second slot is still leased
    submit(second_lease, second, project)
    item.refresh_from_db()
    assert (item.label_count, item.queue_done) == (2, True)
    assert services.queue_next(project=project, user=third) is None
    assert set(Annotation.objects.values_list("annotator__username", flat=True)) == {"annotator", "second"}


def test_an_item_the_expert_labeled_elsewhere_is_not_served_to_them(project, annotator):
    project.overlap = 2
    project.save()
    (item,) = make_items(project, 1)
    AnnotationFactory(item=item, annotator=annotator, label=project.labels.first(), source=Annotation.Source.IMPORT)

    assert services.queue_next(project=project, user=annotator) is None
    assert services.queue_next(project=project, user=expert(project, "second")).item == item


def test_a_skipped_item_is_never_served_to_that_expert_again(project, annotator):
    a, b = make_items(project, 2)
    make_scoring(project, {a: 0.9, b: 0.1})

    lease = services.queue_next(project=project, user=annotator)
    assert services.lease_skip(lease_id=lease.pk, user=annotator).status == Lease.Status.SKIPPED
    assert services.lease_skip(lease_id=lease.pk, user=annotator).status == Lease.Status.SKIPPED
    following = services.queue_next(project=project, user=annotator)
    assert following.item == b
    submit(following, annotator, project)
    assert services.queue_next(project=project, user=annotator) is None
    assert services.queue_next(project=project, user=expert(project, "other")).item == a
    with pytest.raises(Conflict):
        submit(lease, annotator, project)


def test_a_released_item_goes_back_to_the_pool(project, annotator):
    (item,) = make_items(project, 1)
    lease = services.queue_next(project=project, user=annotator)
    released = services.lease_release(lease_id=lease.pk, user=annotator)
    assert released.status == Lease.Status.RELEASED
    assert services.lease_release(lease_id=lease.pk, user=annotator).status == Lease.Status.RELEASED

    assert services.queue_next(project=project, user=expert(project, "other")).item == item
    with pytest.raises(Conflict, match="given back"):
        services.lease_renew(lease_id=lease.pk, user=annotator)


# Submit


def test_submit_is_idempotent_by_lease(project, annotator):
    (item,) = make_items(project, 1)
    negative, positive = project.labels.order_by("order")
    lease = services.queue_next(project=project, user=annotator)

    first, created = services.annotation_submit_or_get(
        lease_id=lease.pk, user=annotator, label_id=negative.pk, time_spent_ms=1200
    )
    again, created_again = services.annotation_submit_or_get(
        lease_id=str(lease.pk), user=annotator, label_id=positive.pk
    )

    assert (created, created_again, again.pk, again.label) == (True, False, first.pk, negative)
    assert Annotation.objects.count() == 1
    item.refresh_from_db()
    assert (item.label_count, item.queue_done) == (1, True)
    assert Annotation.objects.get().time_spent_ms == 1200
    assert Lease.objects.get(pk=lease.pk).status == Lease.Status.SUBMITTED


def test_submit_takes_the_label_by_name(project, annotator):
    make_items(project, 1)
    lease = services.queue_next(project=project, user=annotator)
    annotation = services.annotation_submit(lease_id=lease.pk, user=annotator, label_name="positive")
    assert annotation.label.name == "positive"


@pytest.mark.parametrize("label", [{}, {"label_name": "neutral"}, {"label_id": 10**9}, "other project"])
def test_submit_refuses_a_label_outside_the_project(project, annotator, tabular_project, label):
    make_items(project, 1)
    lease = services.queue_next(project=project, user=annotator)
    if label == "other project":
        label = {"label_id": tabular_project.labels.first().pk}
    with pytest.raises(DomainError) as error:
        services.annotation_submit(lease_id=lease.pk, user=annotator, **label)
    assert error.value.status_code == 400
    assert Annotation.objects.count() == 0
    assert Lease.objects.get(pk=lease.pk).status == Lease.Status.ACTIVE


def test_someone_elses_lease_is_not_found(project, annotator):
    make_items(project, 1)
    lease = services.queue_next(project=project, user=annotator)
    other = expert(project, "other")
    for call in (services.lease_renew, services.lease_skip, services.lease_release):
        with pytest.raises(NotFound):
            call(lease_id=lease.pk, user=other)
    with pytest.raises(NotFound):
        submit(lease, other, project)
    assert Lease.objects.get(pk=lease.pk).status == Lease.Status.ACTIVE


def test_a_removed_member_can_no_longer_use_their_lease(project, annotator):
    make_items(project, 1)
    lease = services.queue_next(project=project, user=annotator)
    Membership.objects.filter(project=project, user=annotator).delete()
    with pytest.raises(NotFound):
        submit(lease, annotator, project)


def test_submit_sends_labels_added_after_commit(project, annotator, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(celery_app, "send_task", send_task_fake(sent))
    make_items(project, 1)
    lease = services.queue_next(project=project, user=annotator)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        submit(lease, annotator, project)
        submit(lease, annotator, project)
    assert len(callbacks) == 1
    time.sleep(services.LABELS_ADDED_COALESCE_SECONDS + 0.3)
    assert sent == [("learner.labels_added", [project.pk])]


def test_labels_in_quick_succession_send_one_labels_added_after_the_last(
    project, annotator, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(celery_app, "send_task", send_task_fake(sent))
    make_items(project, 3)
    window = services.LABELS_ADDED_COALESCE_SECONDS

    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):
            submit(services.queue_next(project=project, user=annotator), annotator, project)
    # Nothing yet: the message goes out when the window closes, and the task then counts both labels.
    assert sent == []
    time.sleep(window + 0.3)
    assert sent == [("learner.labels_added", [project.pk])]

    with django_capture_on_commit_callbacks(execute=True):
        submit(services.queue_next(project=project, user=annotator), annotator, project)
    time.sleep(window + 0.3)
    assert len(sent) == 2 and Annotation.objects.filter(annotator=annotator).count() == 3


def test_a_broker_outage_does_not_lose_the_label(project, annotator, monkeypatch, django_capture_on_commit_callbacks):
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(celery_app, "send_task", broker_down)
    make_items(project, 1)
    lease = services.queue_next(project=project, user=annotator)
    with django_capture_on_commit_callbacks(execute=True):
        annotation = submit(lease, annotator, project)
    assert Annotation.objects.get().pk == annotation.pk


# Undo


def test_undo_removes_the_last_label_and_leases_the_item_back(project, annotator):
    project.audit_share = 1.0
    project.save()
    a, b = make_items(project, 2)
    make_scoring(project, {a: 0.9, b: 0.1}, model_version=2)
    first = services.queue_next(project=project, user=annotator)
    submit(first, annotator, project)
    second = services.queue_next(project=project, user=annotator)
    submit(second, annotator, project)
    assert services.queue_next(project=project, user=annotator) is None

    lease = services.annotation_undo(project=project, user=annotator)

    assert (lease.item_id, lease.status, lease.is_audit, lease.model_version) == (
        second.item_id, Lease.Status.ACTIVE, True, 2
    )
    assert lease.predicted_label_id == second.predicted_label_id
    undone = Item.objects.get(pk=second.item_id)
    assert (undone.label_count, undone.queue_done) == (0, False)
    assert list(Annotation.objects.values_list("item_id", flat=True)) == [first.item_id]
    assert Lease.objects.get(pk=second.pk).status == Lease.Status.RELEASED
    with pytest.raises(Conflict):
        submit(second, annotator, project)  # a late retry of the undone submit stores nothing

    assert services.queue_next(project=project, user=annotator).pk == lease.pk
    relabeled = submit(lease, annotator, project, label_name="positive")
    assert (relabeled.is_audit, relabeled.model_version) == (True, 2)
    assert Item.objects.get(pk=second.item_id).queue_done


def test_undo_with_nothing_to_undo_returns_none(project, annotator):
    make_items(project, 1)
    assert services.annotation_undo(project=project, user=annotator) is None
    imported = AnnotationFactory(
        item=Item.objects.get(), annotator=annotator, label=project.labels.first(), source=Annotation.Source.IMPORT
    )
    assert services.annotation_undo(project=project, user=annotator) is None
    assert Annotation.objects.get() == imported


def test_undo_under_overlap_reopens_the_item(project, annotator):
    project.overlap = 2
    project.save()
    (item,) = make_items(project, 1)
    other = expert(project, "other")
    submit(services.queue_next(project=project, user=annotator), annotator, project)
    submit(services.queue_next(project=project, user=other), other, project)
    item.refresh_from_db()
    assert item.queue_done

    services.annotation_undo(project=project, user=other)
    item.refresh_from_db()
    assert (item.label_count, item.queue_done) == (1, False)
    assert services.queue_next(project=project, user=expert(project, "third")) is None  # other holds it again


# Progress


def test_progress_counts_the_pool_labels_and_todays_work(project, annotator):
    project.overlap = 2
    project.save()
    a, b, c = make_items(project, 3)
    other = expert(project, "other")
    assert selectors.queue_progress(project, annotator) == {
        "pool": 3, "labeled": 0, "done": 0, "mine_today": 0, "scoring": None
    }
    scoring = make_scoring(project, {a: 0.9, b: 0.5, c: 0.1}, model_version=8)
    for user in (annotator, other):
        submit(services.queue_next(project=project, user=user), user, project)
    submit(services.queue_next(project=project, user=annotator), annotator, project)
    old = AnnotationFactory(item=c, annotator=annotator, label=project.labels.first())
    Annotation.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))

    progress = selectors.queue_progress(project, annotator)
    assert progress == {
        "pool": 3, "labeled": 2, "done": 1, "mine_today": 2,
        "scoring": {"model_version": 8, "finished_at": scoring.finished_at, "strategy": project.query_strategy},
    }


def test_progress_of_a_large_pool_is_reused_for_a_while(project, annotator, monkeypatch):
    from annotations.selectors import queue as queue_selectors

    monkeypatch.setattr(queue_selectors, "POOL_CACHED_FROM", 3)
    make_items(project, 2)
    assert selectors.queue_progress(project, annotator)["pool"] == 2
    ItemFactory(project=project)
    assert selectors.queue_progress(project, annotator)["pool"] == 3  # small: counted every time
    ItemFactory(project=project)
    assert selectors.queue_progress(project, annotator)["pool"] == 3  # large: the count of a moment ago


# Query counts (each statement is indexed; see the EXPLAIN figures in the report)


def test_next_and_submit_take_a_handful_of_queries(project, annotator, django_assert_max_num_queries):
    project.audit_share = 0.0
    items = make_items(project, 50)
    make_scoring(project, {item: i / 50 for i, item in enumerate(items)})
    LabelFactory(project=project, name="neutral")

    # Held-lease lookup, scoring, savepoint, locked candidate, re-check, insert, release, suggested label.
    with django_assert_max_num_queries(8):
        lease = services.queue_next(project=project, user=annotator)
    with django_assert_max_num_queries(2):
        assert services.queue_next(project=project, user=annotator).pk == lease.pk
    label_id = project.labels.first().pk
    # Lease, label, savepoint, item lock, lease update, annotation insert, item update, score delete, release.
    with django_assert_max_num_queries(9):
        submit(lease, annotator, project, label_id=label_id)
    with django_assert_max_num_queries(2):
        submit(lease, annotator, project, label_id=label_id)
    project.audit_share = 1.0
    # An audit draw also looks up the item's score, and wraps around once when its random start is past every key.
    with django_assert_max_num_queries(10):
        assert services.queue_next(project=project, user=annotator).is_audit
    with django_assert_max_num_queries(4):
        selectors.queue_progress(project, annotator)


def test_raising_the_overlap_reopens_labeled_items_and_asks_for_a_rescore(
    project, annotator, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(celery_app, "send_task", send_task_fake(sent))
    item = make_items(project, 1)[0]
    submit(services.queue_next(project=project, user=annotator), annotator, project)
    colleague = expert(project, "colleague")
    assert services.queue_next(project=project, user=colleague) is None  # overlap 1: done

    project.overlap = 2
    project.save()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.project_overlap_apply(project) == 1

    assert sent[-1] == ("learner.score_pool", [project.pk])
    lease = services.queue_next(project=project, user=colleague)
    assert lease.item == item  # a second expert now labels it
    assert services.queue_next(project=project, user=annotator) is None  # never twice to the first
    submit(lease, colleague, project)
    assert Item.objects.get(pk=item.pk).queue_done

    project.overlap = 3
    project.save()
    services.project_overlap_apply(project)
    project.overlap = 1
    project.save()
    assert services.project_overlap_apply(project) == 1
    assert Item.objects.get(pk=item.pk).queue_done
