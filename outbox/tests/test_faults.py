"""Each fault the SMTP test server can inject, and what the dispatcher records for it."""

import logging
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError
from django.db.models.functions import Now

from outbox.models import DeliveryAttempt, OutboundEmail
from outbox.signals import email_sent
from outbox.testing import SMTPTestServer

from .processes import Dispatcher, enqueue_many, wait_until

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]

Status = OutboundEmail.Status
Outcome = DeliveryAttempt.Outcome
ADDRESS = "doctor@example.com"


def app_log(caplog):
    """What the application logged (the test server's own `mail.log` is not ours)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("outbox"))


def log_of(email):
    return [(a.outcome, a.smtp_code) for a in email.attempt_log.all()]


@pytest.fixture
def one_try(settings):
    """One SMTP try per run, so each fault shows as exactly one attempt."""
    settings.OUTBOX_QUICK_RETRIES = 1


@pytest.mark.parametrize("code", ["451", "452", "454"])
def test_fault__4xx_on_data_reschedules_with_one_attempt_counted(
    code, smtp_server, make_email, dispatch, one_try, caplog
):
    smtp_server.set_mode(code)
    email = make_email(to=[ADDRESS])
    queued = OutboundEmail.objects.get(pk=email.pk)

    dispatch()

    email.refresh_from_db()
    assert email.status == Status.PENDING
    assert (email.attempts, email.reschedules) == (1, 1)
    assert email.last_error.startswith(code)
    assert email.next_attempt_at > queued.next_attempt_at
    assert (email.claimed_by, email.lease_expires_at) == ("", None)
    assert log_of(email) == [(Outcome.TRANSIENT, int(code))]
    assert smtp_server.messages == []
    assert ADDRESS not in app_log(caplog)


@pytest.mark.parametrize(
    ("code", "reply"),
    [("550", "Mailbox unavailable"), ("553", "Mailbox name not allowed"), ("554", "Message rejected")],
)
def test_fault__5xx_on_data_fails_row_at_once_with_the_reply(code, reply, smtp_server, make_email, dispatch, settings):
    settings.OUTBOX_QUICK_RETRIES = 3
    smtp_server.set_mode(code)
    email = make_email()

    dispatch()

    email.refresh_from_db()
    assert email.status == Status.FAILED
    assert email.attempts == 1  # permanent: no quick retry
    assert email.last_error.startswith(code) and reply in email.last_error
    assert log_of(email) == [(Outcome.PERMANENT, int(code))]
    assert smtp_server.data_commands == 1


def test_fault__421_on_connect_is_transient(smtp_server, make_email, dispatch, one_try):
    smtp_server.set_mode("421-connect")
    email = make_email()

    dispatch()

    email.refresh_from_db()
    assert email.status == Status.PENDING
    assert email.attempts == 1
    assert "421" in email.last_error and "Service not available" in email.last_error
    assert log_of(email) == [(Outcome.TRANSIENT, 421)]
    assert smtp_server.data_commands == 0


def test_fault__421_on_connect_then_quick_retry_reconnects_and_sends(smtp_server, make_email, dispatch, settings):
    settings.OUTBOX_QUICK_RETRIES = 3
    smtp_server.set_mode("421-connect", times=1)
    email = make_email()
    connections = smtp_server.connections

    dispatch()

    email.refresh_from_db()
    assert email.status == Status.SENT
    assert email.attempts == 2
    assert log_of(email) == [(Outcome.TRANSIENT, 421), (Outcome.SENT, None)]
    assert smtp_server.connections - connections == 2


def test_fault__partial_refusal_is_sent_and_records_each_refused_recipient(smtp_server, make_email, dispatch):
    smtp_server.set_mode("partial")
    smtp_server.refuse = {"gone@example.com"}
    email = make_email(to=["doctor@example.com", "gone@example.com"])

    dispatch()

    email.refresh_from_db()
    assert email.status == Status.SENT
    assert email.attempts == 1
    assert email.refused_recipients == {"gone@example.com": [550, "5.1.1 No such user here"]}
    assert email.last_error == "1 recipient(s) refused: 550 5.1.1 No such user here"
    [attempt] = email.attempt_log.all()
    assert attempt.outcome == Outcome.SENT
    assert attempt.refused_recipients == {"gone@example.com": [550, "5.1.1 No such user here"]}
    [received] = smtp_server.messages
    assert received.rcpt_tos == ["doctor@example.com"]


def test_fault__every_recipient_refused_fails_row_with_each_refusal(smtp_server, make_email, dispatch):
    smtp_server.set_mode("partial")
    smtp_server.refuse = {"gone@example.com", "left@example.com"}
    email = make_email(to=["gone@example.com", "left@example.com"])

    dispatch()

    email.refresh_from_db()
    assert email.status == Status.FAILED
    assert email.attempts == 1
    assert "all recipients refused" in email.last_error
    [attempt] = email.attempt_log.all()
    assert (attempt.outcome, attempt.smtp_code) == (Outcome.PERMANENT, 550)
    assert set(attempt.refused_recipients) == {"gone@example.com", "left@example.com"}
    assert smtp_server.messages == []


def test_fault__drop_mid_data_is_unknown_and_retried_with_the_same_message_id(
    smtp_server, make_email, dispatch, settings
):
    settings.OUTBOX_QUICK_RETRIES = 2
    smtp_server.set_mode("drop", times=1)
    email = make_email()

    dispatch()

    email.refresh_from_db()
    assert email.status == Status.SENT
    assert email.attempts == 2
    assert log_of(email) == [(Outcome.UNKNOWN, None), (Outcome.SENT, None)]
    # The server did get the first copy: a receiver tells the two apart by Message-ID.
    assert smtp_server.message_ids() == [email.message_id, email.message_id]


def test_fault__drop_mid_data_without_quick_retry_leaves_row_pending_as_unknown(
    smtp_server, make_email, dispatch, one_try
):
    smtp_server.set_mode("drop")
    email = make_email()

    dispatch()

    email.refresh_from_db()
    assert email.status == Status.PENDING
    assert email.attempts == 1
    assert "SMTPServerDisconnected" in email.last_error
    [attempt] = email.attempt_log.all()
    assert attempt.outcome == Outcome.UNKNOWN


def test_fault__stalled_relay_costs_at_most_email_timeout_per_try(smtp_server, make_email, dispatch, settings):
    settings.EMAIL_TIMEOUT = 1
    settings.OUTBOX_QUICK_RETRIES = 2
    smtp_server.set_mode("stall")
    smtp_server.stall_seconds = 30
    email = make_email()

    dispatch()

    email.refresh_from_db()
    assert email.status == Status.PENDING
    assert email.attempts == 2
    attempts = list(email.attempt_log.all())
    assert [a.outcome for a in attempts] == [Outcome.UNKNOWN, Outcome.UNKNOWN]
    assert all("timed out" in a.reply for a in attempts)
    # Bounded by the 1 s timeout, far below the 30 s the server would stall for.
    assert all(a.duration_ms < 5000 for a in attempts)


@pytest.fixture
def auth_server(settings):
    """A relay that wants AUTH, and settings with the wrong password."""
    with SMTPTestServer(username="outbox", password="right-password") as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = server.host, server.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "outbox", "wrong-password"
        settings.EMAIL_TIMEOUT = 2
        yield server


def test_fault__535_is_a_configuration_fault_rows_wait_without_attempts(auth_server, make_email, dispatch, caplog):
    emails = [make_email(to=[f"p{i}@example.com"]) for i in range(3)]

    with caplog.at_level(logging.INFO), pytest.raises(CommandError) as raised:
        dispatch()

    assert raised.value.returncode == 3
    rows = OutboundEmail.objects.filter(pk__in=[e.pk for e in emails])
    assert {(r.status, r.attempts, r.claimed_by) for r in rows} == {(Status.PENDING, 0, "")}
    assert DeliveryAttempt.objects.count() == 0
    assert "535" in rows.get(pk=emails[0].pk).last_error
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("outbox")]
    assert len(errors) == 1 and "configuration fault" in errors[0].getMessage()
    assert "wrong-password" not in caplog.text
    assert auth_server.messages == []


def test_fault__535_then_right_password_sends_everything(auth_server, make_email, dispatch, settings):
    email = make_email()
    with pytest.raises(CommandError):
        dispatch()

    settings.EMAIL_HOST_PASSWORD = "right-password"
    dispatch()

    email.refresh_from_db()
    assert (email.status, email.attempts) == (Status.SENT, 1)
    assert auth_server.message_ids() == [email.message_id]


def test_fault__rows_past_max_age_still_fail_during_a_configuration_fault(auth_server, make_email, dispatch, settings):
    settings.OUTBOX_MAX_AGE_SECONDS = 3600
    old, fresh = make_email(), make_email(to=["other@example.com"])
    OutboundEmail.objects.filter(pk=old.pk).update(queued_at=Now() - timedelta(hours=2))

    with pytest.raises(CommandError):
        dispatch()

    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.status == Status.FAILED
    assert "OUTBOX_MAX_AGE_SECONDS" in old.last_error and "535" in old.last_error
    assert old.attempts == 0
    assert (fresh.status, fresh.attempts) == (Status.PENDING, 0)


@pytest.mark.parametrize(
    "corruption",
    [
        {"headers": {"X-Note": "line\r\nBcc: spy@example.net"}},
        {"recipients": ["two@ats@example.com"]},
        {"from_email": "sender@example.com\nBcc: spy@example.net"},
        {"headers": ["not", "a", "mapping"]},
        {"recipients": []},
        {"recipients": [123]},
        {"recipients": {"a": "b@example.com"}},
        {"message_id": ""},
    ],
    ids=[
        "header-injection",
        "broken-address",
        "broken-sender",
        "headers-not-a-dict",
        "no-recipients",
        "recipient-not-text",
        "recipients-not-a-list",
        "no-message-id",
    ],
)
def test_fault__poison_row_fails_alone_and_the_batch_goes_on(corruption, smtp_server, make_email, dispatch):
    """A row written around enqueue_email's checks fails with its error; the rows around it are sent."""
    before, poison, after = make_email(), make_email(to=["p@example.com"]), make_email(to=["q@example.com"])
    OutboundEmail.objects.filter(pk=poison.pk).update(**corruption)

    dispatch()

    poison.refresh_from_db()
    assert poison.status == Status.FAILED
    assert poison.last_error.startswith("cannot build message:")
    assert poison.attempts == 0  # nothing reached the server
    assert sorted(smtp_server.message_ids()) == sorted([before.message_id, after.message_id])
    assert OutboundEmail.objects.filter(status=Status.SENT).count() == 2


def test_fault__failing_receiver_does_not_undo_the_sent_record(smtp_server, make_email, dispatch, caplog):
    def broken_receiver(**kwargs):
        raise RuntimeError("receiver bug")

    email_sent.connect(broken_receiver, dispatch_uid="test-broken-receiver")
    try:
        email = make_email()
        dispatch()
    finally:
        email_sent.disconnect(dispatch_uid="test-broken-receiver")

    email.refresh_from_db()
    assert (email.status, email.attempts) == (Status.SENT, 1)
    assert smtp_server.message_ids() == [email.message_id]
    assert "a receiver failed" in caplog.text


def test_fault__nul_in_a_server_reply_is_still_recorded(smtp_server, make_email, dispatch, one_try):
    smtp_server.set_mode("451")
    email = make_email()
    from outbox import testing

    original = testing.MODES["451"]
    testing.MODES["451"] = "451 4.3.0 bad\x00reply"
    try:
        dispatch()
    finally:
        testing.MODES["451"] = original

    email.refresh_from_db()
    assert email.status == Status.PENDING
    assert email.last_error == "451 4.3.0 badreply"


def make_due(email) -> None:
    OutboundEmail.objects.filter(pk=email.pk).update(next_attempt_at=Now())


def test_retry__backoff_follows_the_schedule_then_fails_with_the_last_reply(
    smtp_server, make_email, dispatch, settings
):
    settings.OUTBOX_QUICK_RETRIES = 1
    settings.OUTBOX_BACKOFF_SECONDS = [60, 300]
    settings.OUTBOX_MAX_ATTEMPTS = 4
    smtp_server.set_mode("451")
    email = make_email()

    delays = []
    for _ in range(3):
        dispatch()
        row = OutboundEmail.objects.get(pk=email.pk)
        assert row.status == Status.PENDING
        # Both times come from the database clock in one statement.
        delays.append(int((row.next_attempt_at - row.updated_at).total_seconds()))
        make_due(email)
    dispatch()

    assert delays == [60, 300, 300]  # the last delay repeats
    email.refresh_from_db()
    assert email.status == Status.FAILED
    assert email.attempts == 4
    assert email.last_error == "451 4.3.0 Temporary local problem, try again later (too many attempts)"
    assert [outcome for outcome, _ in log_of(email)] == [Outcome.TRANSIENT] * 4


def test_retry__quick_tries_never_pass_max_attempts(smtp_server, make_email, dispatch, settings):
    settings.OUTBOX_QUICK_RETRIES = 5
    settings.OUTBOX_MAX_ATTEMPTS = 2
    smtp_server.set_mode("451")
    email = make_email()

    dispatch()

    email.refresh_from_db()
    assert (email.status, email.attempts) == (Status.FAILED, 2)
    assert smtp_server.data_commands == 2


def test_retry__transient_fault_on_a_row_past_max_age_fails_it(smtp_server, make_email, dispatch, settings, one_try):
    settings.OUTBOX_MAX_AGE_SECONDS = 3600
    smtp_server.set_mode("452")
    email = make_email()
    OutboundEmail.objects.filter(pk=email.pk).update(queued_at=Now() - timedelta(hours=2))

    dispatch()

    email.refresh_from_db()
    assert (email.status, email.attempts) == (Status.FAILED, 1)
    assert email.last_error == "452 4.3.1 Insufficient system storage (too old)"


@pytest.mark.postgresql
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_fault__535_as_a_process_once_exits_3_with_one_clear_error_and_running_it_backs_off(tmp_path):
    message_ids = enqueue_many(3)
    with SMTPTestServer(username="outbox", password="right-password") as server:
        env = {"EMAIL_HOST_PASSWORD": "wrong-password"}
        with Dispatcher(server, tmp_path, "--once", env=env) as once:
            assert once.wait(60) == 3
            once_output = once.output()
        # Run until stopped: it backs off as a whole (5 s, then longer) instead of trying each row.
        connections = server.connections
        with Dispatcher(server, tmp_path, env=env) as running:
            wait_until(lambda: "configuration fault" in running.output(), message="the fault to be reported")
            time.sleep(3)
            running.process.terminate()
            # Stopped while the fault lasts: the exit status still reports it.
            assert running.wait(30) == 3
            running_output = running.output()
        tries_while_running = server.connections - connections

    for output in (once_output, running_output):
        assert len([line for line in output.splitlines() if " ERROR outbox" in line]) == 1, output
        assert "wrong-password" not in output
    assert "CommandError: configuration fault" in once_output
    rows = OutboundEmail.objects.filter(message_id__in=message_ids)
    assert {(r.status, r.attempts) for r in rows} == {(Status.PENDING, 0)}
    assert not DeliveryAttempt.objects.exists()
    assert tries_while_running <= 2  # not one per row: the first fault pauses all sending
