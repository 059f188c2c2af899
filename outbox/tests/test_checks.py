"""System checks: each fires on its bad configuration, with its id and a hint, and stays quiet on a good one."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from outbox import checks

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def good(settings):
    """A production configuration that passes every email check (Amazon SES over STARTTLS)."""
    settings.DEBUG = False
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "email-smtp.us-east-1.amazonaws.com"
    settings.EMAIL_PORT = 587
    settings.EMAIL_USE_TLS = True
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = "AKIAEXAMPLEUSER"
    settings.EMAIL_HOST_PASSWORD = "smtp-password"
    settings.EMAIL_TIMEOUT = 10
    settings.DEFAULT_FROM_EMAIL = "Medical Document Parser <noreply@mail.clinic.org>"
    settings.BASE_URL = "https://app.clinic.org"
    settings.EMAIL_NO_BAA_ACCEPTED = False
    settings.OUTBOX_EXTRA_HEADERS = {"X-SES-CONFIGURATION-SET": "invitations"}
    return settings


def ids(messages) -> list[str]:
    return sorted(m.id for m in messages)


def all_email_checks() -> list:
    return checks.check_email_transport() + checks.check_extra_headers() + checks.check_email_deployment()


def test_checks__good_production_configuration_is_quiet(good):
    assert all_email_checks() == []


def test_checks__outbox_backend_subclass_counts_as_smtp(good):
    good.EMAIL_BACKEND = "outbox.transport.SMTPEmailBackend"
    good.EMAIL_USE_TLS = False

    assert ids(checks.check_email_deployment()) == ["outbox.E005"]


@pytest.mark.parametrize(
    "backend",
    [
        "django.core.mail.backends.console.EmailBackend",
        "django.core.mail.backends.locmem.EmailBackend",
        "django.core.mail.backends.dummy.EmailBackend",
        "django.core.mail.backends.filebased.EmailBackend",
    ],
)
def test_checks__non_delivering_backend_with_debug_off_is_e001(good, backend):
    good.EMAIL_BACKEND = backend

    [message] = checks.check_email_deployment()

    assert message.id == "outbox.E001"
    assert message.is_serious()
    assert "EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend" in str(message.hint)


def test_checks__non_delivering_backend_with_debug_on_is_quiet(good):
    good.DEBUG = True
    good.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

    assert checks.check_email_deployment() == []


def test_checks__tls_and_ssl_both_on_is_e002(good):
    good.EMAIL_USE_SSL = True

    [message] = checks.check_email_transport()

    assert message.id == "outbox.E002"
    assert "EMAIL_USE_TLS=true with port 587" in str(message.hint)


@pytest.mark.parametrize(
    ("port", "use_tls", "use_ssl"),
    [(465, True, False), (2465, True, False), (587, False, True), (25, False, True), (2587, False, True)],
)
def test_checks__port_that_contradicts_the_tls_mode_is_e003(good, port, use_tls, use_ssl):
    good.EMAIL_PORT, good.EMAIL_USE_TLS, good.EMAIL_USE_SSL = port, use_tls, use_ssl

    [message] = checks.check_email_transport()

    assert message.id == "outbox.E003"
    assert str(message.hint)


@pytest.mark.parametrize(("port", "use_tls", "use_ssl"), [(465, False, True), (2525, True, False), (25, True, False)])
def test_checks__port_that_matches_the_tls_mode_is_quiet(good, port, use_tls, use_ssl):
    good.EMAIL_PORT, good.EMAIL_USE_TLS, good.EMAIL_USE_SSL = port, use_tls, use_ssl

    assert all_email_checks() == []


@pytest.mark.parametrize("host", ["", "   "])
def test_checks__missing_host_is_e004(good, host):
    good.EMAIL_HOST = host

    assert ids(checks.check_email_transport()) == ["outbox.E004"]


def test_checks__neither_tls_nor_ssl_is_e005_at_deploy_only(good):
    good.EMAIL_USE_TLS = False

    assert checks.check_email_transport() == []
    [message] = checks.check_email_deployment()
    assert message.id == "outbox.E005"
    assert "EMAIL_USE_TLS=true" in str(message.hint)


@pytest.mark.parametrize("timeout", [None, 0])
def test_checks__no_timeout_is_e006(good, timeout):
    good.EMAIL_TIMEOUT = timeout

    [message] = checks.check_email_transport()

    assert message.id == "outbox.E006"
    assert "EMAIL_TIMEOUT" in str(message.hint)


@pytest.mark.parametrize(
    "headers",
    [
        {"Message-ID": "<x@y>"},
        {"X-Bad": "one\r\nBcc: victim@example.com"},
        {"Bad Name": "value"},
        {"X-Count": 3},
        ["X-Not-A-Mapping"],
    ],
)
def test_checks__bad_extra_headers_are_e007(good, headers):
    good.OUTBOX_EXTRA_HEADERS = headers

    [message] = checks.check_extra_headers()

    assert message.id == "outbox.E007"
    assert "OUTBOX_EXTRA_HEADERS" in str(message.hint)


@pytest.mark.parametrize(
    "sender",
    ["webmaster@localhost", "Medical Document Parser <noreply@localhost>", "noreply@app.localhost", "not-an-address"],
)
def test_checks__default_from_email_left_at_a_default_is_e008(good, sender):
    good.DEFAULT_FROM_EMAIL = sender

    assert ids(checks.check_email_deployment()) == ["outbox.E008"]


@pytest.mark.parametrize("base_url", ["http://app.clinic.org", "app.clinic.org", "https://"])
def test_checks__base_url_not_https_is_e009(good, base_url):
    good.BASE_URL = base_url

    [message] = checks.check_email_deployment()

    assert message.id == "outbox.E009"
    assert "https://" in str(message.hint)


def test_checks__backend_that_cannot_be_imported_is_e010(good):
    good.EMAIL_BACKEND = "no.such.Backend"

    assert ids(checks.check_email_transport()) == ["outbox.E010"]


@pytest.mark.parametrize(("user", "password"), [("", ""), ("AKIAEXAMPLEUSER", ""), ("", "smtp-password")])
def test_checks__missing_credentials_is_a_warning_w001(good, user, password):
    good.EMAIL_HOST_USER, good.EMAIL_HOST_PASSWORD = user, password

    [message] = checks.check_email_deployment()

    assert message.id == "outbox.W001"
    assert not message.is_serious()


@pytest.mark.parametrize("host", ["smtp.sendgrid.net", "smtp.postmarkapp.com", "SMTP.MANDRILLAPP.COM"])
def test_checks__provider_without_baa_is_w002_until_accepted(good, host):
    good.EMAIL_HOST = host

    [message] = checks.check_email_deployment()
    assert message.id == "outbox.W002"
    assert "EMAIL_NO_BAA_ACCEPTED=true" in str(message.hint)

    good.EMAIL_NO_BAA_ACCEPTED = True
    assert checks.check_email_deployment() == []


@pytest.mark.parametrize("host", ["email-smtp.eu-west-1.amazonaws.com", "smtp.gmail.com", "smtp-relay.gmail.com"])
def test_checks__providers_that_sign_a_baa_are_quiet(good, host):
    good.EMAIL_HOST = host

    assert checks.check_email_deployment() == []


def test_checks__check_deploy_runs_the_deploy_checks_and_plain_check_does_not(good):
    good.EMAIL_USE_TLS = False
    good.BASE_URL = "http://app.clinic.org"

    assert "outbox.E005" not in ids(run_checks(tags=[checks.TAG]))
    deploy = ids(run_checks(tags=[checks.TAG], include_deployment_checks=True))
    assert deploy == ["outbox.E005", "outbox.E009"]
    with pytest.raises(SystemCheckError, match=r"outbox\.E005"):
        call_command("check", "--deploy", "--tag", checks.TAG)


@pytest.mark.django_db
def test_checks__dispatcher_refuses_to_start_in_production_on_deploy_errors(good, capsys):
    good.OUTBOX_DEPLOY_CHECKS_AT_STARTUP = True
    good.EMAIL_USE_TLS = False

    with pytest.raises(SystemCheckError, match=r"outbox\.E005"):
        call_command("dispatch_outbox", "--once", skip_checks=False)


@pytest.mark.django_db
def test_checks__dispatcher_starts_in_production_on_a_good_configuration(good):
    good.OUTBOX_DEPLOY_CHECKS_AT_STARTUP = True

    call_command("dispatch_outbox", "--once", skip_checks=False)  # nothing due: no connection is made


@pytest.mark.django_db
def test_checks__dispatcher_skips_deploy_checks_with_debug_on(good):
    good.OUTBOX_DEPLOY_CHECKS_AT_STARTUP = True
    good.DEBUG = True
    good.EMAIL_USE_TLS = False

    call_command("dispatch_outbox", "--once", skip_checks=False)


@pytest.mark.slow
def test_checks__production_settings_module_refuses_plain_smtp_at_dispatcher_start(tmp_path):
    """The real production settings wire the start-up checks: no TLS and an http BASE_URL stop the dispatcher."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": "x" * 60,
        "ALLOWED_HOSTS": "app.clinic.org",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "EMAIL_HOST": "smtp.clinic.org",
        "EMAIL_PORT": "587",
        "EMAIL_USE_TLS": "false",
        "DEFAULT_FROM_EMAIL": "noreply@clinic.org",
        "BASE_URL": "http://app.clinic.org",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "dispatch_outbox", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "outbox.E005" in result.stderr and "outbox.E009" in result.stderr
    assert "HINT: Set EMAIL_USE_TLS=true" in result.stderr
