"""Settings for the test run: the project's settings with a test secret."""
import os

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-not-for-production")

from labelhub.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Rate-limit counters live per test process, so that one run's requests never throttle the next run's.
CACHES = {**CACHES, "throttle": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "throttle"}}
