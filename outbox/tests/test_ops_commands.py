"""`purge_outbox` and `requeue_failed`: what they touch, and above all what they never touch."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from outbox.management.commands.requeue_failed import parse_since
from outbox.models import DeliveryAttempt, OutboundEmail
from outbox.retention import PURGED_BODY

pytestmark = pytest.mark.django_db

Status = OutboundEmail.Status


@pytest.fixture
def aged(make_email):
    """Make a row in `status`, last changed (and sent) `days` ago, with one delivery attempt."""

    def make(status, days, **fields):
        email = make_email(body="Open https://app.clinic.org/invitations/accept/secret-token/", html_body="<a>x</a>")
        moment = timezone.now() - timedelta(days=days)
        changes = {"status": status, "updated_at": moment, **fields}
        if status == Status.SENT:
            changes["sent_at"] = moment
        if status == Status.SENDING:
            changes.update(claimed_by="worker", lease_expires_at=moment)
        OutboundEmail.objects.filter(pk=email.pk).update(**changes)
        DeliveryAttempt.objects.create(email=email, outcome=DeliveryAttempt.Outcome.TRANSIENT)
        return email

    return make


def surviving_ids() -> set[int]:
    return set(OutboundEmail.objects.values_list("id", flat=True))


def test_purge_outbox__deletes_only_old_finished_rows_in_batches(aged, capsys):
    old_finished = {aged(status, days=100).pk for status in (Status.SENT, Status.SENT, Status.FAILED, Status.CANCELLED)}
    old_pending = aged(Status.PENDING, days=100)
    old_sending = aged(Status.SENDING, days=100)
    recent_sent = aged(Status.SENT, days=5)

    call_command("purge_outbox", "--older-than", "30", "--batch-size", "1")

    assert surviving_ids() == {old_pending.pk, old_sending.pk, recent_sent.pk}
    assert not DeliveryAttempt.objects.filter(email_id__in=old_finished).exists()
    assert DeliveryAttempt.objects.filter(email_id=old_pending.pk).exists()
    assert "Finished emails deleted (did): 4" in capsys.readouterr().out


def test_purge_outbox__never_deletes_unfinished_rows_however_old(aged):
    unfinished = {aged(Status.PENDING, days=5000).pk, aged(Status.SENDING, days=5000).pk}

    call_command("purge_outbox", "--older-than", "0")

    assert surviving_ids() == unfinished


def test_purge_outbox__dry_run_changes_nothing(aged, capsys):
    email = aged(Status.SENT, days=100)

    call_command("purge_outbox", "--older-than", "30", "--dry-run")

    assert surviving_ids() == {email.pk}
    out = capsys.readouterr().out
    assert "Finished emails deleted (would): 1" in out and "Bodies blanked (would): 1" in out
    assert "secret-token" in OutboundEmail.objects.get(pk=email.pk).body_text


def test_purge_outbox__blanks_bodies_of_old_sent_and_cancelled_rows_only(aged, settings):
    settings.OUTBOX_BODY_RETENTION_DAYS = 14
    old_sent = aged(Status.SENT, days=20)
    old_cancelled = aged(Status.CANCELLED, days=20)
    old_failed = aged(Status.FAILED, days=20)
    old_pending = aged(Status.PENDING, days=20)
    recent_sent = aged(Status.SENT, days=2)

    call_command("purge_outbox", "--batch-size", "1")

    bodies = dict(OutboundEmail.objects.values_list("id", "body_text"))
    assert bodies[old_sent.pk] == bodies[old_cancelled.pk] == PURGED_BODY
    assert OutboundEmail.objects.get(pk=old_sent.pk).body_html == ""
    for kept in (old_failed, old_pending, recent_sent):
        assert "secret-token" in bodies[kept.pk]
    assert len(bodies) == 5  # blanking keeps the rows


def test_purge_outbox__blanking_leaves_the_row_timestamps_alone(aged, settings):
    settings.OUTBOX_BODY_RETENTION_DAYS = 1
    email = aged(Status.SENT, days=3)
    before = OutboundEmail.objects.get(pk=email.pk).updated_at

    call_command("purge_outbox")

    assert OutboundEmail.objects.get(pk=email.pk).updated_at == before


def test_requeue_failed__by_id_puts_only_those_rows_back_due_now(aged, capsys):
    chosen = aged(Status.FAILED, days=1, attempts=10, last_error="550")
    other = aged(Status.FAILED, days=1)
    sent = aged(Status.SENT, days=1)

    call_command("requeue_failed", "--id", str(chosen.pk), "--id", str(sent.pk))

    chosen.refresh_from_db()
    assert (chosen.status, chosen.attempts, chosen.reschedules) == (Status.PENDING, 0, 0)
    assert chosen.next_attempt_at <= timezone.now()
    assert OutboundEmail.objects.get(pk=other.pk).status == Status.FAILED
    assert OutboundEmail.objects.get(pk=sent.pk).status == Status.SENT
    captured = capsys.readouterr()
    assert "Requeued 1 failed email(s)" in captured.out
    assert f"left alone: {sent.pk}" in captured.err


def test_requeue_failed__since_picks_recent_failures(aged):
    recent = aged(Status.FAILED, days=0.5)
    old = aged(Status.FAILED, days=3)

    call_command("requeue_failed", "--since", "24h")

    assert OutboundEmail.objects.get(pk=recent.pk).status == Status.PENDING
    assert OutboundEmail.objects.get(pk=old.pk).status == Status.FAILED


def test_requeue_failed__all_and_dry_run(aged, capsys):
    rows = [aged(Status.FAILED, days=d) for d in (1, 10)]

    call_command("requeue_failed", "--all", "--dry-run")
    assert "Would requeue 2" in capsys.readouterr().out
    assert {r.status for r in OutboundEmail.objects.filter(pk__in=[r.pk for r in rows])} == {Status.FAILED}

    call_command("requeue_failed", "--all")
    assert set(OutboundEmail.objects.values_list("status", flat=True)) == {Status.PENDING}


def test_requeue_failed__refuses_without_a_selection():
    with pytest.raises(CommandError, match="--since WHEN, --id ID"):
        call_command("requeue_failed")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12-01T10:30", datetime(2026, 12, 1, 10, 30, tzinfo=UTC)),
        ("2026-12-01T10:30+01:00", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
    ],
)
def test_requeue_failed__since_accepts_iso_dates(text, expected):
    assert parse_since(text) == expected


def test_requeue_failed__since_accepts_relative_times():
    assert abs((timezone.now() - parse_since("7d")) - timedelta(days=7)) < timedelta(minutes=1)
    assert abs((timezone.now() - parse_since("30m")) - timedelta(minutes=30)) < timedelta(minutes=1)
    with pytest.raises(ValueError):
        parse_since("yesterday")
