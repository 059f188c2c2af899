"""Logs of failing sends hold no password, no invitation token and no full address, in either log format."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.services import invitation_create
from outbox.log_format import JSONFormatter
from outbox.models import OutboundEmail
from outbox.testing import SMTPTestServer

pytestmark = pytest.mark.django_db

ADDRESS = "doctor.jones@clinic.org"
USER, PASSWORD = "relay-user@clinic.org", "S3cret-relay-password!"
PLAIN = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")


@pytest.fixture
def auth_server(smtp_server, settings):
    with SMTPTestServer(username=USER, password=PASSWORD) as server:
        settings.EMAIL_PORT = server.port
        settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = USER, PASSWORD
        settings.OUTBOX_QUICK_RETRIES = 1
        yield server


@pytest.fixture
def invitation_token(provider_role, admin_user) -> str:
    invitation = invitation_create(email=ADDRESS, role=provider_role, invited_by=admin_user)
    token = invitation.token
    assert token in OutboundEmail.objects.get().body_text  # the secret really is in play
    return token


def app_lines(caplog) -> list[str]:
    """Every application record, formatted both ways (the test SMTP server's own log is not ours)."""
    json_formatter = JSONFormatter()
    records = [r for r in caplog.records if not r.name.startswith("mail.log")]
    assert records, "the failing send logged nothing"
    return [PLAIN.format(r) for r in records] + [json_formatter.format(r) for r in records]


def assert_clean(lines: list[str], token: str) -> None:
    for line in lines:
        assert PASSWORD not in line, line
        assert token not in line, line
        assert ADDRESS not in line.lower(), line


@pytest.mark.parametrize("mode", ["550", "451", "554"])
def test_logging__failing_send_logs_no_secret_and_masks_the_address(auth_server, invitation_token, caplog, mode):
    auth_server.set_mode(mode)

    with caplog.at_level(logging.DEBUG):
        call_command("dispatch_outbox", "--once")

    lines = app_lines(caplog)
    assert_clean(lines, invitation_token)
    outcome = [line for line in lines if "message_id=" in line and "d***@clinic.org" in line]
    assert outcome, "one line per send outcome, with the masked address"


def test_logging__bad_credentials_log_no_secret(auth_server, invitation_token, caplog, settings):
    settings.EMAIL_HOST_PASSWORD = "Wrong-" + PASSWORD

    with caplog.at_level(logging.DEBUG), pytest.raises(CommandError):
        call_command("dispatch_outbox", "--once")

    lines = app_lines(caplog)
    assert_clean(lines, invitation_token)
    assert all("Wrong-" not in line for line in lines)
    assert any("configuration fault" in line for line in lines)


def test_logging__json_format_is_one_object_per_record():
    record = logging.LogRecord("outbox.dispatcher", logging.INFO, __file__, 1, "email %s sent", (7,), None)
    record.email_id = 7

    entry = json.loads(JSONFormatter().format(record))

    assert entry["message"] == "email 7 sent"
    assert entry["level"] == "INFO" and entry["logger"] == "outbox.dispatcher"
    assert entry["email_id"] == 7
    assert entry["time"].endswith("+00:00")


def test_logging__json_format_keeps_exceptions_on_one_line():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())

    line = JSONFormatter().format(record)

    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_logging__log_format_json_makes_every_line_a_json_object():
    """LOG_FORMAT=json in the environment switches the console handler, Django's loggers included."""
    code = "import logging; logging.getLogger('outbox.dispatcher').warning('email %s sent', 7)"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "LOG_FORMAT": "json"}
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    entry = json.loads(line)
    assert (entry["logger"], entry["message"]) == ("outbox.dispatcher", "email 7 sent")
