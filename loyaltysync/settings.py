"""Settings for loyaltysync.

Everything that differs between machines comes from the environment (django-environ) with safe
defaults for development: a local SQLite file and django-q2's ORM broker, so a new user needs no
servers. Business configuration (the Braze connection, field mappings, workflows) is not here: it
lives in models edited in the admin.
"""

import os
from email.utils import getaddresses
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Where the SQLite file, collected static files and worker logs go by default. In a checkout that is
# var/ beside manage.py; an installed wheel's BASE_DIR is site-packages, so there it is var/ in the
# working directory (the systemd units set one) unless VAR_DIR says otherwise.
VAR_DIR = Path(
    env.str("VAR_DIR", default=str(BASE_DIR / "var" if (BASE_DIR / "manage.py").exists() else Path.cwd() / "var"))
)

DEBUG = env.bool("DEBUG", default=True)
if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key-do-not-use-in-production")
else:
    SECRET_KEY = env.str("SECRET_KEY")  # required: raises ImproperlyConfigured when missing
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_filters",
    "corsheaders",
    "django_jsonform",
    "drf_spectacular_sidecar",
    "django_guid",
    "django_q",
    "axes",
    "loyaltysync",
    "braze_integration",
    "workflows",
]

MIDDLEWARE = [
    # First, so every log line of the request carries its id (X-Request-ID, answered in the response).
    "django_guid.middleware.guid_middleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Before CommonMiddleware, as django-cors-headers asks, so redirects carry the CORS headers too.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "loyaltysync.middleware.query_nul_refused",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns lockouts into a response.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "loyaltysync.urls"
WSGI_APPLICATION = "loyaltysync.wsgi.application"

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

# --- Database -------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'loyaltysync.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the django-q2 workers write to one file at once: WAL lets readers go on
    # while one writes, IMMEDIATE takes the write lock at BEGIN (no deadlock-prone lock upgrades),
    # and the busy timeout makes a writer wait for the lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
        }
    )
    # A file, not :memory:, so tests can share the database with real worker processes; one per
    # test run, so runs side by side never share it.
    DATABASES["default"]["TEST"] = {
        "NAME": env.str("TEST_SQLITE_NAME", default=str(VAR_DIR / f"test-{os.getpid()}.sqlite3"))
    }
# Connections are kept between requests and tasks, on SQLite too: opening one costs a PostgreSQL
# backend, or SQLite's file and pragmas (about 2 ms of CPU, which the ORM broker's pusher paid on
# every poll: 10 polls a second when idle).
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Broker, cache ---------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
Q_WORKERS = env.int("Q_WORKERS", default=2)
Q_CLUSTER = {
    "name": "loyaltysync",
    "workers": Q_WORKERS,
    "recycle": 500,
    # A sync batch finishes in seconds; a task that runs longer is stuck and gets killed.
    "timeout": env.int("Q_TIMEOUT", default=300),
    "retry": env.int("Q_RETRY", default=360),
    "max_attempts": 3,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 1000,
    "poll": env.float("Q_POLL", default=0.1),
    "label": "Tasks",
}
# The cache is shared by every process on every machine: it holds the API throttle's counts (one
# budget per token, not one per gunicorn worker) and django-q2's cluster stats (which /readyz reads).
# Without Redis that is the database cache; its table is created by every migrate (LoyaltyConfig).
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    Q_CLUSTER["orm"] = "default"
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "loyaltysync_cache",
            # Beyond this the cache drops expired entries, then a third of the rest (throttle counts
            # included): room for thousands of active tokens; more want Redis.
            "OPTIONS": {"MAX_ENTRIES": 10_000},
        }
    }
Q_CLUSTER["sync"] = env.bool("Q_SYNC", default=False)

# --- Auth, i18n, static ------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(VAR_DIR / "static"))

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # Cursor pagination (stable while rows are inserted), ?page_size= up to API_MAX_PAGE_SIZE.
    "DEFAULT_PAGINATION_CLASS": "loyaltysync.api.pagination.CursorPage",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Per API token (loyaltysync.api.throttling); 429 with Retry-After beyond the rate.
    "DEFAULT_THROTTLE_CLASSES": ["loyaltysync.api.throttling.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"token": env.str("API_THROTTLE_RATE", default="6000/min")},
    "EXCEPTION_HANDLER": "loyaltysync.api.exceptions.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "loyaltysync API",
    "DESCRIPTION": "Members and loyalty events. Every endpoint needs `Authorization: Token <key>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's files from drf-spectacular-sidecar, served by this site (no CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # consent_email and consent_sms share one set of values (Braze's subscription states).
    "ENUM_NAME_OVERRIDES": {"ConsentEnum": "loyaltysync.models.Consent"},
}
API_MAX_PAGE_SIZE = env.int("API_MAX_PAGE_SIZE", default=500)
# CORS for storefronts calling the API from a browser: off unless origins are listed, e.g.
# CORS_ALLOWED_ORIGINS=https://shop.example.com,https://m.shop.example.com. Only the API answers CORS.
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/v1/.*$"
CORS_EXPOSE_HEADERS = [
    "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After", "X-Request-ID",
    "Idempotent-Replayed",
]
CORS_ALLOW_HEADERS = ["accept", "authorization", "content-type", "idempotency-key"]

# Largest request body the API accepts (bytes), refused with 413 before it is read (the API's
# BodyWithinLimit; Django applies it to forms); bulk events are capped separately.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1024 * 1024)

# --- Loyalty program ----------------------------------------------------------------------------
LOYALTY = {
    # Points earned per unit of currency spent, before the tier multiplier.
    "POINTS_PER_CURRENCY_UNIT": env.float("LOYALTY_POINTS_PER_UNIT", default=1.0),
    # Days a checkout's points stay pending (the return period) before they can be spent.
    "PENDING_DAYS": env.int("LOYALTY_PENDING_DAYS", default=0),
    # Days until earned points expire; 0 = never.
    "POINTS_EXPIRY_DAYS": env.int("LOYALTY_POINTS_EXPIRY_DAYS", default=365),
    "BULK_EVENTS_MAX": 100,
    # The program currency and rates of other currencies ("USD=0.92,GBP=1.17": one USD is 0.92 EUR).
    # These, and the three above, are the defaults until staff save program settings in the admin.
    "CURRENCY": env.str("LOYALTY_CURRENCY", default="EUR"),
    "CURRENCY_RATES": env.dict("LOYALTY_CURRENCY_RATES", default={}),
}
# Key of the one-way hash that erasure records keep instead of a member id (derived from SECRET_KEY when unset).
LOYALTY_ERASURE_HASH_KEY = env.str("LOYALTY_ERASURE_HASH_KEY", default="")

# --- Braze --------------------------------------------------------------------------------------
# Fernet keys for the API key at rest, newest first (MultiFernet): add a new key in front to rotate,
# run `manage.py braze_rotate_key`, then drop the old one. In development a key is derived from
# SECRET_KEY so that nothing needs setting up.
BRAZE_ENCRYPTION_KEYS = env.list("BRAZE_ENCRYPTION_KEYS", default=[])
if not BRAZE_ENCRYPTION_KEYS and DEBUG:
    import base64
    import hashlib

    BRAZE_ENCRYPTION_KEYS = [base64.urlsafe_b64encode(hashlib.sha256(f"braze:{SECRET_KEY}".encode()).digest()).decode()]
# Loopback URLs the connection may use besides Braze's hosts: the local Braze sandbox, each with its
# port (any other loopback port could be Redis or PostgreSQL). Development: the demo's sandbox.
BRAZE_LOCAL_ENDPOINTS = env.list(
    "BRAZE_LOCAL_ENDPOINTS", default=["http://127.0.0.1:9400", "http://localhost:9400"] if DEBUG else []
)
BRAZE_HTTP_TIMEOUT = env.float("BRAZE_HTTP_TIMEOUT", default=10.0)
# Requests of one worker that may wait for Braze's answer at once. Braze's round trip, not the CPU,
# bounds a worker that waits for one answer at a time (bench/README.md, "Round trip to Braze").
BRAZE_REQUESTS_IN_FLIGHT = env.int("BRAZE_REQUESTS_IN_FLIGHT", default=4)
# How long a worker holds the members it is sending; a killed worker's members are free again after it.
BRAZE_CLAIM_LEASE_SECONDS = env.int("BRAZE_CLAIM_LEASE_SECONDS", default=120)
# Flush tasks that may run at once (each takes a slot); more workers than this idle.
BRAZE_SYNC_CONCURRENCY = env.int("BRAZE_SYNC_CONCURRENCY", default=4)
# A flush task that ran out of work waits this long for more before it ends (see services.sync_flush).
BRAZE_FLUSH_LINGER_SECONDS = env.float("BRAZE_FLUSH_LINGER_SECONDS", default=2.0)
# braze_resync splits the work into key ranges for the qcluster workers; when none takes one within
# this many seconds, the command sends them itself (0: always in the command's own process).
BRAZE_RESYNC_PICKUP_SECONDS = env.float("BRAZE_RESYNC_PICKUP_SECONDS", default=3.0)
BRAZE_RESYNC_PART_MEMBERS = env.int("BRAZE_RESYNC_PART_MEMBERS", default=5000)
# SQLite has one writer, yet two workers sending parts side by side beat one process since the resync
# writes by the set (bench/README.md); false keeps a resync in the command's process on SQLite.
BRAZE_RESYNC_PARALLEL_ON_SQLITE = env.bool("BRAZE_RESYNC_PARALLEL_ON_SQLITE", default=True)

# --- Operations: retention, alarms, alerts, metrics (README "Running it in production") -----------
# Days to keep each log before `braze_prune` (daily) deletes it; 0 keeps it for ever. Rows still needed
# (pending, failed or dead-lettered work, a member's latest request, an unfinished resync) are never deleted.
BRAZE_RETENTION_DAYS = {
    "requests": env.int("BRAZE_RETAIN_REQUESTS_DAYS", default=30),
    "request_members": env.int("BRAZE_RETAIN_REQUEST_MEMBERS_DAYS", default=14),
    # A sent item's dedupe key stops a repeated workflow trigger from sending its event twice: keep
    # sent items longer than the workflows keep their trigger records (WORKFLOW_RUN_RETENTION_DAYS).
    "sent_outbox": env.int("BRAZE_RETAIN_SENT_OUTBOX_DAYS", default=90),
    "resync_runs": env.int("BRAZE_RETAIN_RESYNC_RUNS_DAYS", default=90),
}
BRAZE_PRUNE_BATCH_SIZE = env.int("BRAZE_PRUNE_BATCH_SIZE", default=2000)
# The "stalled" alarm: changes older than this many seconds and no worker seen for the other figure.
BRAZE_ALARM_PENDING_SECONDS = env.int("BRAZE_ALARM_PENDING_SECONDS", default=600)
BRAZE_ALARM_WORKER_SECONDS = env.int("BRAZE_ALARM_WORKER_SECONDS", default=300)
# The alerts go to ADMINS (see the e-mail settings below).
# GET /metrics (Prometheus): answered for `Authorization: Bearer <METRICS_TOKEN>` or a user holding
# braze_integration.view_metrics; 404 unless METRICS_TOKEN is set or METRICS_ENABLED is true.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=bool(METRICS_TOKEN))

# --- Production hardening (check --deploy) ------------------------------------------------------
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Probes of the load balancer or the orchestrator reach the app port over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True

AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = 1  # hours
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]

# --- Health, e-mail, logs ----------------------------------------------------------------------
# /readyz runs these (loyaltysync.health); /healthz runs none.
HEALTH_CHECKS = {
    "database": "loyaltysync.health.Database",
    "broker": "loyaltysync.health.Broker",
    "worker": "loyaltysync.health.WorkerSeen",
    "braze_connection": "braze_integration.health.BrazeConnection",
}
# A worker cluster counts as alive while its stats are younger than this (django-q2 saves them
# every half second and lets them expire after three).
HEALTH_WORKER_SEEN_SECONDS = env.int("HEALTH_WORKER_SEEN_SECONDS", default=30)


def admins_parse(value: str) -> list[tuple[str, str]]:
    """``ADMINS`` as e-mail headers write it: ``"Ops <ops@example.com>, dev@example.com"``."""
    admins = [(name, address) for name, address in getaddresses([value]) if address]
    if value.strip() and (not admins or not all("@" in address for _, address in admins)):
        raise ImproperlyConfigured(f'ADMINS: "{value}" is not a list like "Ops <ops@example.com>, dev@example.com".')
    return admins


# Who gets the error e-mails (mail_admins below), and how they are sent: EMAIL_URL as django-environ
# reads it, e.g. smtp+tls://user:password@smtp.example.com:587 (the console in development).
ADMINS = admins_parse(env.str("ADMINS", default=""))
SERVER_EMAIL = env.str("SERVER_EMAIL", default="loyaltysync@localhost")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default=SERVER_EMAIL)
EMAIL_SUBJECT_PREFIX = env.str("EMAIL_SUBJECT_PREFIX", default="[loyaltysync] ")
vars().update(env.email_url("EMAIL_URL", default="consolemail://" if DEBUG else "smtp://localhost:25"))

DJANGO_GUID = {
    "GUID_HEADER_NAME": "X-Request-ID",
    # An incoming id is kept only when it is a UUID, so a client cannot write text into the logs.
    "VALIDATE_GUID": True,
    # django-guid would replace Access-Control-Expose-Headers with its own header; django-cors-headers
    # exposes it with the rate-limit headers instead (CORS_EXPOSE_HEADERS).
    "EXPOSE_HEADER": False,
}

# Error reports (debug pages, error e-mails) and log lines never show the Braze API key: secret-looking
# POST parameters and variables are hidden, and any key the client used is replaced wherever it ends up.
DEFAULT_EXCEPTION_REPORTER = "braze_integration.logging.SecretsExceptionReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "braze_integration.logging.SecretsReporterFilter"

# LOG_FORMAT=json: one JSON object per line (time, level, logger, message, request_id, traceback).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f'LOG_FORMAT: "{LOG_FORMAT}" is not one of "plain", "json".')
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_secrets": {"()": "braze_integration.logging.RedactSecretsFilter"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
        "request_id": {"()": "django_guid.log_filters.CorrelationId", "correlation_id_field": "request_id"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "loyaltysync.log_format.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s %(request_id)s %(process)d",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",  # ISO 8601 in UTC
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            # The request id first, then the redaction: both run before the line is formatted.
            "filters": ["request_id", "redact_secrets"],
        },
        # Django's error e-mails to ADMINS (when set), as Django configures them, plus the redaction.
        "mail_admins": {
            "class": "django.utils.log.AdminEmailHandler",
            "level": "ERROR",
            "filters": ["require_debug_false", "redact_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django": {"handlers": ["mail_admins"], "level": "INFO", "propagate": True},
        "django-q": {"level": env.str("Q_LOG_LEVEL", default="WARNING"), "propagate": True},
        "axes": {"level": "WARNING", "propagate": True},
    },
}
