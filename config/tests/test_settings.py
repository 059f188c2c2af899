"""Each settings module picks its default email backend; EMAIL_BACKEND from the environment wins."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {
    "SECRET_KEY": "x" * 50,
    "ALLOWED_HOSTS": "example.com",
    "DATABASE_URL": "postgres://u:p@db.invalid:5432/app",
}


def email_backend(module: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("EMAIL_", "DATABASE_URL"))}
    environment.update(DJANGO_SETTINGS_MODULE=f"config.settings.{module}", **env)
    code = "from django.conf import settings; print(settings.EMAIL_BACKEND)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


@pytest.mark.parametrize(
    ("module", "env", "expected"),
    [
        ("development", {}, "django.core.mail.backends.console.EmailBackend"),
        ("test", {}, "django.core.mail.backends.locmem.EmailBackend"),
        ("production", PRODUCTION_ENV, "django.core.mail.backends.smtp.EmailBackend"),
    ],
)
def test_default_backend_per_settings_module(module, env, expected):
    assert email_backend(module, **env) == expected


@pytest.mark.parametrize("module", ["development", "test", "production"])
def test_email_backend_from_environment_wins(module):
    chosen = "django.core.mail.backends.filebased.EmailBackend"
    assert email_backend(module, EMAIL_BACKEND=chosen, **PRODUCTION_ENV) == chosen


def test_production_refuses_to_start_without_a_secret_key():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"}
    with pytest.raises(subprocess.CalledProcessError) as error:
        email_backend("production", **env)
    assert "SECRET_KEY" in error.value.stderr
