"""Export: every format parses, final labels follow the agreed rule, CSV cannot inject formulas, access is managers'."""
import csv
import io
import json
import threading
import time
from datetime import datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from annotations import services
from annotations.models import Annotation, Item, Membership, Project
from tests.factories import (
    AnnotationFactory, ItemFactory, MembershipFactory, ProjectFactory, UserFactory, api_token_for,
)

pytestmark = pytest.mark.django_db


def export_url(project, **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return reverse("api-project-export", args=[project.pk]) + (f"?{query}" if query else "")


def body(response) -> str:
    return b"".join(response.streaming_content).decode()


@pytest.fixture
def api(manager) -> APIClient:
    client = APIClient()
    client.force_authenticate(manager)
    return client


@pytest.fixture
def labeled(text_project, manager, annotator):
    """Three items: a majority, a tie (goes to the earliest) and a reviewer's resolution; one formula-like text."""
    negative, positive = text_project.labels.order_by("order")
    third = UserFactory(username="third")
    a = ItemFactory(project=text_project, external_id="a", text="=HYPERLINK(\"http://evil\")", metadata={"src": "x"})
    b = ItemFactory(project=text_project, external_id="b", text="+plain")
    c = ItemFactory(project=text_project, external_id="c", text="-minus")
    AnnotationFactory(item=a, annotator=manager, label=positive, is_audit=True, model_version=3,
                      predicted_label=negative, predicted_confidence=0.7)
    AnnotationFactory(item=a, annotator=annotator, label=negative)
    AnnotationFactory(item=a, annotator=third, label=negative)
    AnnotationFactory(item=b, annotator=annotator, label=positive)
    AnnotationFactory(item=b, annotator=manager, label=negative)
    AnnotationFactory(item=c, annotator=annotator, label=negative)
    Item.objects.filter(pk=c.pk).update(resolved_label=positive, resolved_at=timezone.now())
    return text_project


def test_final_mode_gives_one_row_per_item_with_the_agreed_final_label(api, labeled):
    response = api.get(export_url(labeled, format="jsonl", mode="final"))

    assert response.status_code == 200 and response["Content-Type"] == "application/x-ndjson"
    rows = [json.loads(line) for line in body(response).splitlines()]
    by_id = {row["external_id"]: row for row in rows}
    assert (by_id["a"]["label"], by_id["a"]["label_source"], by_id["a"]["annotations"]) == ("negative", "majority", 3)
    assert by_id["b"]["label"] == "positive"  # a tie goes to the earliest annotation
    assert (by_id["c"]["label"], by_id["c"]["label_source"]) == ("positive", "review")
    assert by_id["a"]["metadata"] == {"src": "x"} and "is_audit" not in by_id["a"]
    assert response["X-Export-Next-Since"]


def test_all_mode_with_predictions_and_audit(api, labeled):
    response = api.get(export_url(labeled, format="json", mode="all", include_prediction="true", include_audit="true"))

    rows = json.loads(body(response))
    assert len(rows) == 6 and len({row["annotation_id"] for row in rows}) == 6
    first = min(rows, key=lambda row: row["annotation_id"])
    assert (first["annotator"], first["label"], first["is_audit"]) == ("manager", "positive", True)
    assert (first["model_version"], first["predicted_label"], first["confidence"]) == (3, "negative", 0.7)
    stored = Annotation.objects.get(pk=first["annotation_id"])
    assert datetime.fromisoformat(first["created_at"]) == stored.created_at
    assert datetime.fromisoformat(first["updated_at"]) == stored.updated_at


def test_csv_parses_and_neutralises_formulas(api, labeled):
    response = api.get(export_url(labeled, format="csv", mode="all"))

    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body(response))))
    assert len(rows) == 6
    texts = {row["text"] for row in rows}
    assert texts == {"'=HYPERLINK(\"http://evil\")", "'+plain", "'-minus"}
    assert all(not row["text"].startswith(("=", "+", "-", "@")) for row in rows)


def test_label_studio_tasks_have_data_and_choices(api, labeled):
    response = api.get(export_url(labeled, format="labelstudio", mode="all", include_prediction="1"))

    tasks = json.loads(body(response))
    assert len(tasks) == 3
    task = next(t for t in tasks if t["meta"]["external_id"] == "a")
    assert task["data"] == {"text": "=HYPERLINK(\"http://evil\")"}
    assert len(task["annotations"]) == 3
    result = task["annotations"][0]["result"][0]
    assert result["type"] == "choices" and result["from_name"] == "label" and result["to_name"] == "text"
    assert result["value"]["choices"] == ["positive"]
    assert task["predictions"][0]["result"][0]["value"]["choices"] == ["negative"]


def test_since_keeps_later_changes_and_the_header_gives_the_next_cursor(api, labeled):
    first = api.get(export_url(labeled, mode="all"))
    body(first)
    Annotation.objects.update(updated_at=timezone.now() - timedelta(hours=1))
    item = ItemFactory(project=labeled, external_id="d")
    AnnotationFactory(item=item, annotator=UserFactory(), label=labeled.labels.first())

    since = first["X-Export-Next-Since"]
    rows = [json.loads(line) for line in body(api.get(export_url(labeled, mode="all", since=since.replace("+", "%2B"))))
            .splitlines()]

    assert [row["external_id"] for row in rows] == ["d"]


def test_bad_options_are_400_with_field_errors(api, labeled):
    response = api.get(export_url(labeled, format="xml", mode="some", since="yesterday"))

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"format", "mode", "since"}


def test_annotator_token_cannot_read_or_export_another_project(labeled, annotator):
    other = ProjectFactory(kind=Project.Kind.TEXT)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_for(annotator)}")

    assert client.get(export_url(other)).status_code == 404
    assert client.get(reverse("api-annotations", args=[other.pk])).status_code == 404
    assert client.get(reverse("api-project", args=[other.pk])).status_code == 404
    # In their own project an annotator may label but not export.
    assert client.get(export_url(labeled)).status_code == 404
    assert client.get(reverse("api-project", args=[labeled.pk])).status_code == 200


def test_image_links_are_signed_and_expire(image_project, manager, settings, tmp_path):
    from django.core.files.base import ContentFile

    item = ItemFactory(project=image_project, external_id="img", text="")
    item.image.save("x.png", ContentFile(b"\x89PNG fake"), save=True)
    AnnotationFactory(item=item, annotator=manager, label=image_project.labels.first())
    client = APIClient()
    client.force_authenticate(manager)

    row = json.loads(body(client.get(export_url(image_project))).splitlines()[0])

    url = row["image_url"]
    assert url.startswith("http://testserver/items/") and "sig=" in url
    anonymous = APIClient()
    assert anonymous.get(url).status_code == 200
    assert anonymous.get(url.replace("sig=", "sig=x")).status_code == 302  # to the login page
    settings.LABELHUB_EXPORT_URL_MAX_AGE = -1
    assert anonymous.get(url).status_code == 302


def test_command_writes_the_export_and_fails_in_one_line(labeled, tmp_path):
    out = tmp_path / "labels.jsonl"
    call_command("export_labels", "--project", labeled.slug, "--format", "jsonl", "--mode", "all",
                 "--output", str(out))
    assert len(out.read_text().splitlines()) == 6

    with pytest.raises(CommandError, match="No project"):
        call_command("export_labels", "--project", "nope", "--format", "csv")
    with pytest.raises(CommandError, match="not an ISO 8601"):
        call_command("export_labels", "--project", labeled.slug, "--format", "csv", "--since", "soon")
    for since in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"):  # out of range in UTC: a traceback
        with pytest.raises(CommandError, match="out of range"):
            call_command("export_labels", "--project", labeled.slug, "--format", "csv", "--since", since)


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


@pytest.mark.parametrize("kind", ["text", "tabular", "image"])
def test_fast_rows_of_mode_all_equal_the_generic_records(kind, manager):
    """Mode all writes each row straight to JSON and CSV; it must say exactly what ``records`` says."""
    from annotations import exporting
    from annotations.selectors import exports

    project = ProjectFactory(kind=kind, feature_names=["x", "y"] if kind == "tabular" else [])
    labels = [project.labels.create(name=n, order=i) for i, n in enumerate(["=no", "yes"])]
    item = ItemFactory(project=project, text="=cmd|' /C calc'!A0", values=[1.5, -2.0] if kind == "tabular" else None,
                       image="items/1/x.png" if kind == "image" else "", metadata={"k": "ü"})
    AnnotationFactory(item=item, annotator=manager, label=labels[0], is_audit=True, time_spent_ms=1200,
                      model_version=2, predicted_label=labels[1], predicted_confidence=0.25)
    AnnotationFactory(item=item, annotator=UserFactory(username="@evil"), label=labels[1])
    for include in (False, True):
        options = exports.ExportOptions(mode="all", include_prediction=include, include_audit=include)
        ctx = exporting.ExportContext(kind, {label.pk: label.name for label in labels}, ["x", "y"],
                                      lambda pk: f"/items/{pk}/image?sig=s", options)
        rows = [row for batch in exports.export_rows(project, options) for row in batch]
        items = [item for batch in exports.group_items(iter([rows])) for item in batch]
        generic = list(exporting.records(items, ctx))
        fast = [json.loads(exporting._annotation_json(ctx)(row)) for row in rows]
        assert fast == json.loads(json.dumps(generic))
        head = exporting.columns(ctx)

        def norm(cell) -> object:  # JSON cells may differ in spacing only
            text = "" if cell is None else str(cell)
            return json.loads(text) if text.startswith(("{", "[")) else text

        for row in rows:  # the fast CSV line is exactly csv.writer's of the cells
            buffer = io.StringIO()
            csv.writer(buffer).writerow(exporting._annotation_cells(ctx)(row))
            assert exporting._annotation_csv(ctx)(row) == buffer.getvalue()
        cells = [[norm(c) for c in exporting._annotation_cells(ctx)(row)] for row in rows]
        expected = [[norm(exporting._csv_cell(record.get(key))) for key in head] for record in generic]
        assert cells == expected


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json", "labelstudio"])
@pytest.mark.parametrize("mode", ["final", "all"])
def test_every_format_and_mode_parses(api, labeled, fmt, mode):
    response = api.get(export_url(labeled, format=fmt, mode=mode, include_prediction="true", include_audit="true"))
    text = body(response)

    assert response.status_code == 200
    expected = 3 if mode == "final" or fmt == "labelstudio" else 6
    if fmt == "jsonl":
        rows = [json.loads(line) for line in text.splitlines()]
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert all(not value.startswith(("=", "+", "-", "@")) for row in rows for value in row.values())
    else:
        rows = json.loads(text)
    assert len(rows) == expected
    if fmt == "labelstudio":
        assert all({"id", "data", "annotations", "meta"} <= set(task) for task in rows)
        assert all(r["type"] == "choices" for task in rows for a in task["annotations"] for r in a["result"])


@pytest.mark.postgres  # PostgreSQL writes these exports itself
@pytest.mark.parametrize("kind", ["text", "tabular"])
def test_rows_postgresql_writes_equal_the_python_writers_byte_for_byte(kind, manager):
    """Mode all as JSONL, JSON and CSV comes out of PostgreSQL; it must be exactly what the Python writers make of the rows,
    for texts that need escaping, quoting or neutralising, and for floats PostgreSQL spells differently."""
    from annotations import exporting
    from annotations.selectors import export_sql, exports

    project = ProjectFactory(kind=kind)
    labels = [project.labels.create(name=n, order=i) for i, n in enumerate(['=no "way"', "yes, ü", "-1"])]
    texts = ['say "hi", then\nleave\r\n', "back\\slash \t tab \x01\x1f \b\f", "", "+1", "\\.", "ü € 😀",
             "plain", "@at", "a,b", "\r starts with CR", "ends with \\", "\u2028 separator"]
    values = [[1.5, -2.0], [0.1, 1e-07], None, [], [1e300, -0.0]]
    metadata = [{"k": "ü", "n": [1, {"x": None}]}, {}, {"q": 'a "b", c\nd'}, {"t": "\\"}]
    confidences = [None, 0.0, 1.0, 0.25, 1e-05, 1 / 3, 1e15 + 0.5, 1e15, 5e15, 2e16, -0.0, 123.0, 0.1 + 0.2]
    annotators = [manager, UserFactory(username="@evil"), UserFactory(username='we"ird, one')]
    for n, text in enumerate(texts):
        item = ItemFactory(project=project, external_id=text or "=x", text=text, values=values[n % len(values)],
                           metadata=metadata[n % len(metadata)])
        for k, annotator in enumerate(annotators[: 1 + n % 3]):
            predicted = None if (n + k) % 4 == 0 else labels[(n + k) % 3]
            AnnotationFactory(item=item, annotator=annotator, label=labels[(n + k) % 3], is_audit=bool(k % 2),
                              time_spent_ms=None if n % 3 == 0 else 1000 + n, model_version=None if n % 5 == 0 else n,
                              predicted_label=predicted, predicted_confidence=confidences[(n + k) % len(confidences)],
                              source=["queue", "import", "api"][(n + k) % 3])
    names = {label.pk: label.name for label in labels}
    checked = 0
    for fmt in export_sql.FORMATS:
        for include in (False, True):
            options = exports.ExportOptions(mode="all", include_prediction=include, include_audit=include)
            ctx = exporting.ExportContext(kind, names, [], str, options)
            python = "".join(exporting.write(fmt, exports.export_rows(project, options, batch=7), ctx))
            written = "".join(export_sql.project_export_sql(project, fmt, ctx, 5))
            assert written == python
            checked += len(python)
    assert checked > 10_000 and export_sql.supported(project, "csv", options)


@pytest.mark.postgres  # PostgreSQL writes these exports itself
@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_rows_postgresql_writes_keep_since_and_an_empty_export(api, labeled, fmt):
    later = timezone.now() + timedelta(hours=1)
    empty = body(api.get(export_url(labeled, format=fmt, mode="all", since=later.isoformat().replace("+", "%2B"))))
    assert empty == {"jsonl": "", "json": "[\n]\n", "csv": "annotation_id,item_id,external_id,text,label,annotator,"
                     "source,created_at,updated_at,time_spent_ms,metadata\r\n"}[fmt]
    Annotation.objects.exclude(item__external_id="b").update(updated_at=timezone.now() - timedelta(days=1))
    since = (timezone.now() - timedelta(hours=1)).isoformat().replace("+", "%2B")
    text = body(api.get(export_url(labeled, format=fmt, mode="all", since=since)))
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
    else:
        rows = json.loads(text) if fmt == "json" else [json.loads(line) for line in text.splitlines()]
    assert sorted(row["external_id"] for row in rows) == ["b", "b"]
