"""`make bench`: measure the outbox dispatcher against a loopback SMTP sink, on PostgreSQL.

    python -m bench.run                 # the full run (a few minutes), prints a table, writes JSON
    python -m bench.run --quick         # tiny sizes: checks the script works (the smoke test uses it)

It creates its own database (`--db-name`, dropped at the end) on the server that
DATABASE_URL points at (default postgres://postgres@127.0.0.1:5432/postgres), starts an
aiosmtpd sink in a thread of this process, and runs `manage.py dispatch_outbox` as a
subprocess, the way it runs in production. Sections:

1. raw limit: pre-built messages through K persistent smtplib connections (a subprocess), no database;
2. drain: N invitations enqueued through `invitation_create`, then `dispatch_outbox --once --workers K`;
3. latency: an idle dispatcher; invitations committed one by one; commit to accepted by the sink;
4. enqueue cost: one invitation with its email vs one bare invitation insert, each its own transaction;
5. claim cost: claiming a batch with 0 and with 1,000,000 finished rows in the table;
6. memory: the dispatcher's peak RSS draining a small and a ten times larger backlog.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import smtplib
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
SECTIONS = "raw,drain,latency,enqueue,claim,memory"
DISPATCHER_LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")


@dataclass
class Scale:
    raw_messages: int  # per raw measurement at 0 ms; at a delay, enough for about two seconds
    raw_ks: tuple[int, ...]
    drain_n: int
    drain_ks: tuple[int, ...]
    drain_delayed_ks: tuple[int, ...]
    delay_ms: float
    latency_samples: int
    enqueue_samples: int
    claim_samples: int
    finished_rows: int
    memory_rows: tuple[int, int]
    memory_workers: int


FULL = Scale(
    raw_messages=5000,
    raw_ks=(1, 4, 10),
    drain_n=5000,
    drain_ks=(1, 4, 10),
    drain_delayed_ks=(4, 10),
    delay_ms=20,
    latency_samples=200,
    enqueue_samples=300,
    claim_samples=100,
    finished_rows=1_000_000,
    memory_rows=(2000, 20000),
    memory_workers=4,
)
QUICK = Scale(
    raw_messages=100,
    raw_ks=(1, 2),
    drain_n=60,
    drain_ks=(2,),
    drain_delayed_ks=(2,),
    delay_ms=20,
    latency_samples=5,
    enqueue_samples=10,
    claim_samples=3,
    finished_rows=2000,
    memory_rows=(50, 200),
    memory_workers=2,
)


# --------------------------------------------------------------------------- raw client (subprocess)


def raw_client(argv: list[str]) -> None:
    """Push pre-built messages through K persistent connections; print the elapsed seconds as JSON."""
    parser = argparse.ArgumentParser(prog="bench.run raw-client")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--message-file", required=True)
    args = parser.parse_args(argv)
    template = Path(args.message_file).read_bytes()
    messages = [template.replace(b"@@ID@@", f"raw-{i}".encode()) for i in range(args.count)]
    shares = [messages[k :: args.connections] for k in range(args.connections)]
    connections = [smtplib.SMTP("127.0.0.1", args.port, timeout=30) for _ in range(args.connections)]
    for smtp in connections:
        smtp.ehlo()
    barrier = threading.Barrier(args.connections + 1)

    def push(smtp: smtplib.SMTP, share: list[bytes]) -> None:
        barrier.wait()
        for raw in share:
            smtp.sendmail("noreply@bench.example", ["provider@bench.example"], raw)

    threads = [threading.Thread(target=push, args=(c, s)) for c, s in zip(connections, shares, strict=True)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for smtp in connections:
        smtp.quit()
    print(json.dumps({"elapsed": elapsed, "count": args.count}))


# --------------------------------------------------------------------------- database and Django set-up


def database_urls(admin_url: str, name: str) -> tuple[str, str]:
    parts = urlsplit(admin_url)
    return admin_url, urlunsplit(parts._replace(path=f"/{name}"))


def recreate_database(admin_url: str, name: str, *, drop_only: bool = False) -> None:
    import psycopg2

    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if not drop_only:
                cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def child_env(database_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        # Persistent connections with health checks, as config/settings/production.py sets them.
        "DATABASE_URL": f"{database_url}?conn_max_age=60&conn_health_checks=true",
        "DJANGO_SETTINGS_MODULE": "config.settings.development",
        "DEBUG": "false",
        "PYTHONUNBUFFERED": "1",
        # The dispatcher logs as in production (a line per message), whatever this process uses.
        "LOG_LEVEL": DISPATCHER_LOG_LEVEL,
    }
    env.update(extra or {})
    return env


def setup_django(database_url: str) -> None:
    os.environ.update(DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="config.settings.development", DEBUG="false")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def sql(statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def empty_tables() -> None:
    sql("TRUNCATE outbox_deliveryattempt, outbox_outboundemail, accounts_providerinvitation RESTART IDENTITY CASCADE")


def vacuum_analyze() -> None:
    sql("VACUUM ANALYZE outbox_outboundemail")
    sql("VACUUM ANALYZE outbox_deliveryattempt")


class Invitations:
    """Invitations created through the real service, with unique addresses."""

    def __init__(self) -> None:
        from accounts.models import Role, User

        self.role = Role.objects.get(name="Provider")
        self.admin, _ = User.objects.get_or_create(
            email="bench-admin@bench.example", defaults={"is_staff": True, "is_superuser": True}
        )
        self.serial = 0

    def create(self) -> Any:
        from accounts.services import invitation_create

        self.serial += 1
        return invitation_create(email=f"provider{self.serial}@bench.example", role=self.role, invited_by=self.admin)

    def bare_insert(self) -> Any:
        """One invitation row in its own transaction, with no email: the baseline for the enqueue cost."""
        from django.db import transaction

        with transaction.atomic():
            return self._insert("bare")

    def insert_with_email(self) -> Any:
        """The same row and, in the same transaction, its email: rendered, enqueued, NOTIFY sent."""
        from django.db import transaction
        from django.template.loader import render_to_string

        from outbox.services import enqueue_email

        with transaction.atomic():
            invitation = self._insert("mailed")
            context = {
                "accept_url": f"https://example.org/invitations/accept/{secrets.token_urlsafe(32)}/",
                "expiry_days": 7,
                "role": self.role.name,
            }
            enqueue_email(
                to=[invitation.email],
                subject=render_to_string("accounts/email/invitation_subject.txt", context).strip(),
                body=render_to_string("accounts/email/invitation.txt", context),
                html_body=render_to_string("accounts/email/invitation.html", context),
                dedupe_key=f"provider-invitation:{invitation.pk}:1",
                related_object=invitation,
            )
            return invitation

    def _insert(self, prefix: str) -> Any:
        from datetime import timedelta

        from django.utils import timezone

        from accounts.models import ProviderInvitation

        self.serial += 1
        return ProviderInvitation.objects.create(
            email=f"{prefix}{self.serial}@bench.example",
            role=self.role,
            invited_by=self.admin,
            token_digest=secrets.token_hex(32),
            expires_at=timezone.now() + timedelta(days=7),
        )


def insert_copies(template_id: int, count: int, *, status: str) -> None:
    """Bulk-insert `count` rows copied from one real outbound email, each with its own Message-ID."""
    finished = status != "pending"
    sql(
        """
        INSERT INTO outbox_outboundemail (
            from_email, recipients, subject, body_text, body_html, headers, message_id, dedupe_key,
            related_content_type_id, related_object_id, status, attempts, reschedules, next_attempt_at,
            claimed_by, lease_expires_at, last_error, refused_recipients, created_at, queued_at, updated_at, sent_at
        )
        SELECT t.from_email, t.recipients, t.subject, t.body_text, t.body_html, t.headers,
               '<bulk-' || %s || '-' || g || '@bench.example>', NULL,
               t.related_content_type_id, t.related_object_id, %s, %s, 0,
               now() - (g || ' seconds')::interval, '', NULL, '', '{}', now() - (g || ' seconds')::interval,
               now() - (g || ' seconds')::interval, now(), CASE WHEN %s THEN now() ELSE NULL END
        FROM outbox_outboundemail t, generate_series(1, %s) AS g
        WHERE t.id = %s
        """,
        [secrets.token_hex(4), status, 1 if finished else 0, finished, count, template_id],
    )


# --------------------------------------------------------------------------- the dispatcher subprocess


def dispatcher_command(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), "dispatch_outbox", *args]


def run_dispatcher_once(env: dict[str, str], workers: int, log: Path) -> dict[str, Any]:
    """Run `dispatch_outbox --once --workers K` to the end; return wall time, exit status, peak RSS."""
    started = time.perf_counter()
    with log.open("ab") as out:
        process = subprocess.Popen(
            dispatcher_command("--once", "--workers", str(workers)), env=env, stdout=out, stderr=out, cwd=ROOT
        )
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall_s": time.perf_counter() - started,
        "exit": process.returncode,
        "max_rss_mb": usage.ru_maxrss / 1024,  # Linux reports kilobytes
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


# --------------------------------------------------------------------------- the sections


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def write_message_template(path: Path) -> int:
    """A realistic invitation message (the real templates) with a placeholder Message-ID; return its size."""
    from django.core.mail import EmailMultiAlternatives
    from django.template.loader import render_to_string

    context = {
        "accept_url": f"https://example.org/invitations/accept/{'x' * 43}/",
        "expiry_days": 7,
        "role": "Provider",
    }
    message = EmailMultiAlternatives(
        subject=render_to_string("accounts/email/invitation_subject.txt", context).strip(),
        body=render_to_string("accounts/email/invitation.txt", context),
        from_email="noreply@bench.example",
        to=["provider@bench.example"],
        headers={"Message-ID": "<@@ID@@@bench.example>"},
    )
    message.attach_alternative(render_to_string("accounts/email/invitation.html", context), "text/html")
    raw = message.message().as_bytes(linesep="\r\n")
    path.write_bytes(raw)
    return len(raw)


def section_raw(sink: Any, scale: Scale, delay_ms: float, message_file: Path) -> dict[int, float]:
    rates: dict[int, float] = {}
    for k in scale.raw_ks:
        count = scale.raw_messages if not delay_ms else min(scale.raw_messages, max(k * 100, 50))
        sink.reset(delay=delay_ms / 1000)
        out = subprocess.run(
            [
                *(sys.executable, "-m", "bench.run", "raw-client", "--port", str(sink.port)),
                *("--connections", str(k), "--count", str(count), "--message-file", str(message_file)),
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        json.loads(out.stdout)
        if not sink.wait_for(count, timeout=30):
            raise RuntimeError(f"raw K={k}: the sink got {sink.count()} of {count}")
        rates[k] = sink.rate()
        log(f"raw     delay={delay_ms:>2.0f}ms K={k:<2} {rates[k]:8.0f} msg/s ({count} messages)")
    return rates


def section_drain(
    sink: Any, scale: Scale, delay_ms: float, ks: tuple[int, ...], invitations: Invitations, env: dict[str, str]
) -> dict[int, dict[str, Any]]:
    from outbox.models import OutboundEmail

    results: dict[int, dict[str, Any]] = {}
    for k in ks:
        enqueue_s = 0.0
        if OutboundEmail.objects.count() != scale.drain_n:
            empty_tables()
            started = time.perf_counter()
            for _ in range(scale.drain_n):
                invitations.create()
            enqueue_s = time.perf_counter() - started
        else:
            # The same invitations' emails again: put them back as they were when enqueued (much
            # faster than enqueueing anew; the dispatcher does the same work, receivers included).
            sql("TRUNCATE outbox_deliveryattempt")
            sql(
                "UPDATE outbox_outboundemail SET status = 'pending', attempts = 0, sent_at = NULL, "
                "next_attempt_at = now(), claimed_by = '', lease_expires_at = NULL, updated_at = now()"
            )
        vacuum_analyze()
        sink.reset(delay=delay_ms / 1000)
        run = run_dispatcher_once(env, k, RESULTS / "dispatcher.log")
        sent = OutboundEmail.objects.filter(status=OutboundEmail.Status.SENT).count()
        if run["exit"] != 0 or sent != scale.drain_n or sink.count() != scale.drain_n:
            raise RuntimeError(f"drain K={k}: exit {run['exit']}, {sent} sent, sink got {sink.count()}")
        results[k] = {
            **run,
            "msgs_per_s": sink.rate(),
            "enqueue_per_s": scale.drain_n / enqueue_s if enqueue_s else None,
            "cpu_ms_per_msg": run["cpu_s"] * 1000 / scale.drain_n,
        }
        log(
            f"drain   delay={delay_ms:>2.0f}ms K={k:<2} {results[k]['msgs_per_s']:8.0f} msg/s "
            f"(process {run['wall_s']:.1f}s, {results[k]['cpu_ms_per_msg']:.2f} ms CPU/msg"
            + (f"; enqueued at {results[k]['enqueue_per_s']:.0f}/s)" if enqueue_s else "; rows reset)")
        )
    return results


def section_latency(sink: Any, scale: Scale, invitations: Invitations, env: dict[str, str]) -> dict[str, Any]:
    from outbox.models import OutboundEmail

    empty_tables()
    sink.reset(delay=0)
    with (RESULTS / "dispatcher.log").open("ab") as out:
        process = subprocess.Popen(dispatcher_command(), env=env, stdout=out, stderr=out, cwd=ROOT)
    try:
        # Warm up: the dispatcher is up and listening once a first invitation goes through.
        invitations.create()
        if not sink.wait_for(1, timeout=30):
            raise RuntimeError("latency: the dispatcher did not deliver the warm-up invitation")
        time.sleep(1.5)  # let it go idle (waiting on the poll interval or a NOTIFY)
        sink.reset()
        committed: dict[str, float] = {}
        rng = random.Random(4)
        for _ in range(scale.latency_samples):
            time.sleep(rng.uniform(0.03, 0.12))
            invitation = invitations.create()  # returns once the transaction has committed
            committed[str(invitation.pk)] = time.perf_counter()
        if not sink.wait_for(scale.latency_samples, timeout=30):
            raise RuntimeError(f"latency: the sink got {sink.count()} of {scale.latency_samples}")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    message_ids = dict(
        OutboundEmail.objects.filter(related_object_id__in=list(committed)).values_list(
            "message_id", "related_object_id"
        )
    )
    with sink.lock:
        accepted = {mid: t for t, mid in sink.accepted}
    latencies = [(accepted[mid] - committed[pk]) * 1000 for mid, pk in message_ids.items()]
    result = {
        "samples": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "max_ms": max(latencies),
    }
    log(f"latency p50={result['p50_ms']:.1f}ms p95={result['p95_ms']:.1f}ms max={result['max_ms']:.1f}ms")
    return result


def section_enqueue(scale: Scale, invitations: Invitations) -> dict[str, Any]:
    empty_tables()
    timings: dict[str, list[float]] = {"with_email": [], "bare_insert": [], "service": []}
    steps = {
        "with_email": invitations.insert_with_email,
        "bare_insert": invitations.bare_insert,
        "service": invitations.create,
    }
    for _ in range(10):  # warm caches (templates, content types)
        for step in steps.values():
            step()
    for _ in range(scale.enqueue_samples):  # interleaved, so drift hits all alike
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            timings[name].append(time.perf_counter() - started)
    result = {f"{name}_ms": statistics.median(values) * 1000 for name, values in timings.items()}
    result["ratio"] = result["with_email_ms"] / result["bare_insert_ms"]
    log(
        f"enqueue insert+email {result['with_email_ms']:.2f}ms, bare insert {result['bare_insert_ms']:.2f}ms, "
        f"ratio {result['ratio']:.2f}; invitation_create (checks, audit, email) {result['service_ms']:.2f}ms"
    )
    return result


def section_claim(scale: Scale, invitations: Invitations) -> dict[str, Any]:
    from outbox import services

    empty_tables()
    invitations.create()
    template_id = sql("SELECT id FROM outbox_outboundemail")[0][0]
    sql("UPDATE outbox_outboundemail SET status = 'cancelled'")
    result: dict[str, Any] = {}
    batch = 50
    for finished in (0, scale.finished_rows):
        if finished:
            started = time.perf_counter()
            insert_copies(template_id, finished, status="sent")
            log(f"claim   inserted {finished} finished rows in {time.perf_counter() - started:.1f}s")
        vacuum_analyze()
        sql("CHECKPOINT")  # so that writing out the bulk insert does not overlap the timings
        timings = []
        for rep in range(scale.claim_samples + 3):
            insert_copies(template_id, batch, status="pending")
            started = time.perf_counter()
            claimed = services.claim_due_emails(claim=f"bench-{rep}", limit=batch, lease_seconds=300)
            elapsed = time.perf_counter() - started
            if len(claimed) != batch:
                raise RuntimeError(f"claim: got {len(claimed)} of {batch}")
            sql("DELETE FROM outbox_outboundemail WHERE status = 'sending'")
            if rep >= 3:
                timings.append(elapsed)
        result[f"{finished}_ms"] = statistics.median(timings) * 1000
        result[f"{finished}_plans"] = claim_plans(template_id, batch)
        log(f"claim   {finished:>8} finished rows: {result[f'{finished}_ms']:.2f}ms per batch of {batch}")
    result["finished_rows"] = scale.finished_rows
    result["ratio"] = result[f"{scale.finished_rows}_ms"] / result["0_ms"]
    return result


def claim_plans(template_id: int, batch: int) -> list[str]:
    """EXPLAIN ANALYZE each statement of one claim (rolled back), to show which indexes it uses."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from outbox import services

    insert_copies(template_id, batch, status="pending")
    with CaptureQueriesContext(connection) as queries:
        services.claim_due_emails(claim="bench-explain", limit=batch, lease_seconds=300)
    sql("DELETE FROM outbox_outboundemail WHERE status = 'sending'")
    insert_copies(template_id, batch, status="pending")
    plans = []
    with transaction.atomic():
        for query in queries.captured_queries:
            if query["sql"].lstrip().upper().startswith(("SELECT", "UPDATE", "WITH")):
                rows = sql(f"EXPLAIN (ANALYZE, COSTS OFF) {query['sql']}")
                plans.append("\n".join(row[0] for row in rows))
        transaction.set_rollback(True)
    sql("DELETE FROM outbox_outboundemail WHERE status IN ('pending', 'sending')")
    return plans


def section_memory(sink: Any, scale: Scale, invitations: Invitations, env: dict[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {"workers": scale.memory_workers}
    for rows in scale.memory_rows:
        empty_tables()
        invitations.create()
        template_id = sql("SELECT id FROM outbox_outboundemail")[0][0]
        insert_copies(template_id, rows - 1, status="pending")
        vacuum_analyze()
        sink.reset(delay=0)
        run = run_dispatcher_once(env, scale.memory_workers, RESULTS / "dispatcher.log")
        if run["exit"] != 0 or sink.count() != rows:
            raise RuntimeError(f"memory: exit {run['exit']}, sink got {sink.count()} of {rows}")
        result[f"{rows}_mb"] = run["max_rss_mb"]
        log(f"memory  {rows:>6} rows: peak RSS {run['max_rss_mb']:.1f} MB")
    small, large = scale.memory_rows
    result["ratio"] = result[f"{large}_mb"] / result[f"{small}_mb"]
    return result


def profile_drain(sink: Any, invitations: Invitations, env: dict[str, str], rows: int) -> None:
    """Drain `rows` invitations with one worker under cProfile and print where the time goes."""
    import pstats

    empty_tables()
    for _ in range(rows):
        invitations.create()
    vacuum_analyze()
    sink.reset(delay=0)
    output = RESULTS / "dispatcher.prof"
    command = dispatcher_command("--once", "--workers", "1")
    command[1:1] = ["-m", "cProfile", "-o", str(output)]
    with (RESULTS / "dispatcher.log").open("ab") as out:
        subprocess.run(command, env=env, stdout=out, stderr=out, cwd=ROOT, check=True)
    log(f"profile: {sink.count()} sent at {sink.rate():.0f} msg/s under cProfile; {output}")
    stats = pstats.Stats(str(output), stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


# --------------------------------------------------------------------------- report


def log(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def table(results: dict[str, Any], scale: Scale) -> tuple[str, list[dict[str, Any]]]:
    raw0, raw_d = results["raw"]["0"], results["raw"][str(scale.delay_ms)]
    drain0, drain_d = results["drain"]["0"], results["drain"][str(scale.delay_ms)]
    rows: list[tuple[str, str, str, str]] = []
    for k in scale.raw_ks:
        d = drain0.get(k)
        rows.append(
            (
                f"raw / drain, 0 ms, K={k}",
                f"{raw0[k]:.0f} / {d['msgs_per_s']:.0f} msg/s, CPU {d['cpu_ms_per_msg']:.1f} ms/msg"
                if d
                else f"{raw0[k]:.0f} / - msg/s",
                f"{d['msgs_per_s'] / raw0[k]:.2f}" if d else "",
                "",
            )
        )
    for k in scale.raw_ks:
        d = drain_d.get(k)
        rows.append(
            (
                f"raw / drain, {scale.delay_ms:.0f} ms, K={k}",
                f"{raw_d[k]:.0f} / {d['msgs_per_s']:.0f} msg/s, CPU {d['cpu_ms_per_msg']:.1f} ms/msg"
                if d
                else f"{raw_d[k]:.0f} / - msg/s",
                f"{d['msgs_per_s'] / raw_d[k]:.2f}" if d else "",
                "",
            )
        )
    rows.append(
        ("invitation_create (service: checks, audit, email)", f"{results['enqueue']['service_ms']:.2f} ms", "", "")
    )
    best_raw, best_drain = max(raw0.values()), max(d["msgs_per_s"] for d in drain0.values())
    k_top = max(scale.drain_delayed_ks)
    checks = [
        ("best drain / best raw, 0 ms", f"{best_drain:.0f} / {best_raw:.0f}", best_drain / best_raw, ">=", 0.75),
        (
            f"drain / raw, {scale.delay_ms:.0f} ms, K={k_top}",
            f"{drain_d[k_top]['msgs_per_s']:.0f} / {raw_d[k_top]:.0f}",
            drain_d[k_top]["msgs_per_s"] / raw_d[k_top],
            ">=",
            0.8,
        ),
        ("latency p50 (ms)", "", results["latency"]["p50_ms"], "<=", 15.0),
        ("latency p95 (ms)", f"max {results['latency']['max_ms']:.1f} ms", results["latency"]["p95_ms"], "<=", 50.0),
        (
            "enqueue: insert + email / insert alone",
            f"{results['enqueue']['with_email_ms']:.2f} / {results['enqueue']['bare_insert_ms']:.2f} ms",
            results["enqueue"]["ratio"],
            "<=",
            2.0,
        ),
        (
            f"claim 50: {scale.finished_rows:,} / 0 finished rows",
            f"{results['claim'][f'{scale.finished_rows}_ms']:.2f} / {results['claim']['0_ms']:.2f} ms",
            results["claim"]["ratio"],
            "<=",
            1.5,
        ),
    ]
    small, large = scale.memory_rows
    memory = results["memory"]
    checks += [
        (
            f"peak RSS: {large:,} / {small:,} rows",
            f"{memory[f'{large}_mb']:.1f} / {memory[f'{small}_mb']:.1f} MB",
            memory["ratio"],
            "<=",
            1.15,
        ),
        ("peak RSS (MB)", "", max(memory[f"{small}_mb"], memory[f"{large}_mb"]), "<", 150.0),
    ]
    verdicts = []
    for name, detail, value, op, target in checks:
        ok = {">=": value >= target, "<=": value <= target, "<": value < target}[op]
        verdicts.append({"check": name, "value": round(value, 3), "target": f"{op} {target}", "met": ok})
        rows.append((name, detail, f"{value:.2f}", f"{op} {target:g} {'met' if ok else 'NOT MET'}"))
    widths = [max(len(r[i]) for r in [("measure", "figures", "value", "target"), *rows]) for i in range(4)]
    lines = [
        "| "
        + " | ".join(h.ljust(w) for h, w in zip(("measure", "figures", "value", "target"), widths, strict=True))
        + " |",
        "| " + " | ".join("-" * w for w in widths) + " |",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join(lines), verdicts


# --------------------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    if argv[:1] == ["raw-client"]:
        raw_client(argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script works")
    parser.add_argument("--db-name", default="bench_outbox", help="database to create and drop (default bench_outbox)")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database at the end")
    parser.add_argument("--sections", default=SECTIONS, help=f"comma list, default {SECTIONS} (table needs all)")
    parser.add_argument("--drain-n", type=int, help="override N for the drain")
    parser.add_argument("--profile", type=int, metavar="N", help="only drain N invitations under cProfile")
    parser.add_argument("--output", type=Path, default=None, help="JSON file (default bench/results/bench-<time>.json)")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    if args.drain_n:
        scale = replace(scale, drain_n=args.drain_n)
    sections = set(args.sections.split(","))
    admin_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    if not admin_url.startswith(("postgres://", "postgresql://")):
        parser.error("the benchmark needs PostgreSQL: set DATABASE_URL=postgres://...")
    admin_url, bench_url = database_urls(admin_url, args.db_name)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dispatcher.log").unlink(missing_ok=True)
    os.chdir(ROOT)

    started = time.perf_counter()
    load_before = os.getloadavg()
    recreate_database(admin_url, args.db_name)
    try:
        setup_django(bench_url)
        from bench.sink import Sink

        results: dict[str, Any] = {"scale": asdict(scale), "raw": {}, "drain": {}}
        invitations = Invitations()
        message_file = RESULTS / "message.eml"
        results["message_bytes"] = write_message_template(message_file)
        with Sink() as sink:
            env = child_env(bench_url, sink.env)
            if args.profile:
                profile_drain(sink, invitations, env, args.profile)
                return 0
            if "raw" in sections:
                for delay in (0, scale.delay_ms):
                    results["raw"][str(delay)] = section_raw(sink, scale, delay, message_file)
            if "drain" in sections:
                results["drain"]["0"] = section_drain(sink, scale, 0, scale.drain_ks, invitations, env)
                results["drain"][str(scale.delay_ms)] = section_drain(
                    sink, scale, scale.delay_ms, scale.drain_delayed_ks, invitations, env
                )
            if "latency" in sections:
                results["latency"] = section_latency(sink, scale, invitations, env)
            if "enqueue" in sections:
                results["enqueue"] = section_enqueue(scale, invitations)
            if "claim" in sections:
                results["claim"] = section_claim(scale, invitations)
            if "memory" in sections:
                results["memory"] = section_memory(sink, scale, invitations, env)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            recreate_database(admin_url, args.db_name, drop_only=True)

    if sections != set(SECTIONS.split(",")):
        print(json.dumps(results, indent=2, default=str))
        return 0
    text, verdicts = table(results, scale)
    results.update(
        verdicts=verdicts,
        table=text,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_s=round(time.perf_counter() - started, 1),
        machine={
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
    )
    output = args.output or RESULTS / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, default=str))
    print(text)
    print(
        f"\n{'quick' if args.quick else 'full'} run in {results['duration_s']:.0f}s on {os.cpu_count()} CPUs "
        f"(load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after); JSON: {output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
