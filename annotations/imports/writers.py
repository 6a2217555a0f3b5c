"""Publish a checked file in chunks: new items, their pre-labels and images, each chunk in one short transaction."""
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from PIL import Image, ImageOps

from ..images import ImageRefused, image_open
from ..models import Annotation, Item, ItemEmbedding, Project, item_image_path
from .embeddings import embedding_dim_settle, embeddings_replace
from .rows import Row, RowError, first_line
from .runs import Run, job_reader
from .vectors import dimension_error

ROW_CHUNK = 2000
IMAGE_CHUNK = 64
CHUNK_MAX_BYTES = 64 * 1024 * 1024
PRELOAD_MAX = 50_000
THUMBNAIL_SIZE = 256

# One existing item as the import sees it: content hash, primary key, and the job that created it.
Existing = tuple[str, int, int | None]
_EXISTING_COLUMNS = ("external_id", "content_hash", "pk", "import_job_id")


def rows_publish(run: Run, project: Project) -> None:
    """Store the checked file's new items chunk by chunk, each chunk with its counts in one short transaction."""
    job = run.job
    publisher = _Publisher(run, project)
    # Gold marks for items already there are written at the finish, so that an undone import needs no undoing of them.
    run.gold = {}
    chunk_size = IMAGE_CHUNK if project.kind == Project.Kind.IMAGE else ROW_CHUNK
    resume_after = job.rows_published  # rows of the file a lost run of this job already stored
    with job.upload.open("rb") as fileobj:
        total_bytes = job.upload.size
        run.progress(0, total_bytes, rows=job.rows_published, phase="storing")
        reader = job_reader(job, project, fileobj)
        rows_done = 0
        for rows in _chunks(reader, chunk_size):
            run.beat()
            rows_done += len(rows)
            resumed = rows_done <= resume_after
            chunk = publisher.sort(rows, resumed=resumed)
            if resumed:
                continue
            publisher.write(chunk, rows_done=rows_done, feature_names=reader.feature_names)
            if run.progress_due():
                run.progress(fileobj.tell(), total_bytes, rows=job.rows_total, phase="storing")


@dataclass
class _Chunk:
    """What one chunk of the file adds: its new items, their pre-labels and vectors, new vectors of items already
    there, its counts and rejected rows."""

    rows_total: int
    items: list[Item] = field(default_factory=list)
    labeled: list[tuple[Item, int]] = field(default_factory=list)
    embedded: list[tuple[Row, Item]] = field(default_factory=list)
    revectored: list[tuple[Row, int]] = field(default_factory=list)  # rows of unchanged items, and those items' ids
    unchanged_count: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


class _Publisher:
    """What one run's publishing knows across chunks: the project's items from before, the file's rows so far."""

    def __init__(self, run: Run, project: Project) -> None:
        self.run, self.project, self.job = run, project, run.job
        self.label_ids = dict(project.labels.values_list("name", "pk"))
        # Only items from before this import need looking up (``seen`` catches this file's own).
        # A small project's are read once: per-chunk lookups would be planned for the small
        # project the statistics describe and rescan every row this import adds, chunk after chunk.
        self.before = Item.objects.filter(project=project)
        self.preloaded: dict[str, Existing] | None = None
        if self.before.count() <= PRELOAD_MAX:
            self.preloaded = {external_id: rest for external_id, *rest in self.before.values_list(*_EXISTING_COLUMNS)}
        self.seen: dict[str, int] = {}
        self.features_fixed = bool(project.feature_names)
        # The project's, or until one is stored, the first of this file's vectors: the one the others must match.
        self.embedding_dim = project.embedding_dim
        self.errors_kept = settings.LABELHUB_IMPORT_ERRORS_KEPT

    def existing(self, rows: list[Row]) -> dict[str, Existing]:
        """The project's items from before this import that the rows may name."""
        if self.preloaded is not None:
            return self.preloaded
        wanted = [r.external_id for r in rows if r.error is None]
        return {e: rest for e, *rest in self.before.filter(external_id__in=wanted).values_list(*_EXISTING_COLUMNS)}

    def sort(self, rows: list[Row], *, resumed: bool) -> _Chunk:
        """Sort a chunk's rows into new items (their images stored), unchanged and rejected rows.

        A chunk a lost run already published (``resumed``) only tells which rows are seen and which gold marks to write.
        """
        run, job, project, label_ids, seen = self.run, self.job, self.project, self.label_ids, self.seen
        existing = self.existing(rows)
        user_id = job.created_by_id
        chunk = _Chunk(rows_total=len(rows))
        for row in rows:
            if row.error is None:
                row.error = _conflict(row, seen, existing, user_id, job.pk) or self.dimension_error(row)
            mine = row.error is None and existing.get(row.external_id, ("", 0, None))[2] == job.pk
            if row.error is None and row.external_id in existing and not mine:
                chunk.unchanged_count += 1
                if row.gold_label:
                    # Importing the same rows again with a gold_label column marks the items already there.
                    run.gold.setdefault(label_ids[row.gold_label], []).append(existing[row.external_id][1])
                if row.embedding is not None and not resumed:
                    # Importing the same rows again with vectors replaces the items' vectors.
                    chunk.revectored.append((row, existing[row.external_id][1]))
                continue
            if resumed:
                continue  # stored, counted and listed by the run that published this chunk
            media = ("", "")
            if row.error is None and row.image_data is not None:
                try:
                    media = _image_store(project.pk, row, run.pending)
                except RowError as exc:
                    row.error = str(exc)
                run.beat()
            if row.error is not None:
                chunk.errors.append({"row": row.number, "where": row.where, "reason": row.error})
                continue
            item = Item(
                project_id=project.pk, import_job_id=job.pk, external_id=row.external_id, text=row.text,
                values=row.values, metadata=row.metadata, content_hash=row.content_hash,
                image=media[0], thumbnail=media[1],
                gold_label_id=label_ids[row.gold_label] if row.gold_label else None,
            )
            chunk.items.append(item)
            if row.embedding is not None:
                chunk.embedded.append((row, item))
            if row.label:
                chunk.labeled.append((item, label_ids[row.label]))
                # A pre-labeled item counts towards the overlap like a label from the queue.
                item.label_count, item.queue_done = 1, project.overlap <= 1
        return chunk

    def dimension_error(self, row: Row) -> str | None:
        """Why a row's vector does not fit the project's (or this file's first) vector, or None."""
        if row.embedding is None:
            return None
        if self.embedding_dim is None:
            self.embedding_dim = len(row.embedding) // 4
            return None
        return dimension_error(row.embedding, self.embedding_dim)

    def write(self, chunk: _Chunk, *, rows_done: int, feature_names: list[str]) -> None:
        """Commit a chunk's items, pre-labels, vectors, counts and resume point together, if this run owns the job."""
        job, project = self.job, self.project
        with transaction.atomic():
            self.run.own()
            if chunk.items and not self.features_fixed and project.kind == Project.Kind.TABULAR:
                # Only a file that yields items fixes the columns, so a botched first file does not.
                Project.objects.filter(pk=project.pk).update(feature_names=feature_names)
                self.features_fixed = True
            if chunk.embedded or chunk.revectored:
                self._dimension_settle(chunk)
            Item.objects.bulk_create(chunk.items)
            Annotation.objects.bulk_create(
                Annotation(item=item, label_id=label_id, annotator_id=job.created_by_id,
                           source=Annotation.Source.IMPORT)
                for item, label_id in chunk.labeled
            )
            ItemEmbedding.objects.bulk_create(
                ItemEmbedding(item=item, project_id=project.pk, vector=row.embedding) for row, item in chunk.embedded
            )
            embeddings_replace(project.pk, {pk: row.embedding for row, pk in chunk.revectored})
            job.rows_total += chunk.rows_total
            job.unchanged_count += chunk.unchanged_count
            job.rejected_count += len(chunk.errors)
            job.created_count += len(chunk.items)
            job.labels_count += len(chunk.labeled)
            job.errors = job.errors + chunk.errors[:max(0, self.errors_kept - len(job.errors))]
            job.rows_published = rows_done
            job.heartbeat_at = timezone.now()
            job.save(update_fields=[
                "rows_total", "unchanged_count", "rejected_count", "created_count", "labels_count", "errors",
                "rows_published", "heartbeat_at",
            ])
        self.run.saved += self.run.pending
        self.run.pending = []

    def _dimension_settle(self, chunk: _Chunk) -> None:
        """Under the project's row lock: fix its dimension by this file's vectors, or reject the rows whose differs.

        They differ only when the embeddings API or command stored the project's first vectors since this chunk
        was sorted; an unchanged item's row rejected so still keeps the gold mark it brought.
        """
        dim = embedding_dim_settle(self.project.pk, self.embedding_dim)
        if dim == self.embedding_dim:
            return
        self.embedding_dim = dim
        refused = [row for row, _ in [*chunk.embedded, *chunk.revectored] if dimension_error(row.embedding, dim)]
        gone = {id(row) for row in refused}
        items = {id(item) for row, item in chunk.embedded if id(row) in gone}
        chunk.items = [item for item in chunk.items if id(item) not in items]
        chunk.labeled = [(item, label_id) for item, label_id in chunk.labeled if id(item) not in items]
        chunk.embedded = [(row, item) for row, item in chunk.embedded if id(row) not in gone]
        chunk.unchanged_count -= sum(1 for row, _ in chunk.revectored if id(row) in gone)
        chunk.revectored = [(row, pk) for row, pk in chunk.revectored if id(row) not in gone]
        chunk.errors += [
            {"row": row.number, "where": row.where, "reason": dimension_error(row.embedding, dim)} for row in refused
        ]
        chunk.errors.sort(key=lambda error: error["row"])


def _chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    used = 0
    for row in rows:
        chunk.append(row)
        used += row.nbytes
        if len(chunk) >= size or used >= CHUNK_MAX_BYTES:
            yield chunk
            chunk, used = [], 0
    if chunk:
        yield chunk


def _conflict(
    row: Row, seen: dict[str, int], existing: dict[str, Existing], user_id: int | None, job_id: int
) -> str | None:
    """Why a parsed row clashes with an earlier row of the file or an existing item, or None."""
    first = seen.setdefault(row.external_id, row.number)
    if first != row.number:
        if row.derived_id:
            return f"same content as row {first} (neither has an external_id)"
        return f"duplicate external_id in this file, first at row {first}"
    found = existing.get(row.external_id)
    if found is not None and found[0] != row.content_hash:
        return f"external_id {row.external_id!r} already exists with different content"
    if row.label and user_id is None and (found is None or found[2] == job_id):
        return "pre-labeled rows need an importing user"
    return None


def _image_store(project_id: int, row: Row, saved: list[str]) -> tuple[str, str]:
    """Store an image and its thumbnail under content-addressed names; return both names."""
    names = [item_image_path(Item(project_id=project_id), f"{row.content_hash}{s}.png") for s in ("", "-thumb")]
    if all(default_storage.exists(name) for name in names):
        return names[0], names[1]  # stored only after passing the checks below
    image, thumbnail = image_prepare(row.image_data, max_pixels=settings.LABELHUB_IMAGE_MAX_PIXELS)
    for i, content in enumerate((image, thumbnail)):
        if not default_storage.exists(names[i]):
            names[i] = default_storage.save(names[i], ContentFile(content))
            saved.append(names[i])
    return names[0], names[1]


def image_prepare(data: bytes, *, max_pixels: int) -> tuple[bytes, bytes]:
    """Check and decode an image; return it and its thumbnail (≤256 px) as PNG, or raise RowError."""
    try:
        with image_open(data, max_pixels=max_pixels) as opened:
            image = _flatten(ImageOps.exif_transpose(opened))
    except ImageRefused as exc:
        raise RowError(str(exc)) from exc
    except Exception as exc:  # EXIF and mode conversion of hostile input raise OSError, ValueError, ...
        raise RowError(f"image is truncated or corrupt ({first_line(exc)})") from exc
    thumbnail = image.copy()
    thumbnail.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    return _png(image), _png(thumbnail)


def _flatten(image: Image.Image) -> Image.Image:
    """Return the image as L (grey) or RGB, transparent parts on white."""
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("L") if image.mode in ("1", "L", "I", "I;16", "F") else image.convert("RGB")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
