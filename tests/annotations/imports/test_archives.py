"""ZIP imports are bounded by the work they make: inflated bytes, ratio, overlap, entry count and duplicate names."""
import io
import struct
import zipfile
import zlib

import pytest
from PIL import Image

from annotations.models import ImportJob, Item
from annotations.imports import services

pytestmark = pytest.mark.django_db


def png(color: str = "white") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, "PNG")
    return buffer.getvalue()


def zip_of(entries: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def _local_header(name: bytes, crc: int, compressed: int, size: int) -> bytes:
    return struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, compressed, size, len(name), 0) + name


def _archive(entries: list[tuple[bytes, int, int, int, int]], body: bytes) -> bytes:
    """Append a central directory of (name, crc, compressed, size, offset) entries and its end record to ``body``."""
    directory = b"".join(
        struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, compressed, size, len(name),
                    0, 0, 0, 0, 0, offset) + name
        for name, crc, compressed, size, offset in entries
    )
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), len(body), 0)
    return body + directory + end


def overlapping_bomb(entries: int, kernel_bytes: int) -> bytes:
    """D. Fifield's overlapping ZIP: every entry's deflate stream quotes the next local headers, then shares one kernel.

    Each of the ``entries`` entries inflates to about ``kernel_bytes``; the archive stays a few kilobytes.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    kernel = compressor.compress(b"\0" * kernel_bytes) + compressor.flush()
    names = [f"{i:04d}.png".encode() for i in range(entries)]
    # Built from the last entry back: an entry's data is a stored block quoting the next local header,
    # followed by the next entry's data.
    data, output, headers = kernel, b"\0" * kernel_bytes, [b""] * entries
    for i in reversed(range(entries)):
        headers[i] = _local_header(names[i], zlib.crc32(output), len(data), len(output))
        if i:
            quote = b"\x00" + struct.pack("<HH", len(headers[i]), len(headers[i]) ^ 0xFFFF)
            data, output = quote + headers[i] + data, headers[i] + output
    body, offsets, offset = headers[0], [0], 0
    for i in range(1, entries):
        offset = len(body) + 5
        body += b"\x00" + struct.pack("<HH", len(headers[i]), len(headers[i]) ^ 0xFFFF) + headers[i]
        offsets.append(offset)
    body += kernel
    directory = []
    for i in range(entries):
        _, _, _, _, _, _, crc, compressed, size, _, _ = struct.unpack("<4sHHHHHIIIHH", headers[i][:30])
        directory.append((names[i], crc, compressed, size, offsets[i]))
    return _archive(directory, body)


def lying_entry(declared: int, actual: int) -> bytes:
    """One entry whose headers declare ``declared`` bytes while its deflate stream inflates to ``actual``."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(b"\0" * actual) + compressor.flush()
    crc = zlib.crc32(b"\0" * declared)
    body = _local_header(b"liar.png", crc, len(data), declared) + data
    return _archive([(b"liar.png", crc, len(data), declared, 0)], body)


def run(project, user, name: str, data: bytes) -> ImportJob:
    (job,) = services.import_jobs_submit(project=project, user=user, uploads=[(name, io.BytesIO(data))], wait=True)
    return job


class Opened(list):
    """The names of the ZIP entries opened for reading, and the bytes read from them."""

    bytes_read = 0


@pytest.fixture
def inflated(monkeypatch) -> Opened:
    """Watch the entries read (zipfile is the standard library's, outside the project)."""
    opened = Opened()
    real_open, real_read = zipfile.ZipFile.open, zipfile.ZipExtFile.read

    def spy_open(self, name, mode="r", *args, **kwargs):
        if mode == "r":
            opened.append(name if isinstance(name, str) else name.filename)
        return real_open(self, name, mode, *args, **kwargs)

    def spy_read(self, n=-1):
        data = real_read(self, n)
        opened.bytes_read += len(data)
        return data

    monkeypatch.setattr(zipfile.ZipFile, "open", spy_open)
    monkeypatch.setattr(zipfile.ZipExtFile, "read", spy_read)
    return opened


def assert_refused(job: ImportJob, message: str, inflated: Opened) -> None:
    assert job.status == ImportJob.Status.FAILED
    assert job.message.startswith(message), job.message
    assert Item.objects.count() == 0 and job.created_count == 0
    assert inflated == []  # refused from the central directory, before one entry was read


def test_the_crafted_overlapping_bomb_builds_a_zip_that_zipfile_reads():
    with zipfile.ZipFile(io.BytesIO(overlapping_bomb(3, 1000))) as archive:
        assert [len(archive.read(info)) for info in archive.infolist()] == [1000 + 2 * 38, 1000 + 38, 1000]


def test_entries_sharing_one_compressed_block_are_refused_before_inflating(image_project, manager, inflated):
    bomb = overlapping_bomb(200, 1024 * 1024)  # 200 MiB declared from a few kilobytes
    assert len(bomb) < 30_000

    job = run(image_project, manager, "bomb.zip", bomb)

    assert_refused(job, "The ZIP's entries inflate to", inflated)
    assert "times the archive's" in job.message


def test_overlapping_entries_are_refused_whatever_the_ratio(image_project, manager, settings, inflated):
    settings.LABELHUB_ZIP_MAX_RATIO = 10**9

    job = run(image_project, manager, "bomb.zip", overlapping_bomb(20, 100_000))

    assert_refused(job, "The ZIP's entries '0000.png' and '0001.png' overlap", inflated)


def test_a_zip_compressed_too_far_is_refused(image_project, manager, inflated):
    # Each entry is within the image limit; together they are 10 MiB from about 10 kB.
    job = run(image_project, manager, "flat.zip", zip_of([(f"{i}.png", b"\0" * 1024 * 1024) for i in range(10)]))

    assert_refused(job, "The ZIP's entries inflate to 10,485,760 bytes, over 100 times the archive's", inflated)


def test_the_total_inflated_bytes_are_bounded(image_project, manager, settings, inflated):
    settings.LABELHUB_ZIP_MAX_BYTES = 1000
    entries = [(f"{i}.png", bytes(range(256)) * 2) for i in range(3)]  # 1,536 bytes, stored: ratio about 1

    job = run(image_project, manager, "big.zip", zip_of(entries, zipfile.ZIP_STORED))

    assert_refused(job, "The ZIP's entries inflate to 1,536 bytes together, above the limit of 1,000.", inflated)


def test_the_entry_count_is_read_before_the_directory(image_project, manager, settings, monkeypatch, inflated):
    settings.LABELHUB_ZIP_MAX_ENTRIES = 5

    def parse(self):
        raise AssertionError("the central directory must not be parsed")

    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", parse)
    job = run(image_project, manager, "many.zip", zip_of([(f"{i}.png", b"x") for i in range(6)]))

    assert_refused(job, "The ZIP has 6 entries, above the limit of 5.", inflated)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["a.png", "b.png", "a.png"], "The ZIP holds 'a.png' twice; each entry needs a name of its own."),
        (["dir/a.png", "dir/./a.png"], "The ZIP holds 'dir/a.png' and 'dir/./a.png', one path twice"),
    ],
)
def test_duplicate_names_are_refused_before_inflating(image_project, manager, inflated, names, message):
    with pytest.warns(UserWarning, match="Duplicate name") if len(set(names)) < len(names) else _nothing():
        data = zip_of([(name, png()) for name in names])

    job = run(image_project, manager, "dupes.zip", data)

    assert_refused(job, message, inflated)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_header_that_lies_inflates_no_more_than_it_declares(image_project, manager, inflated):
    job = run(image_project, manager, "liar.zip", lying_entry(declared=100, actual=5_000_000))

    assert job.status == ImportJob.Status.DONE and job.created_count == 0
    assert job.errors[0]["reason"] == "not a PNG, JPEG, GIF, BMP or WebP image"
    assert inflated == ["liar.png"] and inflated.bytes_read == 100


def test_entries_of_other_compression_methods_are_not_inflated(image_project, manager, inflated):
    job = run(image_project, manager, "ok.zip", zip_of([("a.png", png())]))
    assert job.created_count == 1

    job = run(image_project, manager, "bz.zip", zip_of([("b.png", png("black"))], zipfile.ZIP_BZIP2))

    assert job.created_count == 0
    assert job.errors[0]["reason"] == "compressed with a method other than deflate; store or deflate it"
    assert inflated == ["a.png"]


def test_images_of_formats_import_does_not_take_are_named(image_project, manager):
    tiff = io.BytesIO()
    Image.new("L", (8, 8)).save(tiff, "TIFF")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n"

    job = run(image_project, manager, "odd.zip", zip_of([("a.tif.png", tiff.getvalue()), ("b.eps.png", eps)]))

    assert [e["reason"] for e in job.errors] == [
        "TIFF images are not accepted; send PNG, JPEG, GIF, BMP or WebP",
        "EPS images are not accepted; send PNG, JPEG, GIF, BMP or WebP",
    ]
