"""Import item files into a project from the command line, synchronously."""
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotations.imports import services
from annotations.imports.rows import error_line
from annotations.models import ImportJob, Project
from labelhub.api import DomainError


class Command(BaseCommand):
    help = "Import CSV, JSONL, JSON, image or ZIP files into a project; exit non-zero if anything was rejected."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="Project slug or id.")
        parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
        parser.add_argument(
            "--user", help="Username recorded as importer and annotator of pre-labels (default: the first superuser)."
        )

    def handle(self, *args, project: str, files: list[Path], user: str | None, **options) -> None:
        target = Project.objects.filter(slug=project).first() or (
            Project.objects.filter(pk=int(project)).first() if project.isdigit() else None
        )
        if target is None:
            raise CommandError(f"No project with slug or id {project!r}.")
        users = get_user_model().objects.order_by("pk")
        importer = users.filter(username=user).first() if user else users.filter(is_superuser=True).first()
        if importer is None:
            raise CommandError(f"No user {user!r}." if user else "No superuser exists; pass --user USERNAME.")
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise CommandError(f"Not a file: {', '.join(missing)}.")

        failed = rejected = 0
        for path in files:
            try:
                with path.open("rb") as fileobj:
                    (job,) = services.import_jobs_submit(
                        project=target, user=importer, uploads=[(path.name, fileobj)], wait=True
                    )
            except DomainError as exc:
                failed += 1
                self.stderr.write(f"{path.name}: refused: {exc.message}")
                continue
            if job.status == ImportJob.Status.FAILED:
                failed += 1
                self.stderr.write(f"{path.name}: failed, nothing imported: {job.message}")
                continue
            rejected += job.rejected_count
            self.stdout.write(
                f"{path.name}: {job.created_count} created, {job.unchanged_count} unchanged, "
                f"{job.rejected_count} rejected, {job.labels_count} pre-labels"
            )
            for error in job.errors:
                self.stderr.write(f"{path.name}: {error_line(error)}")
            if job.rejected_count > len(job.errors):
                self.stderr.write(f"{path.name}: … and {job.rejected_count - len(job.errors)} more rejected rows")
        if failed or rejected:
            raise CommandError(f"{failed} file(s) failed, {rejected} row(s) rejected.")
