"""Fixtures of learner tests: labeled, featurised projects, and inline Celery."""
import factory
import numpy as np
import pytest
from celery import current_app

from annotations.models import Project
from learner.models import LiveModel, ModelVersion, SwapHistory
from learner.services.features import features_compute_chunk
from tests.factories import AnnotationFactory, ItemFactory, ModelVersionFactory, SwapHistoryFactory


@pytest.fixture
def eager_celery():
    """Run tasks sent with delay/apply_async inline, as a worker would."""
    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = False


def blob_items(project, rng, n, *, shift=0.0):
    """Items of two well-separated classes (even = negative, odd = positive), with features."""
    items = []
    for i in range(n):
        centre = (2.5 if i % 2 else -2.5) + shift
        item = ItemFactory(project=project, values=[float(v) for v in rng.normal(centre, 1.0, size=2)], text="")
        items.append(item)
    features_compute_chunk(project.pk, [item.pk for item in items])
    return items


@pytest.fixture
def labeled_blobs(tabular_project, manager):
    """Two well-separated classes: 120 training labels and 80 audit labels, all correct."""
    project: Project = tabular_project
    project.feature_names = ["x0", "x1"]
    project.gate_min_audit = 30
    project.save()
    negative, positive = project.labels.order_by("order")[:2]
    for i, item in enumerate(blob_items(project, np.random.default_rng(7), 200)):
        AnnotationFactory(item=item, annotator=manager, label=positive if i % 2 else negative, is_audit=i >= 120)
    return project




def versions_made(project: Project, count: int, live: int, actor) -> list[ModelVersion]:
    """``count`` evaluated versions made without training; the first half went live one after another, then a
    manager rolled back to ``live``, which is live now (so the history holds count // 2 + 1 swaps)."""
    promoted = count // 2
    versions = ModelVersion.objects.bulk_create(ModelVersionFactory.build_batch(
        count, project=project, number=factory.Iterator(range(1, count + 1)),
        status=factory.Iterator(["live" if n == live else "retired" if n <= promoted else "not_promoted"
                                 for n in range(1, count + 1)]),
    ))
    swaps = [SwapHistoryFactory.build(project=project, to_version=v, from_version=versions[i - 1] if i else None)
             for i, v in enumerate(versions[:promoted])]
    swaps.append(SwapHistoryFactory.build(project=project, to_version=versions[live - 1],
                                          from_version=versions[promoted - 1], trigger="rollback", actor=actor,
                                          reason="back to a good one"))
    SwapHistory.objects.bulk_create(swaps)
    LiveModel.objects.update_or_create(project=project, defaults={"version": versions[live - 1]})
    return versions


@pytest.fixture
def many_versions(tabular_project, manager):
    """120 versions, the live one v5 (on the third page of 50), and a history of 61 swaps."""
    versions_made(tabular_project, 120, live=5, actor=manager)
    return tabular_project
