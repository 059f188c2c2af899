"""What the outbox keeps, and for how long: purge finished rows, blank the bodies of old sent ones.

Both work in bounded batches, each its own short transaction, so a purge of millions of rows
never holds long locks or a huge transaction; and both touch finished rows only: a pending or
sending row is never deleted or blanked, even if it changes state while the purge runs.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Now

from .models import DeliveryAttempt, OutboundEmail

logger = logging.getLogger(__name__)

Status = OutboundEmail.Status
PURGED_BODY = "[body removed after OUTBOX_BODY_RETENTION_DAYS]"


def purge_finished_emails(*, older_than: timedelta, batch_size: int = 1000, dry_run: bool = False) -> int:
    """Delete sent, failed and cancelled rows (and their attempts) last changed before `older_than` ago."""
    finished = OutboundEmail.objects.filter(status__in=OutboundEmail.FINISHED, updated_at__lt=Now() - older_than)
    if dry_run:
        return finished.count()
    deleted = 0
    while True:
        with transaction.atomic():
            # Locked, so a concurrent requeue of a failed row waits, then finds it gone; skipped
            # rows (locked by someone else) are left for the next run.
            ids = list(
                finished.order_by("id").select_for_update(skip_locked=True).values_list("id", flat=True)[:batch_size]
            )
            if not ids:
                break
            DeliveryAttempt.objects.filter(email_id__in=ids).delete()
            deleted += (
                OutboundEmail.objects.filter(id__in=ids, status__in=OutboundEmail.FINISHED)
                .delete()[1]
                .get(OutboundEmail._meta.label, 0)
            )
        if len(ids) < batch_size:
            break
    if deleted:
        logger.info("outbox: purged %s finished email(s) older than %s day(s)", deleted, older_than.days)
    return deleted


def blank_old_bodies(*, retention_days: int, batch_size: int = 1000, dry_run: bool = False) -> int:
    """Replace the bodies of sent and cancelled rows older than `retention_days` with a marker.

    The bodies of invitation emails hold live links; once sent (or cancelled) nobody needs
    them, and the row itself stays for the record. Failed rows keep theirs: they may be requeued.
    """
    cutoff = Now() - timedelta(days=retention_days)
    old = OutboundEmail.objects.filter(
        Q(status=Status.SENT, sent_at__lt=cutoff) | Q(status=Status.CANCELLED, updated_at__lt=cutoff)
    ).exclude(body_text=PURGED_BODY, body_html="")
    if dry_run:
        return old.count()
    blanked = 0
    while True:
        ids = list(old.order_by("id").values_list("id", flat=True)[:batch_size])
        if not ids:
            break
        with transaction.atomic():
            blanked += OutboundEmail.objects.filter(id__in=ids, status__in=(Status.SENT, Status.CANCELLED)).update(
                body_text=PURGED_BODY, body_html=""
            )
        if len(ids) < batch_size:
            break
    if blanked:
        logger.info("outbox: blanked the bodies of %s email(s) older than %s day(s)", blanked, retention_days)
    return blanked
