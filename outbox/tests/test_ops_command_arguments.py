"""Ops commands refuse out-of-range arguments up front with a usage error, before changing anything,
instead of failing half-way with a traceback (or, for a monitor, never alerting)."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from outbox.models import OutboundEmail
from outbox.retention import PURGED_BODY
from outbox.services import enqueue_email

pytestmark = pytest.mark.django_db


def _old_sent_email() -> OutboundEmail:
    with transaction.atomic():
        email = enqueue_email(to=["old@example.com"], subject="s", body="a live link")
    long_ago = timezone.now() - timedelta(days=400)
    OutboundEmail.objects.filter(pk=email.pk).update(status=OutboundEmail.Status.SENT, sent_at=long_ago)
    return email


@pytest.mark.parametrize("option", ["--older-than", "--body-retention-days"])
def test_purge_outbox__absurd_day_count__usage_error_and_nothing_blanked(option):
    email = _old_sent_email()

    with pytest.raises(CommandError, match=option):
        call_command("purge_outbox", option, "99999999999")

    email.refresh_from_db()
    assert email.body_text == "a live link" != PURGED_BODY


def test_requeue_failed__absurd_since__usage_error():
    with pytest.raises(CommandError, match="--since"):
        call_command("requeue_failed", "--since", "99999999d")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_outbox_status__non_finite_max_age__usage_error(value):
    with pytest.raises(CommandError, match="--max-age"):
        call_command("outbox_status", "--max-age", value)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_dispatch_outbox__non_finite_poll_interval__usage_error(value):
    with pytest.raises(CommandError, match="--poll-interval"):
        call_command("dispatch_outbox", "--once", "--poll-interval", value)
