"""The outbox's backlog at a glance, for `outbox_status` and `/healthz` alike."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Q
from django.db.models.functions import Now

from .models import OutboundEmail

Status = OutboundEmail.Status

# Due rows: pending ones whose time has come, and sending ones whose dispatcher died (lease ran out).
_DUE_SINCE = (
    (Q(status=Status.PENDING, next_attempt_at__lte=Now()), "next_attempt_at"),
    (Q(status=Status.SENDING, lease_expires_at__lte=Now()), "lease_expires_at"),
)


def backlog() -> dict[str, Any]:
    """Count rows per state, due rows and recent failures, and how long the oldest due row has waited.

    `oldest_due_age_seconds` is measured on the database clock from the moment the row
    became due (0 when nothing is due): it grows only while no dispatcher is sending.
    """
    counts = {status.value: 0 for status in Status}
    for row in OutboundEmail.objects.order_by().values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    due = 0
    oldest = timedelta(0)
    for condition, since in _DUE_SINCE:
        stats = OutboundEmail.objects.filter(condition).aggregate(
            n=Count("id"),
            age=Max(ExpressionWrapper(Now() - F(since), output_field=DurationField())),
        )
        due += stats["n"]
        if stats["age"] is not None:
            oldest = max(oldest, stats["age"])
    failed_last_24h = OutboundEmail.objects.filter(
        status=Status.FAILED, updated_at__gte=Now() - timedelta(hours=24)
    ).count()
    return {
        "counts": counts,
        "due": due,
        "oldest_due_age_seconds": round(oldest.total_seconds(), 1),
        "failed_last_24h": failed_last_24h,
    }
