"""`send_test_email`: a test message goes through the outbox like any other, and --wait reports its outcome."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import ProviderInvitation
from outbox.models import OutboundEmail
from outbox.testing import SMTPTestServer

pytestmark = pytest.mark.django_db

Status = OutboundEmail.Status


def test_send_test_email__wait_dispatches_and_reports_sent(smtp_server, capsys):
    call_command("send_test_email", "ops@clinic.org", "--wait")

    email = OutboundEmail.objects.get()
    assert email.status == Status.SENT
    [received] = smtp_server.messages
    assert received.rcpt_tos == ["ops@clinic.org"]
    assert received.message_id == email.message_id
    assert received.message["X-Outbox-Test"] == "send_test_email"
    out = capsys.readouterr().out
    assert f"Queued test email #{email.pk} to o***@clinic.org" in out
    assert "Sent: the server accepted" in out
    assert "ops@clinic.org" not in out


def test_send_test_email__touches_no_invitation(smtp_server):
    call_command("send_test_email", "ops@clinic.org", "--wait")

    assert not ProviderInvitation.objects.exists()
    email = OutboundEmail.objects.get()
    assert email.related_content_type is None and email.related_object_id == ""


def test_send_test_email__without_wait_only_queues(smtp_server, capsys):
    call_command("send_test_email", "ops@clinic.org")

    assert OutboundEmail.objects.get().status == Status.PENDING
    assert smtp_server.messages == []


def test_send_test_email__wait_reports_a_permanent_refusal(smtp_server):
    smtp_server.set_mode("550")

    with pytest.raises(CommandError, match=r"not sent \(failed\): 550") as excinfo:
        call_command("send_test_email", "ops@clinic.org", "--wait")

    assert excinfo.value.returncode == 1


def test_send_test_email__wait_reports_a_transient_failure_and_the_retry_time(smtp_server, settings):
    settings.OUTBOX_QUICK_RETRIES = 1
    smtp_server.set_mode("451")

    with pytest.raises(CommandError, match=r"not delivered yet: 451 .* retries at") as excinfo:
        call_command("send_test_email", "ops@clinic.org", "--wait")

    assert excinfo.value.returncode == 1
    assert OutboundEmail.objects.get().status == Status.PENDING


def test_send_test_email__wait_reports_a_configuration_fault_with_exit_3(smtp_server, settings):
    with SMTPTestServer(username="sender@clinic.org", password="right") as server:
        settings.EMAIL_PORT = server.port
        settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "sender@clinic.org", "wrong"

        with pytest.raises(CommandError, match=r"configuration fault.*check_email") as excinfo:
            call_command("send_test_email", "ops@clinic.org", "--wait")

    assert excinfo.value.returncode == 3
    assert OutboundEmail.objects.get().status == Status.PENDING  # waits for the fix, attempts not burnt


def test_send_test_email__refuses_a_bad_address():
    with pytest.raises(CommandError, match="not queued"):
        call_command("send_test_email", "not an address")

    assert not OutboundEmail.objects.exists()


def test_send_test_email__carries_the_extra_headers_from_settings(smtp_server, settings):
    settings.OUTBOX_EXTRA_HEADERS = {"X-SES-CONFIGURATION-SET": "invitations"}

    call_command("send_test_email", "ops@clinic.org", "--wait")

    [received] = smtp_server.messages
    assert received.message["X-SES-CONFIGURATION-SET"] == "invitations"
