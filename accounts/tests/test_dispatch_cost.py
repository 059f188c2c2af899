"""The database work of each dispatched invitation email, pinned so that a regression fails.

The dispatcher is CPU-bound on this work (see README, "Performance"): every statement added
to the per-message recording transaction costs throughput. If a change needs one more, update
the expected lists here on purpose.
"""

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import InvitationEvent, ProviderInvitation
from accounts.services import invitation_create
from outbox.models import DeliveryAttempt, OutboundEmail
from outbox.services import claim_due_emails, mark_failed, mark_sent

pytestmark = pytest.mark.django_db

# Inside the test's transaction, the recording transaction shows as SAVEPOINT ... RELEASE.
RECORD_STATEMENTS = [
    "SAVEPOINT",  # the recording transaction (BEGIN in production)
    "UPDATE",  # the row, fenced on status and claim, returning what it wrote
    "INSERT",  # the attempt log
    "SAVEPOINT",  # receivers run in a savepoint, so a failing one cannot undo the record
    "UPDATE",  # the invitation, only from its latest email and only while not accepted
    "INSERT",  # the audit event
    "RELEASE",
    "RELEASE",  # COMMIT in production
]


def _statements(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"].split(None, 1)[0].upper() for query in queries.captured_queries]


def _claimed_invitation_email(provider_role, admin_user) -> tuple[ProviderInvitation, OutboundEmail]:
    invitation = invitation_create(email="provider@example.com", role=provider_role, invited_by=admin_user)
    [email] = claim_due_emails(claim="test", limit=10, lease_seconds=60)
    return invitation, email


def _attempt(outcome: str) -> DeliveryAttempt:
    return DeliveryAttempt(attempted_at=timezone.now(), outcome=outcome, worker="test")


def test_record_sent_invitation_email__fenced_update_attempt_and_two_statements_for_the_invitation(
    provider_role, admin_user
):
    invitation, email = _claimed_invitation_email(provider_role, admin_user)

    with CaptureQueriesContext(connection) as queries:
        assert mark_sent(email=email, claim="test", attempts=[_attempt("sent")], refused={})

    assert _statements(queries) == RECORD_STATEMENTS
    invitation.refresh_from_db()
    assert invitation.email_sent and invitation.email_sent_at == email.sent_at is not None
    assert invitation.events.filter(action=InvitationEvent.Action.EMAIL_SENT).count() == 1


def test_record_failed_invitation_email__costs_the_same_statements_as_a_sent_one(provider_role, admin_user):
    invitation, email = _claimed_invitation_email(provider_role, admin_user)

    with CaptureQueriesContext(connection) as queries:
        assert mark_failed(email=email, claim="test", attempts=[_attempt("permanent")], error="550 no such user")

    assert _statements(queries) == RECORD_STATEMENTS
    invitation.refresh_from_db()
    assert not invitation.email_sent and invitation.email_error == "550 no such user"
    assert invitation.events.filter(action=InvitationEvent.Action.EMAIL_FAILED).count() == 1


def test_dispatch__each_further_invitation_email_adds_only_its_recording_transaction(
    provider_role, admin_user, smtp_server
):
    """One claim serves the batch; every message then costs exactly one recording transaction."""

    def dispatch_queries(invitations: int, first: int) -> int:
        for i in range(first, first + invitations):
            invitation_create(email=f"p{i}@example.com", role=provider_role, invited_by=admin_user)
        with CaptureQueriesContext(connection) as queries:
            call_command("dispatch_outbox", "--once", "--workers", "1")
        return len(queries.captured_queries)

    one, four = dispatch_queries(1, 0), dispatch_queries(4, 1)

    assert (four - one) / 3 == len(RECORD_STATEMENTS)
    assert OutboundEmail.objects.filter(status=OutboundEmail.Status.SENT).count() == 5


def test_record__without_update_returning_rereads_the_recorded_fields(provider_role, admin_user, monkeypatch):
    """Databases without UPDATE ... RETURNING pay one narrow SELECT and get the same result."""
    from outbox import services

    invitation, email = _claimed_invitation_email(provider_role, admin_user)
    monkeypatch.setattr(services, "_update_can_return", lambda: False)

    with CaptureQueriesContext(connection) as queries:
        assert mark_sent(email=email, claim="test", attempts=[_attempt("sent")], refused={})

    assert _statements(queries) == [*RECORD_STATEMENTS[:2], "SELECT", *RECORD_STATEMENTS[2:]]
    stored = OutboundEmail.objects.get(pk=email.pk)
    for name in ("status", "attempts", "claimed_by", "lease_expires_at", "sent_at", "updated_at"):
        assert getattr(email, name) == getattr(stored, name)
    invitation.refresh_from_db()
    assert invitation.email_sent_at == stored.sent_at


def test_record__returns_the_row_as_stored_partly_refused_recipients_included(provider_role, admin_user):
    _, email = _claimed_invitation_email(provider_role, admin_user)
    refused = {"other@example.com": (550, "no such user")}

    assert mark_sent(email=email, claim="test", attempts=[_attempt("sent")], refused=refused)

    stored = OutboundEmail.objects.get(pk=email.pk)
    for name in ("status", "attempts", "last_error", "refused_recipients", "claimed_by", "lease_expires_at"):
        assert getattr(email, name) == getattr(stored, name), name
    assert (email.sent_at, email.updated_at) == (stored.sent_at, stored.updated_at)
    assert email.refused_recipients == {"other@example.com": [550, "no such user"]}  # as JSON stores it
    assert email.status == OutboundEmail.Status.SENT and email.attempts == 1


def test_record__lost_lease_writes_nothing_and_tells_no_receiver(provider_role, admin_user):
    invitation, email = _claimed_invitation_email(provider_role, admin_user)

    assert not mark_sent(email=email, claim="someone-else", attempts=[_attempt("sent")], refused={})

    stored = OutboundEmail.objects.get(pk=email.pk)
    assert stored.status == OutboundEmail.Status.SENDING and stored.claimed_by == "test"
    invitation.refresh_from_db()
    assert not invitation.email_sent
    assert not invitation.events.filter(action=InvitationEvent.Action.EMAIL_SENT).exists()
