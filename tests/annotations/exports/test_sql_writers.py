"""PostgreSQL's own export lines: byte for byte what the Python writers make, with since and when empty."""
import csv
import io
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from annotations.exports import formats, sql_writers
from annotations.exports.rows import ExportOptions, export_rows
from annotations.models import Annotation
from tests.annotations.exports.support import body, export_url
from tests.factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.postgres  # PostgreSQL writes these exports itself
@pytest.mark.parametrize("kind", ["text", "tabular"])
def test_rows_postgresql_writes_equal_the_python_writers_byte_for_byte(kind, manager):
    """Mode all as JSONL, JSON and CSV comes out of PostgreSQL; it must be exactly what the Python writers make of the rows,
    for texts that need escaping, quoting or neutralising, and for floats PostgreSQL spells differently."""
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
    for fmt in sql_writers.FORMATS:
        for include in (False, True):
            options = ExportOptions(mode="all", include_prediction=include, include_audit=include)
            ctx = formats.ExportContext(kind, names, [], str, options)
            python = "".join(formats.write(fmt, export_rows(project, options, batch=7), ctx))
            written = "".join(sql_writers.project_export_sql(project, fmt, ctx, 5))
            assert written == python
            checked += len(python)
    assert checked > 10_000 and sql_writers.supported(project, "csv", options)

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
