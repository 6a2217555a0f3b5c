"""Fixtures of learner tests: labeled, featurised projects, and inline Celery."""
import numpy as np
import pytest
from celery import current_app

from annotations.models import Project
from learner.services.features import features_compute_chunk
from tests.factories import AnnotationFactory, ItemFactory


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


