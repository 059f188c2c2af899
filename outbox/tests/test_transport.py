"""The one place that decides what an exception from the email backend means."""

import smtplib
import ssl

import pytest
from django.core.management import CommandError

from outbox.models import DeliveryAttempt, OutboundEmail
from outbox.transport import DeliveryError, Kind, MessageBuildError, classify

pytestmark = pytest.mark.django_db

T, P, C = Kind.TRANSIENT, Kind.PERMANENT, Kind.CONFIGURATION


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (smtplib.SMTPConnectError(421, b"4.3.2 Service not available"), T, 421),
        (smtplib.SMTPDataError(450, b"4.2.0 Mailbox busy"), T, 450),
        (smtplib.SMTPDataError(451, b"4.3.0 Try later"), T, 451),
        (smtplib.SMTPDataError(452, b"4.3.1 Storage"), T, 452),
        (smtplib.SMTPDataError(454, b"4.7.0 Throttling"), T, 454),
        (smtplib.SMTPSenderRefused(421, b"4.4.5 Too busy", "noreply@example.com"), T, 421),
        (smtplib.SMTPDataError(550, b"5.1.1 Mailbox unavailable"), P, 550),
        (smtplib.SMTPDataError(554, b"5.7.1 Rejected"), P, 554),
        (smtplib.SMTPSenderRefused(553, b"5.1.8 Bad sender", "noreply@example.com"), P, 553),
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 Authentication credentials invalid"), C, 535),
        (smtplib.SMTPResponseException(530, b"5.7.0 Authentication required"), C, 530),
        (smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."), C, None),
        (ssl.SSLCertVerificationError("certificate verify failed"), C, None),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), T, None),
        (ConnectionRefusedError(111, "Connection refused"), T, None),
        (ConnectionResetError(104, "Connection reset by peer"), T, None),
        (TimeoutError("timed out"), T, None),
        (OSError(-2, "Name or service not known"), T, None),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(getattr(v, "value", v)),
)
def test_classify__maps_each_backend_error_to_one_kind(exc, kind, code):
    error = classify(exc)
    assert (error.kind, error.code) == (kind, code)
    assert not error.unknown


def test_classify__connection_lost_after_data_started_is_unknown():
    assert classify(smtplib.SMTPServerDisconnected("closed"), data_started=True).unknown
    assert classify(TimeoutError("timed out"), data_started=True).unknown
    assert not classify(smtplib.SMTPDataError(451, b"later"), data_started=True).unknown


def test_classify__mixed_recipient_refusals_retry_when_any_is_temporary():
    refused = {"a@example.com": (550, b"5.1.1 No such user"), "b@example.com": (450, b"4.2.1 Busy")}
    error = classify(smtplib.SMTPRecipientsRefused(refused))
    assert (error.kind, error.code) == (T, 450)
    assert error.refused == {"a@example.com": (550, "5.1.1 No such user"), "b@example.com": (450, "4.2.1 Busy")}


def test_classify__a_message_that_cannot_be_built_is_permanent_and_not_a_try():
    try:
        try:
            raise ValueError("Header values can't contain newlines")
        except ValueError as inner:
            raise MessageBuildError("bad") from inner
    except MessageBuildError as exc:
        error = classify(exc)
    assert (error.kind, error.tried) == (P, False)
    assert str(error) == "cannot build message: ValueError: Header values can't contain newlines"


def test_delivery_error__drops_nul_characters_the_database_cannot_store():
    error = DeliveryError(T, "bad\x00reply", 451, refused={"a\x00@example.com": (450, "x\x00y")})
    assert str(error) == "451 badreply"
    assert error.refused == {"a@example.com": (450, "xy")}


def test_transport__tls_required_but_not_offered_is_a_configuration_fault(smtp_server, make_email, dispatch, settings):
    """EMAIL_USE_TLS against a relay without STARTTLS: nothing is sent in clear, no attempt is burnt."""
    settings.EMAIL_USE_TLS = True
    email = make_email()

    with pytest.raises(CommandError) as raised:
        dispatch()

    assert raised.value.returncode == 3
    email.refresh_from_db()
    assert (email.status, email.attempts) == (OutboundEmail.Status.PENDING, 0)
    assert "STARTTLS" in email.last_error
    assert not DeliveryAttempt.objects.exists()
    assert smtp_server.messages == []
