"""The pure parsing layer: one reader per format, the rows it builds, ZIP paths and images, without the database."""
import io
from pathlib import Path

import pytest
from PIL import Image

from annotations.imports.archives import unsafe_path
from annotations.imports.readers import reader_for
from annotations.imports.rows import ImportFileError, Limits, Row, RowError, error_line
from annotations.imports.writers import image_prepare

DATA = Path(__file__).parent.parent.parent / "data"
LIMITS = Limits(text_max_chars=100, image_max_bytes=10_000, max_features=3, zip_max_entries=10)


def rows(content: bytes, fmt: str, kind: str = "text", features: list[str] | None = None) -> list[Row]:
    reader = reader_for(
        io.BytesIO(content), fmt, filename=f"f.{fmt}", kind=kind, label_names=frozenset({"cat", "dog"}),
        feature_names=features or [], limits=LIMITS,
    )
    return list(reader)


@pytest.mark.parametrize(
    ("name", "unsafe"),
    [
        ("a/b.png", False), ("a/..b.png", False), ("../a.png", True), ("a/../../b.png", True),
        ("/etc/passwd", True), ("C:/x.png", True), ("..\\x.png", True), ("a/..", True),
    ],
)
def test_unsafe_paths(name, unsafe):
    assert unsafe_path(name) is unsafe


def test_image_pixel_limit_is_checked_from_the_header_alone():
    with pytest.raises(RowError, match=r"^image is 20000×20000 = 400,000,000 pixels, above the 10,000-pixel limit$"):
        image_prepare((DATA / "huge_dimensions.png").read_bytes(), max_pixels=10_000)


def test_image_is_converted_to_png_with_a_thumbnail():
    buffer = io.BytesIO()
    Image.new("P", (40, 20), 3).save(buffer, "GIF")
    image, thumbnail = image_prepare(buffer.getvalue(), max_pixels=10_000)
    with Image.open(io.BytesIO(image)) as decoded:
        assert (decoded.format, decoded.mode, decoded.size) == ("PNG", "RGB", (40, 20))


def test_csv_rows_carry_line_numbers_of_multiline_records():
    content = b'text,label\n"two\nlines",cat\n\n"one",bird\n'
    first, second = rows(content, "csv")
    assert (first.number, first.where, first.text, first.label) == (1, "line 2", "two\nlines", "cat")
    assert (second.number, second.where, second.error) == (2, "line 5", "unknown label 'bird'")


def test_csv_metadata_comes_from_a_json_column_and_meta_columns():
    (row,) = rows(b'text,metadata,meta_source\nhi,"{""a"": 1}",web\n', "csv")
    assert row.metadata == {"a": 1, "source": "web"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"text,text\nx,y\n", "Column 'text' appears twice in the header."),
        (b"text,\nx,y\n", "The header has an empty column name."),
        (b"", "The file is empty."),
    ],
)
def test_bad_headers_fail_the_file(content, message):
    with pytest.raises(ImportFileError, match=f"^{message}$"):
        rows(content, "csv")


def test_tabular_feature_limit_and_missing_features():
    with pytest.raises(ImportFileError, match="4 feature columns, above the limit of 3"):
        rows(b"a,b,c,d\n1,2,3,4\n", "csv", kind="tabular")
    with pytest.raises(ImportFileError, match="No feature columns"):
        rows(b"external_id,label\n1,cat\n", "csv", kind="tabular")


def test_text_rows_reject_bad_values():
    content = (
        b'{"text": 5}\n{"text": "  "}\n{"text": "a\\u0000b"}\n'
        b'{"text": "ok", "external_id": [1]}\n{"text": "ok", "metadata": {"x": NaN}}\n'
    )
    assert [r.error for r in rows(content, "jsonl")] == [
        "text must be a string",
        "text is empty",
        "text contains a NUL character",
        "external_id must be a string or an integer",
        "metadata contains NaN or infinity, which JSON cannot store",
    ]


def test_error_line():
    assert error_line({"row": 4, "where": "line 5", "reason": "bad"}) == "row 4 (line 5): bad"
    assert error_line({"row": 4, "where": "", "reason": "bad"}) == "row 4: bad"
