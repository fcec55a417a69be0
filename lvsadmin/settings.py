"""lvsadmin settings: one file, configured by environment variables (see README)."""

import ipaddress
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from lvsadmin import broker, signing

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in ("1", "true", "yes", "on")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)

# The secret key: SECRET_KEY, else the file SECRET_KEY_FILE names (default var/secret_key, which scripts/setup
# writes once with a random key). Only DEBUG may fall back to a fixed development key; without DEBUG a missing
# key, or a publicly known one, stops every process at start.
DEVELOPMENT_SECRET_KEY = "insecure-dev-key"
KNOWN_SECRET_KEYS = {DEVELOPMENT_SECRET_KEY, "lvsadmin-dev-" + "x" * 50}  # the fallbacks of earlier versions
SECRET_KEY_FILE = Path(os.environ.get("SECRET_KEY_FILE") or BASE_DIR / "var" / "secret_key")


def read_secret_key() -> str:
    key = os.environ.get("SECRET_KEY", "").strip()
    if not key and SECRET_KEY_FILE.is_file():
        key = SECRET_KEY_FILE.read_text().strip()
    if DEBUG:
        return key or DEVELOPMENT_SECRET_KEY
    if not key or key in KNOWN_SECRET_KEYS:
        raise ImproperlyConfigured(
            f"SECRET_KEY is {'not set' if not key else 'a publicly known development key'}: with DEBUG off, "
            "lvsadmin needs a secret key of its own. Make one with "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(50))'` and put it in the environment "
            f"variable SECRET_KEY or in the file {SECRET_KEY_FILE} (scripts/setup writes a random one there; "
            "the variable SECRET_KEY_FILE names another file), or set DEBUG=1 for development."
        )
    return key


SECRET_KEY = read_secret_key()

# The audit chain's key (HMAC-SHA256 of every record), kept out of the database so that whoever holds only the
# database cannot rewrite the log unseen: AUDIT_KEY, else the file AUDIT_KEY_FILE (default var/audit_key, which
# scripts/setup writes once). Like the secret key, only DEBUG falls back to a fixed development key. Changing the
# key makes every record written with the old one fail verification.
DEVELOPMENT_AUDIT_KEY = "insecure-dev-audit-key"
AUDIT_KEY_FILE = Path(os.environ.get("AUDIT_KEY_FILE") or BASE_DIR / "var" / "audit_key")


def read_audit_key() -> str:
    key = os.environ.get("AUDIT_KEY", "").strip()
    if not key and AUDIT_KEY_FILE.is_file():
        key = AUDIT_KEY_FILE.read_text().strip()
    if DEBUG:
        return key or DEVELOPMENT_AUDIT_KEY
    if not key or key == DEVELOPMENT_AUDIT_KEY:
        raise ImproperlyConfigured(
            f"AUDIT_KEY is {'not set' if not key else 'the publicly known development key'}: with DEBUG off, "
            "lvsadmin needs a key of its own for the audit chain. Make one with "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(50))'` and put it in the environment "
            f"variable AUDIT_KEY or in the file {AUDIT_KEY_FILE} (scripts/setup writes a random one there; the "
            "variable AUDIT_KEY_FILE names another file). Keep it out of the database and its backups."
        )
    return key


AUDIT_KEY = read_audit_key()

# The panel's Ed25519 key (lvsadmin.signing): every message to an agent is signed with it, and agents believe
# nothing else. A file (PANEL_SIGNING_KEY_FILE, default var/panel_ed25519, which scripts/setup makes once, with
# its public half beside it in var/panel_ed25519.pub for the agents), never in the database. Only DEBUG falls back
# to a publicly known development key.
PANEL_SIGNING_KEY_FILE = Path(os.environ.get("PANEL_SIGNING_KEY_FILE") or BASE_DIR / "var" / "panel_ed25519")


def read_panel_signing_key():
    try:
        return signing.load_private_key(PANEL_SIGNING_KEY_FILE)
    except signing.KeyFileError as exc:
        if DEBUG:
            return signing.development_key()
        raise ImproperlyConfigured(
            f"The panel's signing key: {exc}. With DEBUG off, lvsadmin signs every message to its agents with a "
            "key of its own: run scripts/setup (it makes var/panel_ed25519), or make one with "
            "`python -m lvsadmin.signing keygen PATH` and name it in PANEL_SIGNING_KEY_FILE.") from None


PANEL_SIGNING_KEY = read_panel_signing_key()
# Seconds a message to an agent stays valid (a snapshot queued longer is refused; the resync sends a new one).
PANEL_MESSAGE_TTL = int(os.environ.get("PANEL_MESSAGE_TTL", "3600"))
# After an agent rotated its key, its old key is still believed this many seconds past the first message signed by
# the new one: messages it signed before the switch may still be on the control queue, handled out of order.
KEY_ROTATION_OVERLAP_SECONDS = int(os.environ.get("KEY_ROTATION_OVERLAP_SECONDS", "10"))
SECURITY_EVENT_RETENTION_DAYS = int(os.environ.get("SECURITY_EVENT_RETENTION_DAYS", "90"))
# Health events (real servers up and down, quorum lost) are kept this many days (and at most 100,000 rows).
HEALTH_EVENT_RETENTION_DAYS = int(os.environ.get("HEALTH_EVENT_RETENTION_DAYS", "30"))
# The charts' traffic samples (lvsadmin.monitoring.samples): 10-second buckets kept this many hours, 1-minute ones
# this many days, 10-minute ones this many days.
TRAFFIC_10S_RETENTION_HOURS = int(os.environ.get("TRAFFIC_10S_RETENTION_HOURS", "2"))
TRAFFIC_1M_RETENTION_DAYS = int(os.environ.get("TRAFFIC_1M_RETENTION_DAYS", "2"))
TRAFFIC_10M_RETENTION_DAYS = int(os.environ.get("TRAFFIC_10M_RETENTION_DAYS", "30"))
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SITE_NAME = os.environ.get("SITE_NAME", "lvsadmin")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "django_celery_beat",
    "axes",
    "csp",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "lvsadmin.core",
    "lvsadmin.audit",
    "lvsadmin.backups",
    "lvsadmin.monitoring",
    "lvsadmin.alerts",
    "lvsadmin.web",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "lvsadmin.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "lvsadmin.audit.middleware.RequestIdMiddleware",
    "csp.middleware.CSPMiddleware",
    "lvsadmin.web.middleware.PermissionsPolicyMiddleware",
    "lvsadmin.web.middleware.IdleSessionMiddleware",  # sessions; automatic refreshes are not activity
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "lvsadmin.web.two_factor.TwoFactorRequiredMiddleware",  # an admin without a second factor enrols first
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "lvsadmin.urls"
WSGI_APPLICATION = "lvsadmin.wsgi.application"

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
                "lvsadmin.web.context.panel",
            ],
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'lvsadmin.sqlite3'}"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Writers wait for each other instead of failing with "database is locked". Write-ahead logging: readers never
    # wait for a writer, and a commit costs one fsync of the log instead of the rollback journal's several (10.7 →
    # 1.8 ms a commit here: 50 balancers' reports are 50 commits). synchronous=FULL keeps every commit durable.
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "timeout": 20, "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL"})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# Two-factor sign-in (lvsadmin.core.two_factor): "admins" need a TOTP authenticator (others may add one), "all"
# need one, "none": nobody must. The code step after the password lasts TWO_FACTOR_CODE_SECONDS.
TWO_FACTOR_REQUIRED = os.environ.get("TWO_FACTOR_REQUIRED", "admins").strip().lower()
if TWO_FACTOR_REQUIRED not in ("admins", "all", "none"):
    raise ImproperlyConfigured(f"TWO_FACTOR_REQUIRED: {TWO_FACTOR_REQUIRED!r} is not one of admins, all, none")
TWO_FACTOR_CODE_SECONDS = int(os.environ.get("TWO_FACTOR_CODE_SECONDS", "300"))
OTP_TOTP_ISSUER = SITE_NAME  # the name authenticator apps show

# LDAP sign-in (lvsadmin.core.directory), on when LDAP_SERVER_URI is set: the directory checks the password and
# its groups give the role at each sign-in. Local accounts (ModelBackend) still sign in.
LDAP = {name: os.environ.get(f"LDAP_{name}", "").strip() for name in (
    "SERVER_URI", "BIND_DN", "BIND_PASSWORD", "USER_DN_TEMPLATE", "USER_SEARCH", "USER_FILTER", "GROUP_SEARCH",
    "GROUP_TYPE", "VIEWER_GROUP", "OPERATOR_GROUP", "ADMIN_GROUP")}
LDAP["START_TLS"] = env_bool("LDAP_START_TLS", False)
LDAP_RECHECK_SECONDS = int(os.environ.get("LDAP_RECHECK_SECONDS", "60"))  # a session asks the directory again
if LDAP["SERVER_URI"]:
    AUTHENTICATION_BACKENDS.insert(1, "lvsadmin.core.directory.DirectoryBackend")
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Sessions end after 30 idle minutes: every request pushes the expiry forward.
SESSION_COOKIE_AGE = int(os.environ.get("SESSION_IDLE_SECONDS", "1800"))
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

# Login throttling (django-axes): lock a user+address after repeated failures.
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = float(os.environ.get("AXES_COOLOFF_HOURS", "0.25"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLED = env_bool("AXES_ENABLED", True)
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The lock-out page says how long is left (axes's own page gives only the full cool-off).
AXES_LOCKOUT_CALLABLE = "lvsadmin.web.views.auth.locked_out"
# A lock-out lasts one cool-off from the failure that set it: trying again, even with the right password, does
# not restart it.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# Failures are counted under a storable name (no NUL, at most 150 characters): PostgreSQL refused the raw one.
AXES_USERNAME_CALLABLE = "lvsadmin.core.users.axes_username"
# An imported ipvsadm -S file is posted back as text to be confirmed: a 100,000-server table is about 5 MB.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("DATA_UPLOAD_MAX_MEMORY_SIZE", str(16 * 1024 * 1024)))

SECURE = env_bool("SECURE", not DEBUG)
SESSION_COOKIE_SECURE = SECURE
CSRF_COOKIE_SECURE = SECURE
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", SECURE)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000" if SECURE else "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE
SECURE_HSTS_PRELOAD = SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_PROXY") else None
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Only our own files may run or style a page: no inline script, handler or style attribute (django-csp).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
# Browser features the panel never uses are switched off for it (lvsadmin.web.middleware).
PERMISSIONS_POLICY = ("accelerometer=(), camera=(), display-capture=(), geolocation=(), gyroscope=(), "
                      "magnetometer=(), microphone=(), midi=(), payment=(), usb=()")
# Proxies whose X-Request-ID (a UUID) the audit log keeps: comma-separated addresses or networks.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES")

# The panel's /metrics (lvsadmin.web.views.metrics), never anonymous: a bearer token (METRICS_TOKEN, else the file
# METRICS_TOKEN_FILE names) and/or the networks allowed to scrape (METRICS_ALLOWED_NETWORKS, comma-separated,
# matched against REMOTE_ADDR); with both, a scrape needs both. With neither, /metrics is off (404).
METRICS_TOKEN_MIN_LENGTH = 16


def read_metrics_token(environ=os.environ) -> str:
    """METRICS_TOKEN, else the content of the file METRICS_TOKEN_FILE; "" when neither is set. A token too short to
    resist guessing, or a file that cannot be read, stops the start (naming the variable)."""
    token, path = environ.get("METRICS_TOKEN", "").strip(), environ.get("METRICS_TOKEN_FILE", "").strip()
    source = "METRICS_TOKEN"
    if not token and path:
        source = "METRICS_TOKEN_FILE"
        try:
            token = Path(path).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ImproperlyConfigured(f"METRICS_TOKEN_FILE: cannot read {path}: {exc}") from None
        if not token:
            raise ImproperlyConfigured(f"METRICS_TOKEN_FILE: {path} is empty")
    if token and (len(token) < METRICS_TOKEN_MIN_LENGTH or not token.isascii() or not token.isprintable()
                  or " " in token):
        raise ImproperlyConfigured(
            f"{source}: a token of at least {METRICS_TOKEN_MIN_LENGTH} printable ASCII characters without spaces; "
            "make one with `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    return token


def read_networks(name: str, environ=os.environ) -> list[str]:
    """A comma-separated list of addresses or networks (10.0.0.5, 10.0.0.0/24, ::1); a bad entry stops the start."""
    entries = [item.strip() for item in environ.get(name, "").split(",") if item.strip()]
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {entry!r} is not an address or a network "
                                       "(e.g. 10.0.0.5, 10.0.0.0/24, ::1)") from None
    return entries


METRICS_TOKEN = read_metrics_token()
METRICS_ALLOWED_NETWORKS = read_networks("METRICS_ALLOWED_NETWORKS")

# The REST API (lvsadmin.api): bearer tokens only, JSON in and out, errors as problem details, throttled per token.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["lvsadmin.api.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["lvsadmin.api.permissions.TokenScope"],
    "DEFAULT_THROTTLE_CLASSES": ["lvsadmin.api.throttling.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"token": os.environ.get("API_RATE", "1200/minute")},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["lvsadmin.api.parsers.JSONParser"],  # JSON without NUL characters
    "DEFAULT_PAGINATION_CLASS": "lvsadmin.api.pagination.Pagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "lvsadmin.api.problems.handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "lvsadmin API",
    "DESCRIPTION": "The desired state of the panel's IPVS clusters. Authenticate with `Authorization: Bearer <token>`; "
                   "send If-Match with an object's ETag to change or delete it.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",  # served by the panel: the CSP allows no other origin
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "lvsadmin.api.schema.body_problems"],
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "var" / "static"

# Celery: Redis is a doorbell; at-least-once delivery, idempotent tasks.
CELERY_BROKER_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_USE_SSL = broker.use_ssl(CELERY_BROKER_URL)  # rediss:// verifies the server (lvsadmin.broker)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# The control worker keeps its database connection for this many tasks: Celery otherwise closes it around every
# task, and a new PostgreSQL connection (TCP and authentication) cost more than a heartbeat's whole work, with 50
# balancers sending 10 a second (issue 13). A connection that failed is dropped after its task (lvsadmin.celery).
CELERY_DB_REUSE_MAX = int(os.environ.get("CELERY_DB_REUSE_MAX", "100"))
CELERY_TASK_DEFAULT_QUEUE = "control"
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600"))}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # a broker outage is waited out
# A task whose broker connection drops is given back (acks_late) rather than finished unacknowledged.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Control-side tasks run on the control queue; agents' tasks are sent to lvs.<balancer> explicitly.
CELERY_TASK_ROUTES = {"lvsadmin.core.*": {"queue": "control"}, "lvsadmin.backups.*": {"queue": "control"},
                      "lvsadmin.monitoring.*": {"queue": "control"}, "lvsadmin.alerts.*": {"queue": "control"}}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Tests run tasks inline when asked to (never in the integration tier).
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

# How often agents report, and after how long without a report a balancer counts as offline.
HEARTBEAT_SECONDS = int(os.environ.get("HEARTBEAT_SECONDS", "5"))
OFFLINE_AFTER_SECONDS = int(os.environ.get("OFFLINE_AFTER_SECONDS", "30"))
RESYNC_SECONDS = int(os.environ.get("RESYNC_SECONDS", "60"))

# Alerts (lvsadmin.alerts): rules evaluated every ALERT_EVALUATE_SECONDS; a key firing again within
# ALERT_FLAP_WINDOW_SECONDS of resolving reopens its incident silently; an open incident is notified again every
# ALERT_REPEAT_SECONDS; a failed delivery is tried ALERT_MAX_ATTEMPTS times in all, waiting ALERT_RETRY_SECONDS,
# then twice as long each time; a webhook has ALERT_WEBHOOK_TIMEOUT seconds to answer.
ALERT_EVALUATE_SECONDS = int(os.environ.get("ALERT_EVALUATE_SECONDS", "15"))
ALERT_FLAP_WINDOW_SECONDS = int(os.environ.get("ALERT_FLAP_WINDOW_SECONDS", "300"))
ALERT_REPEAT_SECONDS = int(os.environ.get("ALERT_REPEAT_SECONDS", str(4 * 3600)))
ALERT_MAX_ATTEMPTS = int(os.environ.get("ALERT_MAX_ATTEMPTS", "5"))
ALERT_RETRY_SECONDS = float(os.environ.get("ALERT_RETRY_SECONDS", "10"))
ALERT_WEBHOOK_TIMEOUT = float(os.environ.get("ALERT_WEBHOOK_TIMEOUT", "5"))
ALERT_HISTORY_DAYS = int(os.environ.get("ALERT_HISTORY_DAYS", "90"))  # deliveries and resolved incidents kept
# E-mail (alert channels): Django's SMTP backend, configured from the environment.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "10"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "lvsadmin@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # django-axes announces itself at every start, which clutters command output.
    "loggers": {"axes": {"level": "WARNING"}},
}
