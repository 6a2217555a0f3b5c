"""A training run's label ids: stored as ranges changed from a base run, read back exactly, in space that grows
about linearly with the labels where whole lists grew with their square."""
import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotations.models import Annotation
from annotations.selectors.labels import label_snapshot
from learner.ml import lineage
from learner.models import TrainingRun
from learner.selectors import training_run_label_ids, training_run_lineage_next
from learner.services.training import training_run_execute, training_run_request
from tests.factories import AnnotationFactory, ItemFactory, ProjectFactory


def test_ranges_round_trip_and_a_change_is_stored_only_when_smaller():
    ids = [9, 3, 4, 5, 12, 10, 11, 4]
    assert lineage.ranges(ids) == [[3, 5], [9, 12]]
    assert lineage.expanded(lineage.ranges(ids)) == [3, 4, 5, 9, 10, 11, 12]
    assert lineage.ranges([]) == []

    whole = lineage.stored(range(1, 1001))
    assert whole == {"base": None, "added": [[1, 1000]], "removed": [], "count": 1000}
    # Every other id: a change of one id from the base is far smaller than the 500 ranges of the whole.
    base = list(range(0, 1000, 2))
    change = lineage.stored(base[1:] + [1000], base_id=7, base_ids=base, chain=3)
    assert change == {"base": 7, "added": [[1000, 1000]], "removed": [[0, 0]], "count": 500}
    assert lineage.replayed([lineage.stored(base), change]) == base[1:] + [1000]
    # Consecutive ids: the whole is one range, so a change saves nothing.
    assert lineage.stored(range(1, 1002), base_id=7, base_ids=range(1, 1001))["base"] is None
    # A chain already MAX_CHAIN long ends in a keyframe.
    assert lineage.stored(base[1:], base_id=7, base_ids=base, chain=lineage.MAX_CHAIN)["base"] is None
    with pytest.raises(ValueError, match="starts with a keyframe"):
        lineage.replayed([change])


@pytest.mark.django_db
def test_each_run_reads_back_exactly_the_labels_it_trained_on(labeled_blobs, manager):
    first = training_run_execute(training_run_request(project_id=labeled_blobs.pk, trigger="manual", evidence={}).pk)
    assert training_run_label_ids(first) == label_snapshot(labeled_blobs.pk).annotation_ids
    # Another project's labels come between this project's, and one of this project's is undone.
    other = ProjectFactory()
    for _ in range(3):
        AnnotationFactory(item=ItemFactory(project=other))
        AnnotationFactory(item=ItemFactory(project=labeled_blobs), annotator=manager,
                          label=labeled_blobs.labels.first())
    undone = Annotation.objects.filter(item__project=labeled_blobs).order_by("pk").values_list("pk", flat=True)[5]
    Annotation.objects.filter(pk=undone).delete()
    second = training_run_execute(training_run_request(project_id=labeled_blobs.pk, trigger="manual", evidence={}).pk)

    expected = label_snapshot(labeled_blobs.pk).annotation_ids
    assert training_run_label_ids(second) == expected and undone not in expected
    stored = TrainingRun.objects.filter(pk=second.pk).values_list("label_lineage", flat=True).get()
    assert stored["base"] == first.pk and stored["removed"] == [[undone, undone]]
    assert len(stored["added"]) == 3 and stored["count"] == len(expected)
    # The first run's ids are as they were when it trained.
    assert undone in training_run_label_ids(first)


@pytest.mark.django_db
def test_a_run_after_every_label_stores_little_and_is_read_in_one_query(labeled_blobs, manager):
    """600 runs, one per label, with another project's labels in between: whole lists would hold 300,300
    ids; the ranges hold a few per run, keyframes every MAX_CHAIN runs, and each run reads back exactly."""
    project, other = labeled_blobs, ProjectFactory()
    label = project.labels.first()
    rng = np.random.default_rng(3)
    expected: dict[int, list[int]] = {}
    for _ in range(600):
        if rng.random() < 0.5:
            AnnotationFactory(item=ItemFactory(project=other))
        AnnotationFactory(item=ItemFactory(project=project), annotator=manager, label=label)
        run = TrainingRun.objects.create(project=project, trigger=TrainingRun.Trigger.COUNT,
                                         status=TrainingRun.Status.KEPT_CHAMPION)
        ids = sorted(Annotation.objects.filter(item__project=project).values_list("pk", flat=True))
        run.label_lineage = training_run_lineage_next(project.pk, run.pk, ids)
        run.save(update_fields=["label_lineage"])
        expected[run.pk] = ids

    stored = dict(TrainingRun.objects.filter(project=project).values_list("pk", "label_lineage"))
    keyframes = [pk for pk, s in stored.items() if s["base"] is None]
    assert len(keyframes) == 6  # the first run, then one after every MAX_CHAIN changes
    numbers = sum(2 * (len(s["added"]) + len(s["removed"])) for s in stored.values())
    assert sum(len(ids) for ids in expected.values()) == 300_300  # what whole lists held: 200 labels, then 1 more a run
    assert numbers < 12_000
    for pk in list(expected)[::37] + [max(expected)]:
        run = TrainingRun.objects.get(pk=pk)
        with CaptureQueriesContext(connection) as captured:
            assert training_run_label_ids(run) == expected[pk]
        assert len(captured) == 1
