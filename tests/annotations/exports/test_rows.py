"""Export rows: one consistent snapshot while experts keep labeling."""
import json
import threading
import time

import pytest
from django.db import connection, connections
from rest_framework.test import APIClient

from annotations import services
from annotations.models import Annotation, Item, Membership, Project
from tests.annotations.exports.support import export_url
from tests.factories import AnnotationFactory, ItemFactory, MembershipFactory, ProjectFactory, UserFactory


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres  # one REPEATABLE READ snapshot; SQLite reads by key without one
def test_export_while_experts_label_is_one_snapshot(settings):
    """Experts label through the queue service while a streamed export is read slowly: no row twice, none torn,
    and nothing submitted after the stream started appears in it."""
    settings.LABELHUB_EXPORT_BATCH = 20
    project = ProjectFactory(kind=Project.Kind.TEXT, audit_share=0.0)
    labels = [project.labels.create(name=n, order=i) for i, n in enumerate(["no", "yes"])]
    boss = UserFactory(username="boss")
    MembershipFactory(project=project, user=boss, role=Membership.Role.MANAGER)
    experts = [UserFactory(username=f"expert-{i}") for i in range(3)]
    for expert in experts:
        MembershipFactory(project=project, user=expert)
    items = [ItemFactory(project=project, external_id=f"i{n:04d}") for n in range(400)]
    for n, item in enumerate(items[:200]):
        AnnotationFactory(item=item, annotator=boss, label=labels[n % 2])
    Item.objects.filter(pk__in=[i.pk for i in items[:200]]).update(label_count=1, queue_done=True)

    submitted: list[tuple[int, float]] = []
    stop = threading.Event()

    def label(expert) -> None:
        try:
            while not stop.is_set():
                lease = services.queue_next(project=project, user=expert, exclude=[])
                if lease is None:
                    return
                annotation, _ = services.annotation_submit_or_get(lease_id=lease.pk, user=expert, label_id=labels[1].pk)
                submitted.append((annotation.pk, time.monotonic()))
        finally:
            connections.close_all()

    client = APIClient()
    client.force_authenticate(boss)
    response = client.get(export_url(project, format="jsonl", mode="all"))
    stream = iter(response.streaming_content)
    chunks = [next(stream)]  # the snapshot is taken here
    started = time.monotonic()
    threads = [threading.Thread(target=label, args=(expert,)) for expert in experts]
    for thread in threads:
        thread.start()
    while not submitted:
        time.sleep(0.01)
    for chunk in stream:
        chunks.append(chunk)
        time.sleep(0.02)
    stop.set()
    for thread in threads:
        thread.join()

    rows = [json.loads(line) for line in b"".join(chunks).decode().splitlines()]
    ids = [row["annotation_id"] for row in rows]
    assert len(ids) == len(set(ids)), "a row was exported twice"
    after = {pk for pk, at in submitted if at > started}
    assert after, "no expert labeled during the export"
    assert not after & set(ids), "labels stored after the snapshot leaked into the export"
    assert len(rows) == 200
    stored = dict(Annotation.objects.filter(pk__in=ids).values_list("pk", "label__name"))
    assert all(stored[row["annotation_id"]] == row["label"] and row["annotator"] == "boss" for row in rows)
    assert connection.vendor == "postgresql"
