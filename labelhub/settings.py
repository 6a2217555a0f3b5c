"""LabelHub settings, read from the environment through one django-environ object."""
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from labelhub import __version__

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _env_int(name: str, default: int, low: int, high: int) -> int:
    """An integer from the environment; a value outside [low, high] stops the start with its name."""
    value = env.int(name, default=default)
    if not low <= value <= high:
        raise ImproperlyConfigured(f"{name} must be between {low} and {high}, not {value}.")
    return value


DEBUG = env.bool("DEBUG", default=False)
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))

if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="insecure-local-development-key-only-for-debug")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Served over HTTPS (production, usually behind a TLS-terminating proxy): secure cookies, HSTS and a
# redirect from plain HTTP. Off by default so that the embedded default and loopback benchmarks work.
HTTPS = env.bool("HTTPS", default=False)
if HTTPS:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    if not SECURE_HSTS_PRELOAD:
        # Joining browsers' preload list is hard to undo: the site's owner opts in, the check need not nag.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    if env.bool("BEHIND_TLS_PROXY", default=True):
        # The proxy terminates TLS and says so in X-Forwarded-Proto; it must strip the header from clients.
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "django_celery_beat",
    "django_htmx",
    "annotations",
    "learner",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # NUL in a query string or a page's form field is a 400, never a database error.
    "labelhub.middleware.RejectNulMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Near the end, so that it sees a view's exception first: a database lock timeout answers 503, not 500.
    "labelhub.middleware.DatabaseBusyMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "labelhub.urls"
WSGI_APPLICATION = "labelhub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: an SQLite file under var/ unless DATABASE_URL names another (postgres://...).
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'labelhub.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one file: WAL lets readers run beside the writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": env.cache("CACHE_URL", default=f"filecache://{VAR_DIR / 'cache'}"),
    # API rate-limit counters; must be shared by every web process (Redis in production).
    "throttle": env.cache("THROTTLE_CACHE_URL", default=env.str("CACHE_URL", default=f"filecache://{VAR_DIR / 'throttle'}")),
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"

# Login lockout (django-axes), on the login page and the admin's: after LOGIN_FAILURE_LIMIT failed
# attempts a client's further attempts are refused, with a page saying so, for LOGIN_COOLOFF_MINUTES.
# By default a client is a username from one address, so that nobody can lock someone else out
# from elsewhere; "address" locks every username from that address, "user_or_address" both ways.
# Attempts are kept in the database, so every web process sees them.
AXES_FAILURE_LIMIT = _env_int("LOGIN_FAILURE_LIMIT", 5, 1, 100)
AXES_COOLOFF_TIME = timedelta(minutes=_env_int("LOGIN_COOLOFF_MINUTES", 15, 1, 7 * 24 * 60))
_LOCKOUT_BY = {
    "user_and_address": [["username", "ip_address"]],
    "address": ["ip_address"],
    "user_or_address": ["username", "ip_address"],
}
_lockout_by = env.str("LOGIN_LOCKOUT_BY", default="user_and_address")
if _lockout_by not in _LOCKOUT_BY:
    raise ImproperlyConfigured(f"LOGIN_LOCKOUT_BY must be one of {', '.join(_LOCKOUT_BY)}, not {_lockout_by!r}.")
AXES_LOCKOUT_PARAMETERS = _LOCKOUT_BY[_lockout_by]
AXES_RESET_ON_SUCCESS = True
# A locked-out client's cool-off runs from the lockout, as the page says, however often it tries meanwhile.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "labelhub.authentication.login_locked_out"
AXES_CLIENT_IP_CALLABLE = "labelhub.throttling.client_address"
# django-axes first: it refuses a login from a locked-out client before any password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Email (invitations to a project): sent when EMAIL_HOST is set (SMTP), or in DEBUG to the console;
# otherwise a manager copies the invitation's link from the Members page. EMAIL_BACKEND overrides.
EMAIL_HOST = env.str("EMAIL_HOST", default="")
EMAIL_PORT = env.int("EMAIL_PORT", default=587)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=True)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="LabelHub <labelhub@localhost>")
_email_backend = env.str("EMAIL_BACKEND", default="")
EMAIL_BACKEND = _email_backend or ("django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST
                                   else "django.core.mail.backends.console.EmailBackend")
LABELHUB_EMAIL_ENABLED = bool(_email_backend or EMAIL_HOST or DEBUG)

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = env.bool("STATIC_USE_FINDERS", default=True)

MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MODEL_STORE_ROOT = Path(env.str("MODEL_STORE_ROOT", default=str(VAR_DIR / "models")))
# How many of the newest versions, and of the versions live most recently, keep their model files
# (learner/services/retention.py says what else is kept).
LABELHUB_MODEL_FILES_KEPT = _env_int("MODEL_FILES_KEPT", 20, 2, 100_000)
# A turn of the loop (retrain and rescoring) at most this long is cheap: one new label starts the next
# retrain (learner/services/triggers.py). 0: every retrain waits for the project's retrain_every_n_labels.
LABELHUB_CHEAP_CYCLE_SECONDS = _env_int("CHEAP_CYCLE_SECONDS", 10, 0, 3600)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "models": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MODEL_STORE_ROOT), "base_url": None},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Uploads larger than this go to a temporary file instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# Import limits (bad input is rejected with a readable reason, never half-stored).
LABELHUB_IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=1024 * 1024 * 1024)
LABELHUB_IMAGE_MAX_BYTES = env.int("IMAGE_MAX_BYTES", default=20 * 1024 * 1024)
LABELHUB_IMAGE_MAX_PIXELS = env.int("IMAGE_MAX_PIXELS", default=50_000_000)
LABELHUB_TEXT_MAX_CHARS = env.int("TEXT_MAX_CHARS", default=100_000)
LABELHUB_MAX_FEATURES = env.int("MAX_FEATURES", default=4096)
LABELHUB_ZIP_MAX_ENTRIES = env.int("ZIP_MAX_ENTRIES", default=200_000)
# A ZIP is bounded by the work it makes, not by its size: what its entries inflate to together (from
# the central directory before anything is read, and counted again while reading), and that as a
# multiple of the archive's own size. Images hardly compress; a ZIP of them inflates about 1:1.
LABELHUB_ZIP_MAX_BYTES = env.int("ZIP_MAX_BYTES", default=2 * 1024**3)
LABELHUB_ZIP_MAX_RATIO = env.int("ZIP_MAX_RATIO", default=100)
LABELHUB_IMPORT_ERRORS_KEPT = 1000
LABELHUB_FEATURE_CHUNK = env.int("FEATURE_CHUNK", default=5000)
# Featurizer plugins a project may choose (learner.ml.registry): name → dotted path of a class,
# e.g. FEATURIZER_PLUGINS="minilm=myteam.features.MiniLM,clip=myteam.features.Clip".
LABELHUB_FEATURIZER_PLUGINS = env.dict("FEATURIZER_PLUGINS", default={})
# Items per pool-scoring chunk task: large enough that a task's fixed cost (message, model
# lookup, commit) is small beside its work, small enough that workers share a pool evenly and a
# chunk's rows commit in well under a second.
LABELHUB_SCORING_CHUNK = env.int("SCORING_CHUNK", default=20_000)
# A scoring of a larger pool is served as soon as its head, about this many of the highest
# priorities, is indexed; the queue's index over the whole pool is built in the background.
LABELHUB_SCORING_HEAD = env.int("SCORING_HEAD", default=50_000)
# Items per /predict request; experiments evaluated on beat and after each outcome.
LABELHUB_PREDICT_MAX_BATCH = env.int("PREDICT_MAX_BATCH", default=1000)
# Pixels of all the images of one /predict request together (each image also within IMAGE_MAX_PIXELS):
# decoding runs in the web process, about 1.2 s per 100 million pixels.
LABELHUB_PREDICT_MAX_PIXELS = env.int("PREDICT_MAX_PIXELS", default=250_000_000)
LABELHUB_EXPERIMENT_ALPHA = env.float("EXPERIMENT_ALPHA", default=0.05)
LABELHUB_EXPERIMENT_LOOKS = env.int("EXPERIMENT_LOOKS", default=4)
LABELHUB_EXPERIMENT_MIN_GAIN = env.float("EXPERIMENT_MIN_GAIN", default=0.02)
# Recorded on every model version for lineage; empty: `git describe` of the checkout, else the package version.
LABELHUB_CODE_VERSION = env.str("CODE_VERSION", default="")
# Export: items read per batch (server-side cursor fetch), lifetime of signed image links, and how far
# before the export's start its "next since" cursor points (a label is timestamped before it commits).
LABELHUB_EXPORT_BATCH = env.int("EXPORT_BATCH", default=2000)
LABELHUB_EXPORT_URL_MAX_AGE = env.int("EXPORT_URL_MAX_AGE", default=7 * 24 * 3600)
LABELHUB_EXPORT_SINCE_OVERLAP = env.int("EXPORT_SINCE_OVERLAP", default=60)
# Absolute links in exports made by `manage.py export_labels` (the API uses the request's host).
LABELHUB_SITE_URL = env.str("SITE_URL", default="").rstrip("/")
# The port `make run` serves on (Procfile); the demo's printed links name it.
LABELHUB_WEB_PORT = _env_int("WEB_PORT", 8000, 1, 65535)

# Proxies in front of the web processes that append the client's address to X-Forwarded-For: 0 reads
# the address from the connection (a client could write any X-Forwarded-For itself), 1 behind one
# TLS proxy. Rate limits and the login lockout count by this address.
NUM_PROXIES = _env_int("NUM_PROXIES", 0, 0, 5)

# API tokens (django-rest-knox): the database keeps a SHA-512 digest, the token is shown once, when
# it is made, and stops working API_TOKEN_TTL_DAYS after that.
REST_KNOX = {"TOKEN_TTL": timedelta(days=_env_int("API_TOKEN_TTL_DAYS", 90, 1, 3650)), "AUTH_HEADER_PREFIX": "Token"}

REST_FRAMEWORK = {
    # Token first: a request without credentials gets 401 with "WWW-Authenticate: Token", not a bare 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "labelhub.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "labelhub.api.exception_handler",
    # DRF's JSON parser bounded: body size (API_JSON_MAX_BYTES), nesting, and no NUL or lone surrogates in strings.
    "DEFAULT_PARSER_CLASSES": [
        "labelhub.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # One throttle per request: the view's scope (queue, predict, export) if it names one, else "user";
    # anonymous callers by address. The queue's and predict's clients send many small requests each.
    "DEFAULT_THROTTLE_CLASSES": ["labelhub.throttling.ScopedUserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", default="60/min"),
        "user": env.str("THROTTLE_USER", default="1200/min"),
        "queue": env.str("THROTTLE_QUEUE", default="12000/min"),
        "predict": env.str("THROTTLE_PREDICT", default="30000/min"),
        "export": env.str("THROTTLE_EXPORT", default="60/hour"),
        # Requests with a wrong or expired token, per address: past this rate they get a 429.
        "auth_failure": env.str("THROTTLE_AUTH_FAILURE", default="30/min"),
    },
    "NUM_PROXIES": NUM_PROXIES,
}
# The largest JSON request body (413 above it); a full /predict batch of long texts must fit.
LABELHUB_API_JSON_MAX_BYTES = env.int("API_JSON_MAX_BYTES", default=32 * 1024 * 1024)
# Cursor-paginated lists (items, annotations): rows per page unless the client asks (page_size, at most the max).
LABELHUB_API_PAGE_SIZE = env.int("API_PAGE_SIZE", default=100)
LABELHUB_API_MAX_PAGE_SIZE = env.int("API_MAX_PAGE_SIZE", default=1000)
SPECTACULAR_SETTINGS = {
    "TITLE": "LabelHub API",
    "DESCRIPTION": "Human-in-the-loop labeling with active learning.",
    "VERSION": __version__,
    "SERVE_INCLUDE_SCHEMA": False,
    "ENUM_NAME_OVERRIDES": {"ImportJobStatusEnum": "annotations.models.ImportJob.Status"},
    # Swagger UI and Redoc served from our static files (no CDN; the CSP allows only 'self').
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "labelhub.api.error_responses_hook"],
}

# Content-Security-Policy: scripts and styles only from our own static files, no inline script,
# no plugins, no framing. Inline style attributes stay allowed (label colours come from the data
# as CSS values, never as markup). Pages are checked against it by a browser test.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF, "data:", "blob:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# Celery: JSON only, a time limit on every task, late acks with prefetch 1, one queue per kind. These are
# every task's defaults; a task decorator names only what differs (its time limits, mostly).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Without this, kombu writes its exchange tables to ./control in the working directory.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A label or an import is committed before its task is sent: a broker that hangs must fail
    # the send in seconds (beat reconciles later), not hold the expert's request for a minute.
    # The visibility timeout must outlast the longest task (train_run: 3,600 s) or Redis would
    # redeliver a run that is still working, and the redelivery would fail it as lost.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5, "visibility_timeout": 7200}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=900)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=840)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery closes the database connection before and after every task unless told to reuse it: each
# task then opened a new PostgreSQL session with cold caches (a chunk of pool scoring took twice
# as long). Connections are instead kept as Django keeps them between requests (CONN_MAX_AGE,
# health checks): see labelhub/celery.py.
CELERY_DB_REUSE_MAX = 2**31
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "learner.score_*": {"queue": "scoring"},
    "learner.features_*": {"queue": "scoring"},
    "learner.train*": {"queue": "training"},
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# The fixed beat entries: at its start, beat's DatabaseScheduler writes each into its table under this
# name, updating a row of the same name in place: the rows that learner's migrations 0002, 0003 and 0005
# wrote carry these names, so no entry runs twice, and one an admin disabled stays disabled. Renaming an
# entry leaves the row of its old name behind (a migration must delete it). Per-project retrain
# schedules are rows of their own (learner.services.triggers).
CELERY_BEAT_SCHEDULE = {
    name: {"task": task, "schedule": every}
    for name, task, every in [
        ("Catch up item features", "learner.features_reconcile", timedelta(minutes=10)),
        ("Check retrain triggers (label count, degradation)", "learner.triggers_check", timedelta(minutes=1)),
        ("Check data drift", "learner.drift_check_all", timedelta(hours=1)),
        ("Fail training runs whose worker was lost", "learner.training_runs_reap", timedelta(minutes=5)),
        ("Evaluate running A/B experiments", "learner.experiments_evaluate", timedelta(minutes=5)),
        ("Resend chunks of stalled pool scorings", "learner.score_pool_reconcile", timedelta(minutes=5)),
    ]
}
CELERY_TIMEZONE = TIME_ZONE

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # django-axes announces itself at every start of every process and command; its lockouts still log.
    "loggers": {"axes.apps": {"level": "WARNING"}},
}

VAR_DIR.mkdir(parents=True, exist_ok=True)
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
