"""The dispatcher's settings, read once per use so tests can override them."""

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class OutboxSettings:
    batch_size: int  # rows claimed per claim
    lease_seconds: int  # how long a claim holds its rows; renewed while a batch goes on
    max_attempts: int  # SMTP tries before a row fails
    max_age_seconds: int  # a row still unsent this long after enqueue fails
    backoff_seconds: tuple[int, ...]  # delays between runs: first retry, second, ... (last repeats)
    quick_retries: int  # tries in-process (tenacity) before rescheduling
    retry_wait_seconds: float  # first in-process wait; doubles, with jitter
    poll_interval: float  # idle wait between polls
    listen: bool  # LISTEN for NOTIFY on PostgreSQL (off behind transaction-pooling proxies)
    rate_limit: float  # messages per second per process; 0 means unlimited


def get() -> OutboxSettings:
    return OutboxSettings(
        batch_size=settings.OUTBOX_BATCH_SIZE,
        lease_seconds=settings.OUTBOX_LEASE_SECONDS,
        max_attempts=settings.OUTBOX_MAX_ATTEMPTS,
        max_age_seconds=settings.OUTBOX_MAX_AGE_SECONDS,
        backoff_seconds=tuple(settings.OUTBOX_BACKOFF_SECONDS),
        quick_retries=settings.OUTBOX_QUICK_RETRIES,
        retry_wait_seconds=settings.OUTBOX_RETRY_WAIT_SECONDS,
        poll_interval=settings.OUTBOX_POLL_INTERVAL,
        listen=settings.OUTBOX_LISTEN,
        rate_limit=settings.OUTBOX_RATE_LIMIT,
    )
