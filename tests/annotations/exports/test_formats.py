"""Export formats: the fast mode-all writers say what the generic records say; final labels follow majority_label."""
import csv
import io
import json

import pytest

from annotations.exports import formats
from annotations.exports.rows import ExportAnnotation, ExportItem, ExportOptions, export_rows, group_items
from annotations.selectors.labels import majority_label
from tests.factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("kind", ["text", "tabular", "image"])
def test_fast_rows_of_mode_all_equal_the_generic_records(kind, manager):
    """Mode all writes each row straight to JSON and CSV; it must say exactly what ``records`` says."""
    project = ProjectFactory(kind=kind, feature_names=["x", "y"] if kind == "tabular" else [])
    labels = [project.labels.create(name=n, order=i) for i, n in enumerate(["=no", "yes"])]
    item = ItemFactory(project=project, text="=cmd|' /C calc'!A0", values=[1.5, -2.0] if kind == "tabular" else None,
                       image="items/1/x.png" if kind == "image" else "", metadata={"k": "ü"})
    AnnotationFactory(item=item, annotator=manager, label=labels[0], is_audit=True, time_spent_ms=1200,
                      model_version=2, predicted_label=labels[1], predicted_confidence=0.25)
    AnnotationFactory(item=item, annotator=UserFactory(username="@evil"), label=labels[1])
    for include in (False, True):
        options = ExportOptions(mode="all", include_prediction=include, include_audit=include)
        ctx = formats.ExportContext(kind, {label.pk: label.name for label in labels}, ["x", "y"],
                                    lambda pk: f"/items/{pk}/image?sig=s", options)
        rows = [row for batch in export_rows(project, options) for row in batch]
        items = [item for batch in group_items(iter([rows])) for item in batch]
        generic = list(formats.records(items, ctx))
        fast = [json.loads(formats.annotation_json(ctx)(row)) for row in rows]
        assert fast == json.loads(json.dumps(generic))
        head = formats.columns(ctx)

        def norm(cell) -> object:  # JSON cells may differ in spacing only
            text = "" if cell is None else str(cell)
            return json.loads(text) if text.startswith(("{", "[")) else text

        for row in rows:  # the fast CSV line is exactly csv.writer's of the cells
            buffer = io.StringIO()
            csv.writer(buffer).writerow(formats.annotation_cells(ctx)(row))
            assert formats.annotation_csv(ctx)(row) == buffer.getvalue()
        cells = [[norm(c) for c in formats.annotation_cells(ctx)(row)] for row in rows]
        expected = [[norm(formats.csv_cell(record.get(key))) for key in head] for record in generic]
        assert cells == expected


def _item(labels: list[int], resolved: int | None = None) -> ExportItem:
    votes = [ExportAnnotation(10 + n, f"e{n}", label, "queue", False, "", "", None, None, None, None)
             for n, label in enumerate(labels)]
    return ExportItem(1, "x", "", None, "", "{}", resolved, votes)


@pytest.mark.parametrize("labels, expected, deciding", [
    ([5], 5, 0),
    ([5, 7], 5, 0),  # a tie goes to the earliest annotation
    ([7, 5, 5], 5, 1),
    ([7, 5, 5, 7], 7, 0),
    ([3, 5, 7, 7, 5], 5, 1),
])
def test_final_vote_is_majority_label_with_its_deciding_annotation(labels, expected, deciding):
    item = _item(labels)
    vote, label_id, source = formats.final_vote(item)

    assert (label_id, source) == (expected, "majority")
    assert label_id == majority_label([(v.id, v.label_id) for v in item.annotations])
    assert vote is item.annotations[deciding]


def test_final_vote_prefers_the_reviewers_label():
    assert formats.final_vote(_item([5, 5], resolved=7))[1:] == (7, "review")
    assert formats.final_vote(_item([], resolved=7)) == (None, 7, "review")
