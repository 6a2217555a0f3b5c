"""Export a project's labels to a file or stdout, streamed (the same export as GET /api/projects/{id}/export)."""
import sys
from contextlib import nullcontext
from datetime import UTC

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_naive, make_aware

from annotations.exports.formats import FORMATS
from annotations.exports.rows import MODES, ExportOptions
from annotations.exports.selectors import project_export
from annotations.models import Project


class Command(BaseCommand):
    help = "Export a project's labels as jsonl, csv, json or labelstudio; errors exit non-zero with one line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="Project slug or id.")
        parser.add_argument("--format", required=True, dest="fmt", choices=FORMATS)
        parser.add_argument("--mode", default="final", choices=MODES)
        parser.add_argument("--since", help="Only annotations changed at or after this ISO 8601 time (UTC if no zone).")
        parser.add_argument("--include-prediction", action="store_true")
        parser.add_argument("--include-audit", action="store_true")
        parser.add_argument("--output", help="File to write (default: standard output).")

    def handle(self, *args, project: str, fmt: str, mode: str, since: str | None, output: str | None,
               include_prediction: bool, include_audit: bool, **options) -> None:
        target = Project.objects.filter(slug=project).first() or (
            Project.objects.filter(pk=int(project)).first() if project.isdigit() else None
        )
        if target is None:
            raise CommandError(f"No project with slug or id {project!r}.")
        since_at = None
        if since:
            try:
                since_at = parse_datetime(since)
            except ValueError:
                since_at = None
            if since_at is None:
                raise CommandError(f"--since {since!r} is not an ISO 8601 date and time.")
            if is_naive(since_at):
                since_at = make_aware(since_at, timezone=UTC)
            try:
                since_at = since_at.astimezone(UTC)
            except OverflowError:  # 9999-12-31T23:59-14:00 is past the year 9999 in UTC
                raise CommandError(f"--since {since!r} is out of range (years 1 to 9999 in UTC).") from None
        opts = ExportOptions(
            mode=mode, since=since_at, include_prediction=include_prediction, include_audit=include_audit
        )
        chunks = project_export(target, fmt, opts, base_url=settings.LABELHUB_SITE_URL)
        try:
            with open(output, "w", encoding="utf-8", newline="") if output else nullcontext(sys.stdout) as out:
                for chunk in chunks:
                    out.write(chunk)
        except OSError as exc:
            raise CommandError(f"Cannot write {output or 'the export'}: {exc.strerror or exc}.") from None
