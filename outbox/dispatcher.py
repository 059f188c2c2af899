"""The dispatcher: claim due rows, send them outside any transaction, record each outcome.

`Dispatcher` runs N `Worker` threads (each with its own database connection and SMTP
session) that share a stop event, a `Waker` (LISTEN/NOTIFY on PostgreSQL, polling
everywhere) and a `RateLimiter`. See DESIGN.md, "The dispatcher's three short steps".
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connection
from django.utils import timezone
from tenacity import (
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential,
    wait_exponential_jitter,
)

from . import conf, services
from .models import DeliveryAttempt, OutboundEmail
from .redaction import mask_addresses
from .transport import DeliveryError, Kind, Session, build_message

logger = logging.getLogger(__name__)

DB_ERRORS = (OperationalError, InterfaceError)


class ConfigurationFault(Exception):
    """Sending cannot work with this configuration (bad credentials, TLS refused)."""

    def __init__(self, error: DeliveryError) -> None:
        super().__init__(str(error))
        self.error = error


class DatabaseUnavailable(Exception):
    """The database stayed unreachable (only raised with `--once`)."""


class Waker:
    """Let idle workers sleep until work may be due: a NOTIFY, the poll interval, or stop.

    Notifications only shorten the wait; polling is what correctness rests on, so a lost
    notification, a restarted database or a pooler that drops LISTEN costs one interval.
    """

    def __init__(self, *, poll_interval: float, stop: threading.Event) -> None:
        self.poll_interval = poll_interval
        self.stop = stop
        self._condition = threading.Condition()
        self.generation = 0
        self._thread: threading.Thread | None = None

    def notify(self) -> None:
        with self._condition:
            self.generation += 1
            self._condition.notify_all()

    def wait(self, seen_generation: int) -> None:
        """Sleep unless something happened since `seen_generation` was read."""
        with self._condition:
            if self.generation == seen_generation and not self.stop.is_set():
                self._condition.wait(self.poll_interval)

    def listen(self) -> None:
        """Start a thread that LISTENs on PostgreSQL and wakes workers on each NOTIFY burst."""
        self._thread = threading.Thread(target=self._listen_forever, name="outbox-listener", daemon=True)
        self._thread.start()

    def _listen_forever(self) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            try:
                self._listen_once()
                backoff = 1.0
            except Exception as exc:  # noqa: BLE001 - the listener only speeds things up; polling goes on
                logger.warning("outbox: LISTEN connection failed (%s); polling until it is back", type(exc).__name__)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _listen_once(self) -> None:
        raw = connection.get_new_connection(connection.get_connection_params())
        try:
            raw.autocommit = True
            with raw.cursor() as cursor:
                cursor.execute(f"LISTEN {services.NOTIFY_CHANNEL}")
            self.notify()  # anything committed while we were not listening
            while not self.stop.is_set():
                readable, _, _ = select.select([raw], [], [], min(self.poll_interval, 1.0))
                if readable:
                    raw.poll()
                    if raw.notifies:
                        raw.notifies.clear()  # a burst of notifications is one wake-up
                        self.notify()
        finally:
            raw.close()


class RateLimiter:
    """Space sends at most `rate` per second across all workers of the process."""

    def __init__(self, rate: float, stop: threading.Event) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.stop = stop
        self._lock = threading.Lock()
        self._next = time.monotonic()
        self._penalty_until = 0.0

    def acquire(self) -> None:
        if not self.interval and time.monotonic() >= self._penalty_until:
            return
        with self._lock:
            now = time.monotonic()
            interval = self.interval
            if now < self._penalty_until:
                interval = max(interval * 2, 1.0)
            slot = max(self._next, now)
            self._next = slot + interval
        if slot > now:
            self.stop.wait(slot - now)

    def throttled(self, seconds: float = 5.0) -> None:
        """The server asked us to slow down: send at most one a second for a while."""
        with self._lock:
            self._penalty_until = time.monotonic() + seconds


@dataclass
class Options:
    batch_size: int
    workers: int
    poll_interval: float
    once: bool


class Dispatcher:
    def __init__(self, options: Options, *, stop: threading.Event | None = None) -> None:
        self.options = options
        self.settings = conf.get()
        self.stop = stop or threading.Event()
        self.waker = Waker(poll_interval=options.poll_interval, stop=self.stop)
        self.rate_limiter = RateLimiter(self.settings.rate_limit, self.stop)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._fault_lock = threading.Lock()
        self.fault: DeliveryError | None = None
        self._fault_backoff = 0.0
        self._fault_until = 0.0
        self.database_unavailable = False
        self.sent = 0

    def run(self) -> None:
        """Run the workers until stopped (or, with `once`, until nothing is due)."""
        timeout = float(getattr(django_settings, "EMAIL_TIMEOUT", None) or 0)
        if timeout and self.settings.lease_seconds < 3 * timeout:
            # The lease is renewed before each try; one stalled try must fit in what is left of it.
            logger.warning(
                "outbox: OUTBOX_LEASE_SECONDS=%s is short for EMAIL_TIMEOUT=%s; set it to at least %s",
                self.settings.lease_seconds,
                timeout,
                int(3 * timeout) + 1,
            )
        if connection.vendor == "postgresql" and self.settings.listen and not self.options.once:
            self.waker.listen()
        if self.options.workers == 1:
            # One sender runs in the calling thread, on the caller's database connection.
            Worker(self, 0).run(own_connection=False)
            self.stop.set()
            return
        workers = [Worker(self, index) for index in range(self.options.workers)]
        threads = [threading.Thread(target=w.run, name=f"outbox-worker-{w.index}") for w in workers]
        for thread in threads:
            thread.start()
        # Join with a timeout so the main thread keeps handling SIGTERM and SIGINT.
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(0.2)
        self.stop.set()

    # Configuration faults are shared: one clear error, and every worker backs off together.
    def report_fault(self, error: DeliveryError) -> None:
        with self._fault_lock:
            if self.fault is None or str(self.fault) != str(error):
                logger.error(
                    "outbox: configuration fault, sending paused: %s. Fix the EMAIL_* settings "
                    "(run `manage.py check_email`); rows stay pending meanwhile.",
                    error,
                )
            self.fault = error
            self._fault_backoff = min(max(self._fault_backoff * 2, 5.0), 300.0)
            self._fault_until = time.monotonic() + self._fault_backoff
        if self.options.once:
            self.stop.set()

    def clear_fault(self) -> None:
        if self.fault is None:
            return
        with self._fault_lock:
            if self.fault is not None:
                logger.warning("outbox: sending works again after the configuration fault")
            self.fault, self._fault_backoff, self._fault_until = None, 0.0, 0.0

    def fault_wait(self) -> float:
        return max(0.0, self._fault_until - time.monotonic())


class _LeaseLost(Exception):
    """Another claim took the row before our next try."""


class _GiveBack(Exception):
    """Stop came before the first try of a message: it goes back to pending untouched."""


class Worker:
    """One sender: its own database connection (per thread) and SMTP session."""

    def __init__(self, dispatcher: Dispatcher, index: int) -> None:
        self.dispatcher = dispatcher
        self.index = index
        self.name = f"{dispatcher.name}:{index}"
        self.stop = dispatcher.stop
        self.settings = dispatcher.settings
        self.session = Session()
        # Short database writes ride out a database restart, for half a lease at most: after that
        # the row comes back to another dispatcher anyway.
        self._db_retrying = Retrying(
            retry=retry_if_exception_type(DB_ERRORS),
            wait=wait_exponential(multiplier=0.2, max=10),
            stop=stop_after_delay(max(self.settings.lease_seconds / 2, 1)),
            before_sleep=_reconnect_before_retry,
            reraise=True,
        )
        self._claim = ""
        self._held: set[int] = set()
        self._renewed = 0.0

    def run(self, *, own_connection: bool = True) -> None:
        db_backoff = error_backoff = 0.0
        try:
            while not self.stop.is_set():
                seen = self.dispatcher.waker.generation
                try:
                    if not connection.in_atomic_block:
                        close_old_connections()  # honour CONN_MAX_AGE and health checks between batches
                    if self.dispatcher.fault is not None and self.dispatcher.fault_wait() > 0:
                        services.fail_overdue()
                        self.stop.wait(self.dispatcher.fault_wait())
                        continue
                    handled = self.run_batch()
                    db_backoff = error_backoff = 0.0
                except DB_ERRORS as exc:
                    db_backoff = min(max(db_backoff * 2, 0.5), 30.0)
                    logger.warning(
                        "outbox: database unavailable (%s); retrying in %.1fs", type(exc).__name__, db_backoff
                    )
                    _drop_db_connection()
                    if self.dispatcher.options.once and db_backoff >= 8:
                        self.dispatcher.database_unavailable = True
                        self.stop.set()
                        break
                    self.stop.wait(db_backoff)
                    continue
                except ConfigurationFault as fault:
                    self.session.abort()
                    self.dispatcher.report_fault(fault.error)
                    with contextlib.suppress(*DB_ERRORS):
                        services.fail_overdue()  # rows held up by the fault still fail at their maximum age
                    continue
                except Exception:
                    # A bug must not kill the dispatcher silently: log it, pause (longer each time), go on.
                    error_backoff = min(max(error_backoff * 2, 1.0), 60.0)
                    logger.exception(
                        "outbox: unexpected error in worker %s; retrying in %.0fs", self.index, error_backoff
                    )
                    self.session.abort()
                    self.stop.wait(error_backoff)
                    continue
                if not handled:
                    # Idle: keep the SMTP session through short gaps (a message committed soon after
                    # goes out without a new connection), close it after a few idle seconds.
                    self.session.close_if_idle()
                    if self.dispatcher.options.once:
                        break
                    self.dispatcher.waker.wait(seen)
        finally:
            self.session.close()
            if own_connection:
                connection.close()

    def run_batch(self) -> int:
        """Claim one batch and deliver it; return how many rows were claimed."""
        claim = f"{self.name}:{uuid.uuid4().hex[:12]}"
        lease = self.settings.lease_seconds
        renewed = time.monotonic()  # read before the claim, so our idea of the expiry is never late
        emails = services.claim_due_emails(claim=claim, limit=self.dispatcher.options.batch_size, lease_seconds=lease)
        if not emails:
            return 0
        self._claim, self._held, self._renewed = claim, {email.pk for email in emails}, renewed
        try:
            for email in emails:
                if self.stop.is_set():
                    break
                if not self._keep_lease(email):
                    continue
                try:
                    self.deliver(email, claim)
                except (*DB_ERRORS, ConfigurationFault):
                    raise
                except Exception as exc:  # noqa: BLE001 - one broken row must not stop the batch
                    self._fail_alone(email, claim, exc)
                self._held.discard(email.pk)
        finally:
            held, self._held = self._held, set()
            if held:
                self._write(lambda: services.release(claim=claim, ids=held))
        return len(emails)

    def _write(self, fn: Callable[[], Any]) -> Any:
        """Run one short database write, reconnecting with backoff while the database is down."""
        return self._db_retrying(fn)

    def _keep_lease(self, email: OutboundEmail) -> bool:
        """Extend the batch's lease once a third of it has gone; return whether `email` is still ours.

        Called before every SMTP try, so a slow relay or long quick-retry waits never let the
        lease run out under a message that is still being sent.
        """
        lease = self.settings.lease_seconds
        if time.monotonic() - self._renewed >= lease / 3:
            renewed = time.monotonic()
            self._held = self._write(
                lambda: services.renew_lease(claim=self._claim, ids=self._held, lease_seconds=lease)
            )
            self._renewed = renewed
        return email.pk in self._held

    def _fail_alone(self, email: OutboundEmail, claim: str, exc: Exception) -> None:
        """Fail one row that hit an unexpected error, with that error, so it cannot come back forever."""
        logger.exception("outbox: unexpected error on email %s; failing it alone, the batch goes on", email.pk)
        self.session.abort()
        error = f"dispatcher error: {type(exc).__name__}: {exc}".replace("\x00", "")
        try:
            self._write(lambda: services.mark_failed(email=email, claim=claim, attempts=[], error=error))
        except Exception:  # the row then comes back when its lease runs out
            logger.exception("outbox: could not record the failure of email %s", email.pk)

    def deliver(self, email: OutboundEmail, claim: str) -> None:
        """Send one claimed email (with quick retries) and record the outcome."""
        attempts: list[DeliveryAttempt] = []
        started = time.monotonic()
        try:
            message = build_message(email)
        except Exception as exc:  # noqa: BLE001 - a row that cannot be built fails alone
            error = DeliveryError(Kind.PERMANENT, f"cannot build message: {type(exc).__name__}: {exc}", tried=False)
            self._record(email, claim, attempts, error, started)
            return

        def attempt() -> dict[str, Any]:
            if not self._keep_lease(email):
                raise _LeaseLost
            self.dispatcher.rate_limiter.acquire()
            if self.stop.is_set() and not attempts:
                raise _GiveBack  # stopped while waiting for a send slot: nothing was tried
            at, try_started = timezone.now(), time.monotonic()
            try:
                result = self.session.send(message)
            except DeliveryError as error:
                if error.tried and error.kind is not Kind.CONFIGURATION:
                    attempts.append(self._attempt(at, try_started, error))
                if error.throttled:
                    self.dispatcher.rate_limiter.throttled()
                raise
            attempts.append(self._attempt(at, try_started, None, refused=result.refused))
            return result.refused

        # Quick tries never take a row past OUTBOX_MAX_ATTEMPTS.
        tries = max(1, min(self.settings.quick_retries, self.settings.max_attempts - email.attempts))
        retrying = Retrying(
            stop=stop_after_attempt(tries) | stop_when_event_set(self.stop),
            wait=wait_exponential_jitter(
                multiplier=self.settings.retry_wait_seconds, max=30, jitter=self.settings.retry_wait_seconds
            ),
            retry=retry_if_exception(lambda exc: isinstance(exc, DeliveryError) and exc.kind is Kind.TRANSIENT),
            sleep=self.stop.wait,  # type: ignore[arg-type]  # its bool result is ignored
            reraise=True,
        )
        try:
            refused = retrying(attempt)
        except _GiveBack:
            self._write(lambda: services.release(claim=claim, ids=[email.pk]))
            return
        except _LeaseLost:
            if attempts:  # the tries made go to the log; the row is left to its new owner
                self._record(email, claim, attempts, DeliveryError(Kind.TRANSIENT, "lease lost"), started)
            else:
                logger.warning("outbox: lease lost on email %s before it was tried; left to its new owner", email.pk)
            return
        except DeliveryError as error:
            if error.kind is Kind.CONFIGURATION:
                if attempts:  # tries made before the fault still count
                    self._record(
                        email, claim, attempts, DeliveryError(Kind.TRANSIENT, error.reply, error.code), started
                    )
                else:
                    self._write(lambda: services.release(claim=claim, ids=[email.pk], error=str(error)))
                raise ConfigurationFault(error) from error
            self._record(email, claim, attempts, error, started)
            return
        self._record(email, claim, attempts, None, started, refused=refused)

    def _attempt(
        self, at: Any, started: float, error: DeliveryError | None, *, refused: dict[str, Any] | None = None
    ) -> DeliveryAttempt:
        if error is None:
            outcome = DeliveryAttempt.Outcome.SENT
        elif error.unknown:
            outcome = DeliveryAttempt.Outcome.UNKNOWN
        else:
            outcome = DeliveryAttempt.Outcome(error.kind.value)
        return DeliveryAttempt(
            attempted_at=at,
            outcome=outcome,
            smtp_code=error.code if error and error.code and error.code > 0 else None,
            reply=str(error)[:2000] if error else "",
            refused_recipients=(error.refused if error else refused) or {},
            duration_ms=int((time.monotonic() - started) * 1000),
            worker=self.name,
        )

    def _record(
        self,
        email: OutboundEmail,
        claim: str,
        attempts: list[DeliveryAttempt],
        error: DeliveryError | None,
        started: float,
        *,
        refused: dict[str, Any] | None = None,
    ) -> None:
        """Write the outcome in one short, fenced transaction, retrying through database faults."""
        previous_attempts = email.attempts
        if error is None:
            recorded = self._write(
                lambda: services.mark_sent(email=email, claim=claim, attempts=attempts, refused=refused or {})
            )
            state = "sent" if recorded else ""
            self.dispatcher.clear_fault()
            self.dispatcher.sent += 1
        elif error.kind is Kind.PERMANENT:
            recorded = self._write(
                lambda: services.mark_failed(email=email, claim=claim, attempts=attempts, error=str(error))
            )
            state = "failed" if recorded else ""
        else:
            state = self._write(
                lambda: services.mark_retry(email=email, claim=claim, attempts=attempts, error=str(error))
            )
        last = attempts[-1] if attempts else None
        tries = previous_attempts + len(attempts)
        logger.info(
            "outbox: email %s %s message_id=%s to=%s attempt=%s code=%s duration_ms=%s",
            email.pk,
            state or "lease-lost",
            email.message_id,
            mask_addresses(email.recipients if isinstance(email.recipients, list) else []),
            tries,
            last.smtp_code if last else None,
            int((time.monotonic() - started) * 1000),
        )


def _drop_db_connection() -> None:
    with contextlib.suppress(DatabaseError):
        connection.close()


def _reconnect_before_retry(state: Any) -> None:
    logger.warning("outbox: database write failed (%s); reconnecting", type(state.outcome.exception()).__name__)
    _drop_db_connection()
