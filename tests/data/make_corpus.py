"""Write the binary bad-input files of this folder (run: python tests/data/make_corpus.py)."""
import io
import struct
import zipfile
import zlib
from pathlib import Path

from PIL import Image

HERE = Path(__file__).parent


def png_bytes(size: int = 16, color: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (size, size), color).save(buffer, "PNG")
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid PNG header claiming width × height greyscale pixels, with only one row of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def truncated_png() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 60).save(buffer, "PNG")  # noise compresses badly, so the cut hits pixel data
    data = buffer.getvalue()
    return data[: len(data) // 2]


def traversal_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("digits/ok.png", png_bytes(color=200))
        archive.writestr("../evil.png", png_bytes(color=10))
        archive.writestr("digits/../../escape.png", png_bytes(color=20))
        archive.writestr("/etc/absolute.png", png_bytes(color=30))
        archive.writestr("labels.csv", "external_id,label\ndigits/ok.png,7\n../evil.png,1\n")
    return buffer.getvalue()


def corrupt_png() -> bytes:
    """A PNG signature and header followed by bytes that are not image data."""
    data = png_bytes(size=32)
    return data[:33] + bytes((i * 37 + 11) % 256 for i in range(400))


def gigantic_cell_csv(chars: int = 300_000) -> bytes:
    """A text CSV whose second row holds one cell far beyond any sane text length."""
    return b"external_id,text\nok,a normal sentence\nhuge," + b"x" * chars + b"\nafter,another normal sentence\n"


def deeply_nested_json(depth: int = 100_000) -> bytes:
    return b"[" * depth + b"]" * depth


def html_text_csv() -> bytes:
    return (
        b"external_id,text\n"
        b"xss1,<script>alert('labelhub')</script>\n"
        b"xss2,\"<img src=x onerror=alert(1)> & <b>bold</b>\"\n"
    )


def formula_csv() -> bytes:
    return (
        b"external_id,text,label\n"
        b"f1,\"=HYPERLINK(\"\"http://evil.example\"\",\"\"click\"\")\",positive\n"
        b"f2,+cmd|' /C calc'!A0,negative\n"
        b"f3,-2+3,positive\n"
        b"f4,@SUM(A1:A2),negative\n"
    )


def big_integer_jsonl(digits: int = 5000) -> bytes:
    """A text JSONL file whose second row's external_id is an integer of ``digits`` digits, among good rows."""
    return (
        b'{"external_id": "ok1", "text": "a normal sentence"}\n'
        b'{"external_id": 1' + b"0" * (digits - 1) + b', "text": "a row with a huge id"}\n'
        b'{"external_id": "ok2", "text": "another normal sentence"}\n'
    )


def big_value_jsonl(digits: int = 5000) -> bytes:
    """A tabular JSONL file (columns f1, f2) with a value of ``digits`` digits and one of 2 × 10^308 (no float)."""
    return (
        b'{"external_id": "ok", "f1": 1.5, "f2": 2}\n'
        b'{"external_id": "huge", "f1": 1' + b"0" * (digits - 1) + b', "f2": 2}\n'
        b'{"external_id": "beyond-float", "f1": 2' + b"0" * 308 + b', "f2": 2}\n'
    )


def big_integer_json(digits: int = 5000) -> bytes:
    """The same rows as big_integer_jsonl as one JSON array: the streaming parser stops at the number."""
    return (
        b'[{"external_id": "ok1", "text": "a normal sentence"},\n'
        b' {"external_id": 1' + b"0" * (digits - 1) + b', "text": "a row with a huge id"}]\n'
    )


def big_number_csv(digits: int = 5000) -> bytes:
    """A tabular CSV whose second row has a value of ``digits`` digits."""
    return b"external_id,f1,f2\nok,1.5,2\nhuge,1" + b"0" * (digits - 1) + b",2\n"


def surrogate_jsonl() -> bytes:
    """Lone UTF-16 surrogates (escaped, as JSON carries them) in text, external_id, label and a metadata key."""
    return (
        b'{"external_id": "ok", "text": "fine"}\n'
        b'{"external_id": "t", "text": "broken \\ud800 text"}\n'
        b'{"external_id": "id\\udc00", "text": "fine too"}\n'
        b'{"external_id": "l", "text": "fine", "label": "\\ud83d"}\n'
        b'{"external_id": "m", "text": "fine", "metadata": {"k\\udfff": 1}}\n'
        b'{"external_id": "pair", "text": "an emoji \\ud83d\\ude00 is text"}\n'
    )


if __name__ == "__main__":
    (HERE / "big_integer.jsonl").write_bytes(big_integer_jsonl())
    (HERE / "big_value.jsonl").write_bytes(big_value_jsonl())
    (HERE / "big_integer.json").write_bytes(big_integer_json())
    (HERE / "big_number.csv").write_bytes(big_number_csv())
    (HERE / "surrogate.jsonl").write_bytes(surrogate_jsonl())
    (HERE / "corrupt.png").write_bytes(corrupt_png())
    (HERE / "gigantic_cell.csv").write_bytes(gigantic_cell_csv())
    (HERE / "deeply_nested.json").write_bytes(deeply_nested_json())
    (HERE / "html_text.csv").write_bytes(html_text_csv())
    (HERE / "formula.csv").write_bytes(formula_csv())
    (HERE / "huge_dimensions.png").write_bytes(huge_png())
    (HERE / "truncated.png").write_bytes(truncated_png())
    (HERE / "traversal.zip").write_bytes(traversal_zip())
    (HERE / "not_a_zip.zip").write_bytes(b"PK\x03\x04 this is not really a zip archive\n")
