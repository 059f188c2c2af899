"""Tests: in-memory email unless EMAIL_BACKEND is set, fast password hashing."""

from .base import *  # noqa: F403
from .base import env

DEBUG = False
SECRET_KEY = env("SECRET_KEY", default="test-only-secret-key-with-enough-length-and-entropy-0123456789")
ALLOWED_HOSTS = ["*"]
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.locmem.EmailBackend")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# No collectstatic in tests: WhiteNoise looks files up per request instead of warning about STATIC_ROOT.
WHITENOISE_AUTOREFRESH = True
BASE_URL = env("BASE_URL", default="http://testserver").rstrip("/")
# Fast in-process retries; tests that care set these themselves.
OUTBOX_QUICK_RETRIES = env.int("OUTBOX_QUICK_RETRIES", default=2)
OUTBOX_RETRY_WAIT_SECONDS = env.float("OUTBOX_RETRY_WAIT_SECONDS", default=0.01)
