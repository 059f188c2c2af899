"""Settings shared by every environment, read from the process environment or `.env`."""

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# Values already in the process environment win over the file. Tests never read `.env`, so a
# developer's file (set up for the Compose stack's mailpit, say) cannot redirect test email.
_TESTING = os.environ.get("DJANGO_SETTINGS_MODULE", "").endswith(".test")
if (BASE_DIR / ".env").is_file() and not _TESTING:
    environ.Env.read_env(BASE_DIR / ".env")

SECRET_KEY = env("SECRET_KEY", default="django-insecure-development-only-key-do-not-deploy")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "outbox",
    "accounts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves collected static files under gunicorn (the Docker image); runserver still serves them in development.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A dead or unreachable server must fail fast, never hang a dispatcher.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Email. Every email setting lives in this block, so the move to Django 6.1's MAILERS stays small.
# Derived settings modules only choose the default backend; EMAIL_BACKEND from the environment wins.
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=587)
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", default="")
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=10.0)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Medical Document Parser <noreply@localhost>")
SERVER_EMAIL = env("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
BASE_URL = env("BASE_URL", default="http://localhost:8000").rstrip("/")
# Silences outbox.W002 (a provider known not to sign a HIPAA Business Associate Agreement).
EMAIL_NO_BAA_ACCEPTED = env.bool("EMAIL_NO_BAA_ACCEPTED", default=False)

# The dispatcher (`manage.py dispatch_outbox`); see outbox/conf.py for what each one does.
OUTBOX_BATCH_SIZE = env.int("OUTBOX_BATCH_SIZE", default=50)
OUTBOX_LEASE_SECONDS = env.int("OUTBOX_LEASE_SECONDS", default=300)
OUTBOX_MAX_ATTEMPTS = env.int("OUTBOX_MAX_ATTEMPTS", default=10)
OUTBOX_MAX_AGE_SECONDS = env.int("OUTBOX_MAX_AGE_SECONDS", default=3 * 24 * 3600)
OUTBOX_BACKOFF_SECONDS = [
    int(s) for s in env.list("OUTBOX_BACKOFF_SECONDS", default=["60", "300", "1800", "7200", "21600"])
]
OUTBOX_QUICK_RETRIES = env.int("OUTBOX_QUICK_RETRIES", default=3)
OUTBOX_RETRY_WAIT_SECONDS = env.float("OUTBOX_RETRY_WAIT_SECONDS", default=1.0)
OUTBOX_POLL_INTERVAL = env.float("OUTBOX_POLL_INTERVAL", default=1.0)
OUTBOX_LISTEN = env.bool("OUTBOX_LISTEN", default=True)
OUTBOX_RATE_LIMIT = env.float("OUTBOX_RATE_LIMIT", default=0.0)
# Headers added to every queued message, e.g. "X-SES-CONFIGURATION-SET=invitations" (comma list of name=value).
OUTBOX_EXTRA_HEADERS = env.dict("OUTBOX_EXTRA_HEADERS", default={})
# Bodies of sent and cancelled rows (which hold live invitation links) are blanked after this many days.
OUTBOX_BODY_RETENTION_DAYS = env.int("OUTBOX_BODY_RETENTION_DAYS", default=14)
# /healthz answers 503 when the oldest due message has waited longer than this.
OUTBOX_HEALTH_MAX_DUE_AGE_SECONDS = env.int("OUTBOX_HEALTH_MAX_DUE_AGE_SECONDS", default=900)
# dispatch_outbox also runs the deploy checks (`check --deploy`) at start-up; on in production.py.
OUTBOX_DEPLOY_CHECKS_AT_STARTUP = env.bool("OUTBOX_DEPLOY_CHECKS_AT_STARTUP", default=False)

# Invitations.
INVITATION_EXPIRY_DAYS = env.int("INVITATION_EXPIRY_DAYS", default=7)
INVITATION_GRANTABLE_ROLES = env.list("INVITATION_GRANTABLE_ROLES", default=["Provider"])
INVITATION_RESEND_MIN_INTERVAL_SECONDS = env.int("INVITATION_RESEND_MIN_INTERVAL_SECONDS", default=60)
INVITATION_RESEND_MAX_PER_DAY = env.int("INVITATION_RESEND_MAX_PER_DAY", default=5)
INVITATION_SUPPORT_EMAIL = env("INVITATION_SUPPORT_EMAIL", default="")

LOG_LEVEL = env("LOG_LEVEL", default="INFO")
# "plain" for people, "json" (one object per line) for log collectors.
LOG_FORMAT = env("LOG_FORMAT", default="plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        # Invitation links are credentials: keep them out of request and access logs.
        "redact_secrets": {"()": "accounts.log_filters.RedactInvitationTokens"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "outbox.log_format.JSONFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["redact_secrets"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django.request": {"filters": ["redact_secrets"]},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
