"""Writes to the outbox: enqueue, claim, and record what happened to a claimed row."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from datetime import timedelta
from email.utils import make_msgid
from typing import Any, cast

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Now
from django.db.models.sql import UpdateQuery

from . import conf
from .models import DeliveryAttempt, OutboundEmail
from .signals import email_failed, email_sent

logger = logging.getLogger(__name__)

Status = OutboundEmail.Status
NOTIFY_CHANNEL = "outbox_email"


# RFC 5322 field names are printable ASCII without the colon. The headers the message builds
# itself cannot be set: a "Bcc" header would be shown to every recipient and deliver to no one.
_FIELD_NAME = re.compile(r"[!-9;-~]+")
_BUILT_HEADERS = frozenset({"to", "cc", "bcc", "from", "sender", "subject", "message-id", "date", "mime-version"})
MAX_HEADER_LENGTH = 998  # RFC 5322's line limit


def _check_text(name: str, value: Any, *, header: bool = False) -> None:
    """Refuse what cannot be stored or sent: non-text, NUL, and for headers line breaks and overlong values."""
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be text.", code="invalid")
    if "\x00" in value:
        raise ValidationError(f"{name} must not contain NUL characters.", code="nul")
    if header and ("\n" in value or "\r" in value):
        raise ValidationError(f"{name} must not contain line breaks.", code="header_injection")
    if header and len(value) > MAX_HEADER_LENGTH:
        raise ValidationError(f"{name} is longer than {MAX_HEADER_LENGTH} characters.", code="too_long")


def _check_header_name(name: Any) -> None:
    if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
        raise ValidationError(f"{name!r} is not a valid header name.", code="invalid_header")
    if name.lower() in _BUILT_HEADERS or name.lower().startswith("content-"):
        raise ValidationError(f"The {name} header is set by the outbox itself.", code="reserved_header")


def enqueue_email(
    *,
    to: Sequence[str],
    subject: str,
    body: str,
    html_body: str = "",
    from_email: str | None = None,
    headers: dict[str, str] | None = None,
    dedupe_key: str | None = None,
    related_object: Any = None,
) -> OutboundEmail:
    """Queue one email in the caller's transaction; it is sent only if that transaction commits.

    With a `dedupe_key` already queued, return the existing row instead of adding another.
    """
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError(
            "enqueue_email() must run inside the caller's transaction (transaction.atomic())."
        )
    recipients = list(to)
    if not recipients:
        raise ValidationError("An email needs at least one recipient.", code="no_recipients")
    for address in recipients:
        _check_text("A recipient", address, header=True)
        validate_email(address)
    from_email = from_email or settings.DEFAULT_FROM_EMAIL
    _check_text("The sender", from_email, header=True)
    _check_text("The subject", subject, header=True)
    _check_text("The text body", body)
    _check_text("The HTML body", html_body)
    headers = {**getattr(settings, "OUTBOX_EXTRA_HEADERS", {}), **(headers or {})}
    for name, value in headers.items():
        _check_header_name(name)
        _check_text(f"Header {name}", value, header=True)

    fields: dict[str, Any] = dict(
        from_email=from_email,
        recipients=recipients,
        subject=subject,
        body_text=body,
        body_html=html_body,
        headers=headers,
        message_id=make_msgid(domain=_message_id_domain(from_email)),
        dedupe_key=dedupe_key,
    )
    if related_object is not None:
        fields["related_content_type"] = ContentType.objects.get_for_model(related_object)
        fields["related_object_id"] = str(related_object.pk)
    if dedupe_key is None:
        email = OutboundEmail.objects.create(**fields)
    else:
        try:
            with transaction.atomic():
                email = OutboundEmail.objects.create(**fields)
        except IntegrityError:
            return OutboundEmail.objects.get(dedupe_key=dedupe_key)
    if connection.vendor == "postgresql":
        # Delivered at commit only, and coalesced by PostgreSQL within the transaction.
        with connection.cursor() as cursor:
            cursor.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    return email


def _message_id_domain(from_email: str) -> str:
    domain = from_email.rpartition("@")[2].rstrip(">").strip()
    return domain or "localhost"


def emails_for(obj: Any) -> QuerySet[OutboundEmail]:
    """The outbound emails queued for a related object."""
    return OutboundEmail.objects.filter(
        related_content_type=ContentType.objects.get_for_model(obj), related_object_id=str(obj.pk)
    )


# Rows whose dispatcher died first, then pending rows in due order; each matches a partial index.
_DUE = (
    (Q(status=Status.SENDING, lease_expires_at__lte=Now()), "lease_expires_at"),
    (Q(status=Status.PENDING, next_attempt_at__lte=Now()), "next_attempt_at"),
)


def claim_due_emails(*, claim: str, limit: int, lease_seconds: int) -> list[OutboundEmail]:
    """Claim up to `limit` due rows for `claim` in one short transaction, and return them.

    Due means pending with `next_attempt_at` passed, or sending with a lease that ran out
    (its dispatcher died). `FOR UPDATE SKIP LOCKED` lets any number of dispatchers claim
    at once without waiting on, or taking, each other's rows. Times come from the database.
    """
    lease = Now() + timedelta(seconds=lease_seconds)
    claimed = 0
    with transaction.atomic():
        for due, order in _DUE:
            if claimed >= limit:
                break
            ids = OutboundEmail.objects.filter(due).order_by(order).select_for_update(skip_locked=True).values("id")
            claimed += OutboundEmail.objects.filter(id__in=ids[: limit - claimed]).update(
                status=Status.SENDING, claimed_by=claim, lease_expires_at=lease, updated_at=Now()
            )
        if not claimed:
            return []
        # Read back before commit: a connection lost here rolls the claim back instead of
        # leaving rows held, unsent, until their lease runs out.
        return list(
            OutboundEmail.objects.filter(claimed_by=claim, status=Status.SENDING).order_by("next_attempt_at", "id")
        )


def renew_lease(*, claim: str, ids: Iterable[int], lease_seconds: int) -> set[int]:
    """Extend the lease on rows still held by `claim`; return the ids still held."""
    ids = list(ids)
    if not ids:
        return set()
    rows = OutboundEmail.objects.filter(id__in=ids, claimed_by=claim, status=Status.SENDING)
    with transaction.atomic():
        held = set(rows.select_for_update().values_list("id", flat=True))
        rows.filter(id__in=held).update(lease_expires_at=Now() + timedelta(seconds=lease_seconds), updated_at=Now())
    return held


def _fenced(email: OutboundEmail, claim: str) -> QuerySet[OutboundEmail]:
    """The row, only while it is still in `sending` under this claim."""
    return OutboundEmail.objects.filter(pk=email.pk, status=Status.SENDING, claimed_by=claim)


def _record_attempts(email: OutboundEmail, attempts: Sequence[DeliveryAttempt]) -> None:
    for attempt in attempts:
        attempt.email_id = email.pk
    DeliveryAttempt.objects.bulk_create(attempts)


def _lost_lease(email: OutboundEmail, claim: str, outcome: str, attempts: Sequence[DeliveryAttempt]) -> None:
    """Keep the tries in the log (they happened) but leave the row to whoever holds it now.

    A retried write whose first commit did go through also lands here; the tries are then
    already in the log, so they are not written twice.
    """
    first = attempts[0] if attempts else None
    if (
        first is not None
        and not DeliveryAttempt.objects.filter(
            email_id=email.pk, worker=first.worker, attempted_at=first.attempted_at
        ).exists()
    ):
        _record_attempts(email, attempts)
    logger.warning(
        "outbox: lease lost on email %s before recording %s; another dispatcher owns it now, nothing overwritten",
        email.pk,
        outcome,
    )


# What recording writes, read back so that receivers see the row as recorded (the database
# clock set the times); never the bodies, which can be large and are not needed once it is out.
_RECORDED_FIELDS = (
    "status",
    "attempts",
    "last_error",
    "refused_recipients",
    "claimed_by",
    "lease_expires_at",
    "sent_at",
    "updated_at",
)


def _update_can_return() -> bool:
    """Whether UPDATE ... RETURNING works: PostgreSQL, and SQLite from 3.35 (not MySQL or MariaDB)."""
    vendor = connection.vendor
    return vendor == "postgresql" or (vendor == "sqlite" and connection.features.can_return_columns_from_insert)


def _record_outcome(email: OutboundEmail, claim: str, **changes: Any) -> bool:
    """Write `changes` if `claim` still holds the row, and bring `email` up to date with them.

    Return False, writing nothing, when the fence matches nothing (the lease was lost).
    The dispatcher is CPU-bound on statements, so where the database can return what an
    UPDATE wrote (PostgreSQL, SQLite 3.35+) this is one statement: Django 5.2's `update()`
    returns only a count, so the ORM compiles the UPDATE and RETURNING is appended. Elsewhere
    the row is re-read, for the recorded fields only (never the bodies).
    """
    fenced = _fenced(email, claim)
    if not _update_can_return():
        if not fenced.update(**changes):
            return False
        values = OutboundEmail.objects.filter(pk=email.pk).values_list(*_RECORDED_FIELDS).get()
        for name, value in zip(_RECORDED_FIELDS, values, strict=True):
            setattr(email, name, value)
        return True
    query = cast(UpdateQuery, fenced.query.chain(UpdateQuery))
    query.add_update_values(changes)
    update_sql, params = query.get_compiler(connection=connection).as_sql()
    table, fields = OutboundEmail._meta.db_table, OutboundEmail._meta.concrete_fields
    columns = [field.get_col(table) for field in fields if field.name in _RECORDED_FIELDS]
    returning = ", ".join(connection.ops.quote_name(column.target.column) for column in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"{update_sql} RETURNING {returning}", params)
        row = cursor.fetchone()
    if row is None:
        return False
    for column, value in zip(columns, row, strict=True):
        # The conversions a queryset applies (JSON decoding, SQLite's datetime strings).
        for converter in connection.ops.get_db_converters(column) + column.get_db_converters(connection):
            value = converter(value, column, connection)
        setattr(email, column.target.attname, value)
    return True


def _notify(signal: Any, email: OutboundEmail) -> None:
    """Tell receivers in a savepoint: a failing receiver must not undo, or block, the record."""
    try:
        with transaction.atomic():
            signal.send(sender=OutboundEmail, email=email)
    except (OperationalError, InterfaceError):
        raise  # the connection is gone: the whole record is retried
    except Exception:
        logger.exception("outbox: a receiver failed for email %s; the outcome is recorded anyway", email.pk)


_RELEASED = dict(claimed_by="", lease_expires_at=None, updated_at=Now())


def mark_sent(
    *, email: OutboundEmail, claim: str, attempts: Sequence[DeliveryAttempt], refused: dict[str, Any]
) -> bool:
    """Record that the server accepted the message; return False if the claim was lost."""
    with transaction.atomic():
        recorded = _record_outcome(
            email,
            claim,
            status=Status.SENT,
            sent_at=Now(),
            attempts=F("attempts") + len(attempts),
            last_error=_refused_summary(refused),
            refused_recipients=refused,
            **_RELEASED,
        )
        if not recorded:
            _lost_lease(email, claim, "sent", attempts)
            return False
        _record_attempts(email, attempts)
        _notify(email_sent, email)
    return True


def _refused_summary(refused: dict[str, Any]) -> str:
    if not refused:
        return ""
    return f"{len(refused)} recipient(s) refused: " + "; ".join(f"{code} {msg}" for code, msg in refused.values())


def mark_failed(*, email: OutboundEmail, claim: str, attempts: Sequence[DeliveryAttempt], error: str) -> bool:
    """Fail the row for good with the server's reply; return False if the claim was lost."""
    with transaction.atomic():
        recorded = _record_outcome(
            email, claim, status=Status.FAILED, attempts=F("attempts") + len(attempts), last_error=error, **_RELEASED
        )
        if not recorded:
            _lost_lease(email, claim, "failed", attempts)
            return False
        _record_attempts(email, attempts)
        _notify(email_failed, email)
    return True


def mark_retry(*, email: OutboundEmail, claim: str, attempts: Sequence[DeliveryAttempt], error: str) -> str:
    """Put the row back with the next backoff delay, or fail it once out of tries or too old.

    Return the state written ("pending" or "failed"), or "" if the claim was lost.
    """
    settings_ = conf.get()
    total_attempts = email.attempts + len(attempts)
    too_old = OutboundEmail.objects.filter(
        pk=email.pk, queued_at__lte=Now() - timedelta(seconds=settings_.max_age_seconds)
    ).exists()
    if total_attempts >= settings_.max_attempts or too_old:
        reason = "too many attempts" if total_attempts >= settings_.max_attempts else "too old"
        return (
            Status.FAILED
            if mark_failed(email=email, claim=claim, attempts=attempts, error=f"{error} ({reason})")
            else ""
        )
    schedule = settings_.backoff_seconds or (60,)
    delay = schedule[min(email.reschedules, len(schedule) - 1)]
    with transaction.atomic():
        updated = _fenced(email, claim).update(
            status=Status.PENDING,
            attempts=F("attempts") + len(attempts),
            reschedules=F("reschedules") + 1,
            next_attempt_at=Now() + timedelta(seconds=delay),
            last_error=error,
            **_RELEASED,
        )
        if not updated:
            _lost_lease(email, claim, "retry", attempts)
            return ""
        _record_attempts(email, attempts)
    return Status.PENDING


def release(
    *,
    claim: str,
    ids: Iterable[int],
    attempts: Sequence[DeliveryAttempt] = (),
    email_id: int | None = None,
    error: str = "",
) -> int:
    """Give rows back to pending without counting an attempt (shutdown, configuration fault)."""
    ids = list(ids)
    if not ids:
        return 0
    with transaction.atomic():
        if attempts and email_id is not None:
            for attempt in attempts:
                attempt.email_id = email_id
            DeliveryAttempt.objects.bulk_create(attempts)
        changes: dict[str, Any] = dict(status=Status.PENDING, **_RELEASED)
        if error:
            changes["last_error"] = error
        return OutboundEmail.objects.filter(id__in=ids, claimed_by=claim, status=Status.SENDING).update(**changes)


def fail_overdue() -> int:
    """Fail pending rows older than OUTBOX_MAX_AGE_SECONDS, keeping their last error."""
    cutoff = Now() - timedelta(seconds=conf.get().max_age_seconds)
    failed = 0
    overdue = OutboundEmail.objects.filter(status=Status.PENDING, queued_at__lte=cutoff)
    for email in overdue.only("pk", "last_error").iterator(chunk_size=500):
        with transaction.atomic():
            updated = OutboundEmail.objects.filter(pk=email.pk, status=Status.PENDING).update(
                status=Status.FAILED,
                last_error=f"not sent within OUTBOX_MAX_AGE_SECONDS; last error: {email.last_error or 'none'}",
                updated_at=Now(),
            )
            if updated:
                failed += 1
                email.refresh_from_db()
                _notify(email_failed, email)
    if failed:
        logger.error("outbox: %s email(s) failed for being older than OUTBOX_MAX_AGE_SECONDS", failed)
    return failed


def requeue_failed(queryset: QuerySet[OutboundEmail]) -> int:
    """Put failed rows back to pending, due now, with a fresh attempt budget and age."""
    return queryset.filter(status=Status.FAILED).update(
        status=Status.PENDING, attempts=0, reschedules=0, next_attempt_at=Now(), queued_at=Now(), updated_at=Now()
    )


def cancel_pending(queryset: QuerySet[OutboundEmail]) -> int:
    """Cancel rows that have not been claimed yet; rows being sent are left alone."""
    return queryset.filter(status=Status.PENDING).update(status=Status.CANCELLED, updated_at=Now())
