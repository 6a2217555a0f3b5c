"""Settings for the test run: the project's settings with a test secret, in a temporary folder of the run's own."""
import atexit
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-not-for-production")

# The embedded default's files of a test run (the SQLite test database, the filesystem broker's folders, the
# caches) live in a temporary folder of the run's own, never in the developer's var/. The worker processes the
# tests start inherit the folder through the environment; the run that made it removes it when it ends.
if not os.environ.get("LABELHUB_TEST_VAR_DIR"):
    os.environ["LABELHUB_TEST_VAR_DIR"] = tempfile.mkdtemp(prefix="labelhub-tests-")
    _maker = os.getpid()  # not a forked child that exits before the run does
    atexit.register(lambda: os.getpid() == _maker and shutil.rmtree(os.environ["LABELHUB_TEST_VAR_DIR"], True))
os.environ["VAR_DIR"] = os.environ["LABELHUB_TEST_VAR_DIR"]

from labelhub.settings import *  # noqa: E402,F401,F403
from labelhub.settings import DATABASES, VAR_DIR  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Rate-limit counters live per test process, so that one run's requests never throttle the next run's.
CACHES = {**CACHES, "throttle": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "throttle"}}

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file rather than pytest-django's in-memory database: the worker processes of the integration tests open it too.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(VAR_DIR) / "test.sqlite3")}
