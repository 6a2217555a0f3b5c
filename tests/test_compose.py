"""docker-compose.yml describes the production topology with commands that name real modules."""
import importlib
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def _argv(service: str) -> list[str]:
    command = SERVICES[service]["command"]
    return command if isinstance(command, list) else shlex.split(command)


def test_topology_has_every_service_with_healthchecks():
    assert set(SERVICES) == {"postgres", "redis", "web", "worker", "beat"}
    for name in ("postgres", "redis", "web", "worker"):
        assert "test" in SERVICES[name]["healthcheck"], name


def test_app_services_use_postgres_and_redis_and_shared_volumes():
    for name in ("web", "worker", "beat"):
        service = SERVICES[name]
        env = service["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379/")
        mounts = {v.split(":")[1] for v in service["volumes"]}
        assert {env["MEDIA_ROOT"], env["MODEL_STORE_ROOT"]} <= mounts
        assert set(service["depends_on"]) == {"postgres", "redis"}
    assert {"media", "models", "pgdata"} <= set(COMPOSE["volumes"])


def test_worker_is_scalable_and_beat_runs_once():
    worker = SERVICES["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert SERVICES["beat"]["deploy"]["replicas"] == 1


def test_commands_name_real_modules():
    web = " ".join(_argv("web"))
    assert "gunicorn labelhub.wsgi:application" in web and "manage.py migrate" in web
    module, attr = "labelhub.wsgi:application".split(":")
    assert callable(getattr(importlib.import_module(module), attr))

    for name, role in (("worker", "worker"), ("beat", "beat")):
        argv = _argv(name)
        assert argv[:3] == ["celery", "-A", "labelhub"] and argv[3] == role
        app = importlib.import_module(argv[2]).celery_app
        assert app.main == "labelhub"
    queues = _argv("worker")[_argv("worker").index("-Q") + 1].split(",")
    from django.conf import settings

    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()} | {settings.CELERY_TASK_DEFAULT_QUEUE}
    assert routed <= set(queues), "every routed queue must have a worker"


def test_env_example_lists_what_settings_read():
    example = (ROOT / ".env.example").read_text()
    for var in ("SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "ALLOWED_HOSTS", "MEDIA_ROOT", "MODEL_STORE_ROOT"):
        assert f"{var}=" in example, var
