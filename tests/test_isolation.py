"""A test run keeps the embedded default's files (SQLite database, broker folders, caches) in a folder of its own."""
import tempfile
from pathlib import Path

import pytest
from django.db import connection


@pytest.mark.django_db
def test_the_run_keeps_its_database_broker_and_caches_out_of_the_developers_var_folder(settings):
    var_dir = Path(settings.VAR_DIR).resolve()
    assert var_dir != (Path(settings.BASE_DIR) / "var").resolve()
    assert Path(tempfile.gettempdir()).resolve() in var_dir.parents

    if connection.vendor == "sqlite":
        # A file, which the worker processes of the integration tests open too; not the in-memory default.
        assert Path(connection.settings_dict["NAME"]).resolve() == var_dir / "test.sqlite3"
        assert (var_dir / "test.sqlite3").is_file()
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        folders = [Path(v) for k, v in settings.CELERY_BROKER_TRANSPORT_OPTIONS.items() if "folder" in k]
        assert len(folders) == 4 and all(folder.resolve().is_relative_to(var_dir) for folder in folders)
    caches = [Path(c["LOCATION"]) for c in settings.CACHES.values() if c["BACKEND"].endswith("FileBasedCache")]
    assert all(folder.resolve().is_relative_to(var_dir) for folder in caches)
