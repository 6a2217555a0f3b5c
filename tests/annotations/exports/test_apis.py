"""Export API: every format parses, final labels follow the agreed rule, CSV is neutralised, access is managers'."""
import csv
import io
import json
from datetime import datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from annotations.models import Annotation, Project
from tests.annotations.exports.support import body, export_url
from tests.factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory, api_token_for

pytestmark = pytest.mark.django_db


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


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
@pytest.mark.parametrize("mode", ["all", "final"])
def test_a_label_stored_before_any_model_exports_a_null_model_version(api, labeled, fmt, mode):
    # The queue's seeding scoring, before any model, is numbered 0: a label stored under it names no model.
    Annotation.objects.filter(item__project=labeled, predicted_label__isnull=True).update(model_version=0)

    text = body(api.get(export_url(labeled, format=fmt, mode=mode, include_prediction="true")))

    if fmt == "csv":
        versions = [row["model_version"] or None for row in csv.DictReader(io.StringIO(text))]
    else:
        rows = [json.loads(line) for line in text.splitlines()] if fmt == "jsonl" else json.loads(text)
        versions = [row["model_version"] for row in rows]
    expected = {"all": [3, None, None, None, None, None], "final": [3, None, None]}[mode]
    assert versions == [None if v is None else str(v) for v in expected] if fmt == "csv" else versions == expected
