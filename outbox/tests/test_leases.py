"""Leases and fencing: a claim that ran out never overwrites the claim that replaced it."""

import logging
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models.functions import Now
from django.utils import timezone

from outbox import services
from outbox.models import DeliveryAttempt, OutboundEmail

pytestmark = pytest.mark.django_db

Status = OutboundEmail.Status


def off_the_event_loop(fn):
    """Run `fn` in a plain thread and wait: the SMTP server's hooks run inside its asyncio loop,
    where Django refuses database calls. The thread's connection is closed when it is done."""

    def run():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the test, not to the SMTP session
            errors.append(exc)
        finally:
            connection.close()

    errors: list[BaseException] = []
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if errors:
        raise errors[0]


def expire_leases() -> None:
    OutboundEmail.objects.filter(status=Status.SENDING).update(lease_expires_at=Now() - timedelta(seconds=1))


def a_try(outcome=DeliveryAttempt.Outcome.SENT) -> DeliveryAttempt:
    return DeliveryAttempt(attempted_at=timezone.now(), outcome=outcome, worker="test")


def test_lease__live_lease_is_not_claimable_and_an_expired_one_is(make_email):
    email = make_email()
    assert [e.pk for e in services.claim_due_emails(claim="first", limit=10, lease_seconds=60)] == [email.pk]

    assert services.claim_due_emails(claim="second", limit=10, lease_seconds=60) == []
    expire_leases()
    assert [e.pk for e in services.claim_due_emails(claim="second", limit=10, lease_seconds=60)] == [email.pk]
    assert OutboundEmail.objects.get(pk=email.pk).claimed_by == "second"


def test_lease__expired_claim_cannot_overwrite_the_state_of_the_claim_that_replaced_it(make_email, caplog):
    make_email()
    [old] = services.claim_due_emails(claim="old", limit=10, lease_seconds=60)
    expire_leases()
    [new] = services.claim_due_emails(claim="new", limit=10, lease_seconds=60)

    assert services.mark_sent(email=old, claim="old", attempts=[a_try()], refused={}) is False
    assert services.mark_failed(email=old, claim="old", attempts=[], error="old says failed") is False
    assert services.mark_retry(email=old, claim="old", attempts=[], error="old says retry") == ""
    assert services.release(claim="old", ids=[old.pk]) == 0
    assert services.renew_lease(claim="old", ids=[old.pk], lease_seconds=60) == set()

    row = OutboundEmail.objects.get(pk=old.pk)
    assert (row.status, row.claimed_by, row.attempts, row.last_error) == (Status.SENDING, "new", 0, "")
    assert "lease lost" in caplog.text

    assert services.mark_sent(email=new, claim="new", attempts=[a_try()], refused={}) is True
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.SENT, 1)
    # The old claim's try did happen (a duplicate at worst): it stays in the log, the counter is the new claim's.
    assert row.attempt_log.count() == 2


def test_lease__retried_record_after_a_commit_that_went_through_writes_the_attempts_once(make_email):
    make_email()
    [email] = services.claim_due_emails(claim="c", limit=10, lease_seconds=60)
    tries = [a_try()]

    assert services.mark_sent(email=email, claim="c", attempts=tries, refused={}) is True
    assert services.mark_sent(email=email, claim="c", attempts=tries, refused={}) is False  # the retry

    assert DeliveryAttempt.objects.filter(email_id=email.pk).count() == 1
    assert OutboundEmail.objects.get(pk=email.pk).attempts == 1


@pytest.mark.django_db(transaction=True)
def test_lease__dispatcher_that_lost_its_lease_mid_send_leaves_the_row_to_the_new_claim(
    smtp_server, make_email, dispatch, caplog
):
    email = make_email()

    stolen = []

    def steal():
        expire_leases()
        stolen.extend(services.claim_due_emails(claim="thief", limit=10, lease_seconds=60))

    # Runs while the dispatcher waits for the 250 reply.
    smtp_server.on_message = lambda received: off_the_event_loop(steal)
    with caplog.at_level(logging.INFO):
        dispatch()

    email.refresh_from_db()
    assert [e.pk for e in stolen] == [email.pk]
    assert (email.status, email.claimed_by, email.attempts) == (Status.SENDING, "thief", 0)
    assert smtp_server.message_ids() == [email.message_id]
    assert f"lease lost on email {email.pk} before recording sent" in caplog.text


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_lease__renewed_during_a_slow_batch_so_no_other_claim_takes_a_row_being_sent(
    smtp_server, make_email, dispatch, settings
):
    """With a 3 s lease and 2 s per message, the third message is only safe because the lease is renewed."""
    settings.OUTBOX_LEASE_SECONDS = 3
    settings.EMAIL_TIMEOUT = 5
    emails = [make_email(to=[f"p{i}@example.com"]) for i in range(3)]
    smtp_server.delay = 2.0
    stolen = []

    def try_to_steal():
        stolen.extend(services.claim_due_emails(claim="thief", limit=10, lease_seconds=60))

    smtp_server.on_message = lambda received: off_the_event_loop(try_to_steal)
    dispatch()

    assert stolen == []
    assert sorted(smtp_server.message_ids()) == sorted(e.message_id for e in emails)
    assert set(OutboundEmail.objects.values_list("status", "attempts")) == {(Status.SENT, 1)}
