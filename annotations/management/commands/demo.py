"""Create the demo users and projects from data scikit-learn ships; safe to run again."""
import csv
import io
import json
import secrets
import tempfile
import zipfile
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from PIL import Image

from annotations import selectors, services
from annotations.imports import services as import_services
from annotations.models import Label, Membership, Project

DIGIT_SCALE = 4  # 8×8 digits are stored at 32×32 so thumbnails and the page stay sharp.


def _credentials_path() -> Path:
    return Path(settings.VAR_DIR) / "demo_credentials.json"


def _credentials() -> dict[str, str]:
    """Demo passwords, generated once and kept under var/ so later runs can print them again."""
    path = _credentials_path()
    if path.exists():
        return json.loads(path.read_text())
    creds = {"admin": secrets.token_urlsafe(9), "expert": secrets.token_urlsafe(9)}
    _credentials_save(creds)
    return creds


def _credentials_save(creds: dict[str, str]) -> None:
    path = _credentials_path()
    path.write_text(json.dumps(creds))
    path.chmod(0o600)


def _digit_png(pixels) -> bytes:
    grey = (255 - pixels * 255 / 16).clip(0, 255).astype("uint8")  # dark ink on white paper
    image = Image.fromarray(grey, mode="L").resize((8 * DIGIT_SCALE, 8 * DIGIT_SCALE), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


class Command(BaseCommand):
    help = ("Create an admin, an expert, two demo projects (digits images, wine table) and an API client of the wine "
            "project; prints the logins and the client's token.")

    def handle(self, *args, **options) -> None:
        creds = _credentials()
        admin = self._user("admin", creds["admin"], staff=True)
        expert = self._user("expert", creds["expert"], staff=False)

        digits = self._project(
            slug="digits", name="Handwritten digits", kind=Project.Kind.IMAGE,
            labels=[(str(d), str(d)) for d in range(10)],
            instructions="Which digit (0–9) is written? Press its key. Skip when you cannot tell.",
            admin=admin, expert=expert,
        )
        wine = self._project(
            slug="wine", name="Wine cultivars", kind=Project.Kind.TABULAR,
            labels=[(f"cultivar_{c}", str(c + 1)) for c in range(3)],
            instructions="Chemical analysis of wines from three cultivars. Assign the cultivar (keys 1–3).",
            admin=admin, expert=expert,
        )
        self._import_digits(digits, admin)
        self._import_wine(wine, admin)
        client, token = self._api_client(wine, creds)

        site = f"http://127.0.0.1:{settings.LABELHUB_WEB_PORT}"
        self.stdout.write(self.style.SUCCESS(f"Demo ready. Log in at {site}/accounts/login/"))
        self.stdout.write(f"  admin  / {creds['admin']}   (staff: /admin/, manages both projects)")
        self.stdout.write(f"  expert / {creds['expert']}   (annotator)")
        self.stdout.write(f"  API client {client} (predicts and gives feedback in {wine.name}): "
                          f"Authorization: Token {token}")
        self.stdout.write(f"    curl -H 'Authorization: Token {token}' -H 'Content-Type: application/json' "
                          f"-d '{{\"values\": [13.2, 1.8, 2.4, 16, 100, 2.8, 3, 0.3, 2, 5.6, 1, 3.2, 1100]}}' "
                          f"{site}/api/projects/{wine.pk}/predict")

    def _api_client(self, project: Project, creds: dict[str, str]) -> tuple[str, str]:
        """The wine project's API client and its token: made once, the token kept with the demo passwords."""
        username = services.api_client_username(project, "demo")
        existing = selectors.api_client_list(project).filter(user__username=username, managed=True).first()
        if existing is None:
            _user, creds["client_token"] = services.api_client_create(project=project, name="demo")
        elif "client_token" not in creds:  # made by an older run: its token was never kept, so issue another
            creds["client_token"] = services.api_client_token_issue(client=existing.user)
        else:
            return username, creds["client_token"]
        _credentials_save(creds)
        return username, creds["client_token"]

    def _user(self, username: str, password: str, *, staff: bool):
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"is_staff": staff, "is_superuser": staff}
        )
        if created:
            user.set_password(password)
            user.save(update_fields=["password"])
        return user

    @transaction.atomic
    def _project(self, *, slug, name, kind, labels, instructions, admin, expert) -> Project:
        project, _ = Project.objects.get_or_create(
            slug=slug, defaults={"name": name, "kind": kind, "instructions": instructions}
        )
        for order, (label, key) in enumerate(labels):
            Label.objects.get_or_create(project=project, name=label, defaults={"shortcut": key, "order": order})
        Membership.objects.get_or_create(project=project, user=admin, defaults={"role": Membership.Role.MANAGER})
        Membership.objects.get_or_create(project=project, user=expert, defaults={"role": Membership.Role.ANNOTATOR})
        return project

    def _import_digits(self, project: Project, user) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        if project.items.count() >= len(digits.images):
            return
        with tempfile.NamedTemporaryFile(suffix=".zip") as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
                for index, pixels in enumerate(digits.images):
                    archive.writestr(f"digits/digit-{index:04d}.png", _digit_png(pixels))
            tmp.flush()
            tmp.seek(0)
            uploads = [("digits.zip", tmp)]
            (job,) = import_services.import_jobs_submit(project=project, user=user, uploads=uploads, wait=True)
            self._report(job)

    def _import_wine(self, project: Project, user) -> None:
        from sklearn.datasets import load_wine

        wine = load_wine()
        if project.items.count() >= len(wine.data):
            return
        with tempfile.NamedTemporaryFile("w+", suffix=".csv", newline="") as tmp:
            writer = csv.writer(tmp)
            writer.writerow(["external_id", *wine.feature_names, "meta_cultivar"])
            for index, (row, target) in enumerate(zip(wine.data, wine.target)):
                writer.writerow([f"wine-{index:03d}", *row.tolist(), f"cultivar_{target}"])
            tmp.flush()
            tmp.seek(0)
            with open(tmp.name, "rb") as handle:
                uploads = [("wine.csv", handle)]
                (job,) = import_services.import_jobs_submit(project=project, user=user, uploads=uploads, wait=True)
                self._report(job)

    def _report(self, job) -> None:
        self.stdout.write(
            f"{job.project.name}: imported {job.filename}: {job.created_count} created, "
            f"{job.unchanged_count} unchanged, {job.rejected_count} rejected"
        )
        for error in job.errors:
            self.stderr.write(f"  row {error['row']}: {error['reason']}")
