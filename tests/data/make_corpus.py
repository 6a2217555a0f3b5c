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


if __name__ == "__main__":
    (HERE / "corrupt.png").write_bytes(corrupt_png())
    (HERE / "gigantic_cell.csv").write_bytes(gigantic_cell_csv())
    (HERE / "deeply_nested.json").write_bytes(deeply_nested_json())
    (HERE / "html_text.csv").write_bytes(html_text_csv())
    (HERE / "formula.csv").write_bytes(formula_csv())
    (HERE / "huge_dimensions.png").write_bytes(huge_png())
    (HERE / "truncated.png").write_bytes(truncated_png())
    (HERE / "traversal.zip").write_bytes(traversal_zip())
    (HERE / "not_a_zip.zip").write_bytes(b"PK\x03\x04 this is not really a zip archive\n")
