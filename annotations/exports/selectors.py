"""Read a project's export as text chunks: the context the writers need, and the writer that makes it."""
from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings

from ..models import Label, Project
from . import formats, sql_writers
from .links import item_image_url_signed
from .rows import MODES, ExportOptions, export_rows


def project_export(
    project: Project, fmt: str, options: ExportOptions, *, base_url: str = "", batch: int | None = None
) -> Iterator[str]:
    """Stream the project's export in ``fmt`` (jsonl, csv, json, labelstudio); nothing is read until iterated.

    On PostgreSQL, mode all as JSONL, CSV or JSON of a text or tabular project is written by the
    database itself (``sql_writers``), the same bytes at several times the speed.
    """
    if fmt not in formats.FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}.")
    if options.mode not in MODES:
        raise ValueError(f"Unknown export mode {options.mode!r}.")
    ctx = formats.ExportContext(
        kind=project.kind,
        label_names=dict(Label.objects.filter(project=project).values_list("id", "name")),
        feature_names=list(project.feature_names or []),
        image_url=lambda item_id: item_image_url_signed(item_id, base_url),
        options=options,
    )
    if sql_writers.supported(project, fmt, options):
        return sql_writers.project_export_sql(project, fmt, ctx, batch or settings.LABELHUB_EXPORT_BATCH)
    return formats.write(fmt, export_rows(project, options, batch=batch), ctx)
