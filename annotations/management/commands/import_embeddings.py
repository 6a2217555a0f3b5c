"""Store embeddings of a project's items, by external_id, from a JSONL or CSV file on the command line."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotations.imports import embeddings
from annotations.imports.rows import error_line
from annotations.models import Project
from labelhub.api import DomainError


class Command(BaseCommand):
    help = (
        "Store the embeddings of a JSONL or CSV file (external_id and the project's embedding field) on the "
        "project's items; exit non-zero if a row was rejected."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="Project slug or id.")
        parser.add_argument("file", type=Path, metavar="FILE")

    def handle(self, *args, project: str, file: Path, **options) -> None:
        target = Project.objects.filter(slug=project).first() or (
            Project.objects.filter(pk=int(project)).first() if project.isdigit() else None
        )
        if target is None:
            raise CommandError(f"No project with slug or id {project!r}.")
        if not file.is_file():
            raise CommandError(f"Not a file: {file}.")
        try:
            with file.open("rb") as fileobj:
                outcome = embeddings.embeddings_import_file(project=target, filename=file.name, fileobj=fileobj)
        except DomainError as exc:
            raise CommandError(f"{exc.message} Nothing was stored.") from exc
        self.stdout.write(
            f"{file.name}: {outcome.updated} updated, {outcome.unchanged} unchanged, {outcome.rejected} rejected"
        )
        for error in outcome.errors:
            self.stderr.write(f"{file.name}: {error_line(error)}")
        if outcome.rejected > len(outcome.errors):
            self.stderr.write(f"{file.name}: … and {outcome.rejected - len(outcome.errors)} more rejected rows")
        if outcome.rejected:
            raise CommandError(f"{outcome.rejected} row(s) rejected.")
