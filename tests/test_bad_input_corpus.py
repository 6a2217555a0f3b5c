"""Every file of the bad-input corpus (tests/data) gets its clear error, and nothing of a refused file is stored."""
import io
from pathlib import Path

import pytest
from django.urls import reverse

from annotations.models import Annotation, ImportJob, Item
from annotations.imports import services
from labelhub.api import DomainError

DATA = Path(__file__).parent / "data"

pytestmark = pytest.mark.django_db

# file → (project fixture, outcome, expected message or row reasons, items stored)
FAILS = {
    "gigantic_cell.csv": ("text_project", "Line 3: malformed CSV (field larger than field limit"),
    "deeply_nested.json": ("text_project", "JSON nested deeper than 32 levels"),
    "non_utf8.csv": ("text_project", "The file is not UTF-8 text (line 3"),
    "malformed.csv": ("text_project", "Line 3: malformed CSV"),
    "invalid.json": ("text_project", "Invalid JSON: "),
    "not_a_zip.zip": ("image_project", "Not a valid ZIP archive"),
    # A JSON array is read as one stream: a number beyond 64 bits stops the parser, which says where.
    "big_integer.json": ("text_project", "Invalid JSON: parse error: integer overflow near '"),
}
REJECTS_ROWS = {
    "corrupt.png": ("image_project", ["not a valid PNG image"], 0),
    "truncated.png": ("image_project", ["image is truncated or corrupt"], 0),
    "huge_dimensions.png": ("image_project", ["above the 50,000,000-pixel limit"], 0),
    "ragged.csv": ("text_project", ["has 4 fields, the header has 2"], 1),
    "duplicate_ids.csv": ("text_project", ["duplicate external_id in this file, first at row 1"], 2),
    "unknown_label.csv": ("text_project", ["unknown label 'cat'"], 3),
    "nonfinite.csv": ("tabular_project", ["'nan' is not a finite number", "'inf' is not a finite number",
                                          "column 'alcohol' is empty", "'abc' is not a number"], 1),
    "nonfinite.jsonl": ("tabular_project", ["nan is not a finite number", "inf is not a finite number"], 1),
    "traversal.zip": ("image_project", ["unsafe path '../evil.png'", "unsafe path 'digits/../../escape.png'",
                                        "unsafe path '/etc/absolute.png'"], 1),
    "big_integer.jsonl": ("text_project", ["a number has 5,000 digits, above the 309-digit limit"], 2),
    "big_value.jsonl": ("tabular_project", ["a number has 5,000 digits, above the 309-digit limit",
                                            "column 'f1': 2000000000000000000000000000000000000... is not a finite"], 1),
    "big_number.csv": ("tabular_project", ["column 'f1': '100000000000000000000000000000000000... is not a finite"],
                       1),
    "surrogate.jsonl": ("text_project", ["the row contains a lone surrogate (\\ud800), which is not text",
                                         "(\\udc00)", "(\\ud83d)", "(\\udfff)"], 2),
}
# Stored as they are (text is data), then shown escaped and exported neutralised.
STORED_AS_TEXT = {"html_text.csv": 2, "formula.csv": 4}


def _import(request, fixture: str, name: str) -> ImportJob:
    project = request.getfixturevalue(fixture)
    manager = request.getfixturevalue("manager")
    data = (DATA / name).read_bytes()
    (job,) = services.import_jobs_submit(project=project, user=manager, uploads=[(name, io.BytesIO(data))], wait=True)
    return job


def test_every_corpus_file_has_an_expectation():
    corpus = {p.name for p in DATA.iterdir() if p.is_file() and p.suffix != ".py"}
    assert corpus == set(FAILS) | set(REJECTS_ROWS) | set(STORED_AS_TEXT)


@pytest.mark.parametrize("name", sorted(FAILS))
def test_a_file_that_cannot_be_read_fails_whole_with_its_reason(request, settings, name):
    fixture, message = FAILS[name]
    job = _import(request, fixture, name)
    assert job.status == ImportJob.Status.FAILED
    assert message in job.message
    assert (Item.objects.count(), Annotation.objects.count(), job.created_count) == (0, 0, 0)
    media = Path(settings.MEDIA_ROOT)
    assert not media.exists() or not [p for p in media.rglob("*") if p.is_file()]


@pytest.mark.parametrize("name", sorted(REJECTS_ROWS))
def test_bad_rows_are_listed_one_line_each_and_good_rows_stored(request, name):
    fixture, reasons, stored = REJECTS_ROWS[name]
    job = _import(request, fixture, name)
    assert job.status == ImportJob.Status.DONE
    assert job.created_count == stored == Item.objects.count()
    assert job.rejected_count == len(job.errors) >= len(reasons)
    listed = " | ".join(error["reason"] for error in job.errors)
    for reason in reasons:
        assert reason in listed
    assert all(error["row"] and error["where"] for error in job.errors), "each bad row says where it is"


def test_a_file_the_project_kind_does_not_take_is_refused_before_it_is_stored(text_project, manager):
    with pytest.raises(DomainError, match="Text projects import CSV, JSONL or JSON files"):
        services.import_jobs_submit(project=text_project, user=manager,
                                    uploads=[("corrupt.png", io.BytesIO(b"\x89PNG"))], wait=True)
    assert ImportJob.objects.count() == 0


def test_html_in_text_items_is_stored_as_text_and_shown_escaped(request, client, text_project, manager):
    job = _import(request, "text_project", "html_text.csv")
    assert job.created_count == STORED_AS_TEXT["html_text.csv"]
    assert Item.objects.get(external_id="xss1").text == "<script>alert('labelhub')</script>"
    client.force_login(manager)
    seen = []
    for _ in range(2):
        body = client.get(reverse("label", args=[text_project.pk])).content.decode()
        client.post(reverse("label-next", args=[text_project.pk]))
        seen.append(body)
    page = "".join(seen)
    assert "<script>alert(" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;labelhub&#x27;)&lt;/script&gt;" in page or "&lt;img src=x" in page


def test_formula_cells_are_stored_verbatim(request):
    job = _import(request, "text_project", "formula.csv")
    assert job.created_count == STORED_AS_TEXT["formula.csv"]
    assert Item.objects.get(external_id="f4").text == "@SUM(A1:A2)"
    assert Item.objects.get(external_id="f1").text.startswith("=HYPERLINK(")
