"""Fast dispatch: wake-up on NOTIFY, polling without it, the rate limit, the partial index, the bench script.

Speed itself is measured by `make bench`, never asserted here: these tests check behaviour
with generous bounds that only a broken mechanism can miss.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from outbox import services
from outbox.dispatcher import RateLimiter
from outbox.models import OutboundEmail

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
Status = OutboundEmail.Status


def _database_url() -> str:
    db = django_settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _start_dispatcher(smtp_server, *args: str, **env: str) -> subprocess.Popen:
    environment = {
        **os.environ,
        **smtp_server.env,
        "DATABASE_URL": _database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "dispatch_outbox", *args],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _stop(process: subprocess.Popen) -> str:
    process.terminate()
    _, stderr = process.communicate(timeout=30)
    return stderr.decode()


def _listeners() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE %s",
            [f"LISTEN {services.NOTIFY_CHANNEL}%"],
        )
        return cursor.fetchone()[0]


def _wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _enqueue(to: str = "doctor@example.com") -> OutboundEmail:
    with transaction.atomic():
        return services.enqueue_email(to=[to], subject="Hello", body="Text body", html_body="<p>HTML</p>")


@pytest.mark.postgresql
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_listen__idle_dispatcher_wakes_on_commit_long_before_its_poll_interval(smtp_server):
    """With a 60 s poll interval, only the NOTIFY sent at commit can deliver the row within seconds."""
    process = _start_dispatcher(smtp_server, "--poll-interval", "60")
    try:
        assert _wait_until(lambda: _listeners() == 1, timeout=30), "the dispatcher never LISTENed"
        time.sleep(0.5)  # past its first (empty) claims: it now sleeps on the poll interval
        email = _enqueue()
        started = time.monotonic()
        assert _wait_until(lambda: smtp_server.message_ids() == [email.message_id], timeout=20)
        assert time.monotonic() - started < 20  # far below the 60 s poll interval
    finally:
        _stop(process)
    email.refresh_from_db()
    assert email.status == Status.SENT


@pytest.mark.postgresql
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_listen__off_still_delivers_by_polling(smtp_server):
    process = _start_dispatcher(smtp_server, "--poll-interval", "0.2", OUTBOX_LISTEN="false")
    try:
        email = _enqueue()
        assert _wait_until(lambda: smtp_server.message_ids() == [email.message_id], timeout=30)
        assert _listeners() == 0
    finally:
        _stop(process)
    email.refresh_from_db()
    assert email.status == Status.SENT


def test_rate_limit__caps_messages_per_second_of_a_dispatcher(smtp_server, settings):
    """N sends at R per second need at least (N - 1) / R seconds."""
    settings.OUTBOX_RATE_LIMIT = 20.0
    emails = [_enqueue(to=f"p{i}@example.com") for i in range(11)]
    from django.core.management import call_command

    started = time.monotonic()
    call_command("dispatch_outbox", "--once", "--workers", "1")
    elapsed = time.monotonic() - started

    assert sorted(smtp_server.message_ids()) == sorted(e.message_id for e in emails)
    assert elapsed >= (len(emails) - 1) / 20.0


def test_rate_limit__shared_by_threads_and_slowed_by_a_throttle_reply():
    stop = threading.Event()
    limiter = RateLimiter(50.0, stop)
    grants: list[float] = []
    lock = threading.Lock()

    def take(n: int) -> None:
        for _ in range(n):
            limiter.acquire()
            with lock:
                grants.append(time.monotonic())

    threads = [threading.Thread(target=take, args=(5,)) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(grants) == 20
    assert max(grants) - started >= 19 / 50.0  # 20 grants, 1/50 s apart, whatever the thread

    limiter.throttled(seconds=2.0)
    started = time.monotonic()
    limiter.acquire()
    limiter.acquire()
    assert time.monotonic() - started >= 0.9  # after a 454, at most one a second


def test_rate_limit__zero_means_unlimited():
    limiter = RateLimiter(0.0, threading.Event())
    started = time.monotonic()
    for _ in range(1000):
        limiter.acquire()
    assert limiter.interval == 0.0
    assert time.monotonic() - started < 5  # no waiting at all; the bound only catches a sleep per call


@pytest.mark.postgresql
def test_claim__uses_the_partial_index_on_pending_rows_with_history_in_the_table():
    history = [
        OutboundEmail(
            from_email="noreply@example.com",
            recipients=["a@example.com"],
            subject="s",
            body_text="b",
            message_id=f"<h{i}@example.com>",
            status=Status.SENT,
        )
        for i in range(5000)
    ]
    OutboundEmail.objects.bulk_create(history)
    _enqueue()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outbox_outboundemail")
    with CaptureQueriesContext(connection) as queries:
        claimed = services.claim_due_emails(claim="explain", limit=50, lease_seconds=60)
    assert len(claimed) == 1

    plans = []
    with transaction.atomic(), connection.cursor() as cursor:
        for query in queries.captured_queries:
            sql = query["sql"]
            if "pending" in sql and sql.lstrip().upper().startswith(("SELECT", "UPDATE", "WITH")):
                cursor.execute(f"EXPLAIN {sql}")
                plans.append("\n".join(row[0] for row in cursor.fetchall()))
        transaction.set_rollback(True)
    assert plans, "no claim statement on pending rows was captured"
    assert any("outbox_due_pending_idx" in plan for plan in plans), "\n\n".join(plans)


@pytest.mark.postgresql
@pytest.mark.slow
def test_bench__quick_run_prints_the_table_and_writes_json(tmp_path):
    db = django_settings.DATABASES["default"]
    admin_url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres"
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--db-name", f"{db['NAME']}_bench", "--output", str(output)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": admin_url},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| measure" in result.stdout and "latency p50" in result.stdout
    data = json.loads(output.read_text())
    assert {"raw", "drain", "latency", "enqueue", "claim", "memory", "verdicts"} <= data.keys()
    assert len(data["verdicts"]) == 8


def test_session__reopens_a_kept_session_the_server_dropped_without_a_failed_try(smtp_server, make_email):
    from outbox.transport import Session, build_message

    first, second = make_email(to=["a@example.com"]), make_email(to=["b@example.com"])
    session = Session()
    session.send(build_message(first))
    session.close_if_idle()  # just used: kept open
    assert session.is_open
    session.connection.connection.sock.shutdown(socket.SHUT_RDWR)  # the connection dies while idle

    session.send(build_message(second))

    assert smtp_server.message_ids() == [first.message_id, second.message_id]
    session.idle_seconds = 0.0
    session.close_if_idle()
    assert not session.is_open
