"""Create an API client of a project (or give one a new token) and print its token once."""
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotations import selectors, services
from annotations.models import Project
from labelhub.api import DomainError


class Command(BaseCommand):
    help = ("Create an API client of a project: an account that may predict and give feedback there, and nothing "
            "else. Prints its token once. --new-token gives an existing client a new one. Errors: one line, non-zero "
            "exit.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="Project slug or id.")
        parser.add_argument("--name", required=True, help="Client name (the account is name@project-slug).")
        parser.add_argument("--new-token", action="store_true", help="Give the existing client a new token.")

    def handle(self, *args, project: str, name: str, new_token: bool, **options) -> None:
        target = Project.objects.filter(slug=project).first() or (
            Project.objects.filter(pk=int(project)).first() if project.isdigit() and int(project) < 2**63 else None
        )
        if target is None:
            raise CommandError(f"No project with slug or id {project!r}.")
        try:
            if new_token:
                username = services.api_client_username(target, name)
                membership = selectors.api_client_list(target).filter(user__username=username, managed=True).first()
                if membership is None:
                    raise CommandError(f"No API client {name!r} of project {target.slug!r} alone.")
                client, key = membership.user, services.api_client_token_issue(client=membership.user)
            else:
                client, key = services.api_client_create(project=target, name=name)
        except DomainError as exc:
            reasons = (exc.details or {}).items()
            detail = " ".join(f"{field}: {' '.join(map(str, why))}" for field, why in reasons)
            raise CommandError(f"{exc.message} {detail}".strip()) from None
        self.stdout.write(f"API client {client.get_username()} of {target.slug}; its token (shown once):")
        self.stdout.write(key)
