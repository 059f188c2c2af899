"""The dispatcher over a real SMTP conversation with aiosmtpd."""

import pytest

from outbox.models import DeliveryAttempt, OutboundEmail

pytestmark = pytest.mark.django_db

Status = OutboundEmail.Status


def test_dispatch__server_receives_both_parts_with_the_stored_message_id(smtp_server, make_email, dispatch):
    email = make_email(to=["doctor@example.com"], subject="Welcome", body="plain words", html_body="<p>html words</p>")

    dispatch()

    [received] = smtp_server.messages
    assert received.rcpt_tos == ["doctor@example.com"]
    assert received.message["Subject"] == "Welcome"
    assert received.message_id == email.message_id
    assert "plain words" in received.part("text/plain")
    assert "<p>html words</p>" in received.part("text/html")
    email.refresh_from_db()
    assert email.status == Status.SENT
    assert email.attempts == 1
    assert email.sent_at is not None
    assert list(email.attempt_log.values_list("outcome", flat=True)) == [DeliveryAttempt.Outcome.SENT]


def test_dispatch__permanent_reply_fails_row_at_once(smtp_server, make_email, dispatch):
    smtp_server.set_mode("550")
    email = make_email()

    dispatch()

    email.refresh_from_db()
    assert email.status == Status.FAILED
    assert email.attempts == 1
    assert "550" in email.last_error and "Mailbox unavailable" in email.last_error
    [attempt] = email.attempt_log.all()
    assert (attempt.outcome, attempt.smtp_code) == (DeliveryAttempt.Outcome.PERMANENT, 550)
    assert smtp_server.messages == []


def test_dispatch__transient_reply_reschedules_with_one_more_attempt(smtp_server, make_email, dispatch, settings):
    settings.OUTBOX_QUICK_RETRIES = 1
    smtp_server.set_mode("451")
    email = make_email()
    before = OutboundEmail.objects.get(pk=email.pk).next_attempt_at

    dispatch()

    email.refresh_from_db()
    assert email.status == Status.PENDING
    assert email.attempts == 1
    assert email.next_attempt_at > before
    assert "451" in email.last_error
    assert email.claimed_by == "" and email.lease_expires_at is None
    [attempt] = email.attempt_log.all()
    assert (attempt.outcome, attempt.smtp_code) == (DeliveryAttempt.Outcome.TRANSIENT, 451)


def test_dispatch__quick_retry_recovers_in_process(smtp_server, make_email, dispatch, settings):
    settings.OUTBOX_QUICK_RETRIES = 3
    smtp_server.set_mode("451", times=2)
    email = make_email()

    dispatch()

    email.refresh_from_db()
    assert email.status == Status.SENT
    assert email.attempts == 3
    assert [m.message_id for m in smtp_server.messages] == [email.message_id]
    assert list(email.attempt_log.values_list("smtp_code", flat=True)) == [451, 451, None]


def test_dispatch__reuses_one_smtp_session_for_a_batch(smtp_server, make_email, dispatch):
    emails = [make_email(to=[f"p{i}@example.com"]) for i in range(5)]

    dispatch()

    assert sorted(smtp_server.message_ids()) == sorted(e.message_id for e in emails)
    assert OutboundEmail.objects.filter(status=Status.SENT).count() == 5


def test_dispatch__nothing_due_exits_quietly(smtp_server, dispatch):
    dispatch()
    assert smtp_server.messages == []
