"""Run `manage.py dispatch_outbox` as a real process against the test database and SMTP server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import connection, transaction

from outbox.services import enqueue_email
from outbox.testing import SMTPTestServer

ROOT = Path(__file__).resolve().parents[2]


def database_url(application_name: str) -> str:
    """The test database (pytest-django's `test_<name>`), tagged so its sessions can be found."""
    db = settings.DATABASES["default"]
    user = quote(db.get("USER") or "")
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}?application_name={application_name}"


class Dispatcher:
    """One dispatcher process; its output goes to a file so a busy process never blocks on a pipe."""

    def __init__(
        self,
        server: SMTPTestServer,
        log_dir: Path,
        *args: str,
        name: str = "outbox-test-dispatcher",
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
        environment = {
            **os.environ,
            **server.env,
            "DATABASE_URL": database_url(name),
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "PYTHONUNBUFFERED": "1",
            "OUTBOX_POLL_INTERVAL": "0.2",
            "OUTBOX_RETRY_WAIT_SECONDS": "0.05",
            **(env or {}),
        }
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "dispatch_outbox", *args],
            cwd=ROOT,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is released."""
        self.process.kill()
        self.wait(10)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.kill()
        self._log.close()


def wait_until(condition: Callable[[], Any], timeout: float = 30, message: str = "condition") -> Any:
    """Poll `condition` until it is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(0.02)


def enqueue_many(count: int, *, prefix: str = "p") -> list[str]:
    """Queue `count` emails the way the application does (one transaction); return their Message-IDs."""
    with transaction.atomic():
        return [
            enqueue_email(to=[f"{prefix}{i}@example.com"], subject="Hello", body=f"Body {i}").message_id
            for i in range(count)
        ]


def backends(application_name: str) -> list[tuple[int, str | None]]:
    """(pid, wait_event_type) of each session that dispatchers named `application_name` hold open."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, wait_event_type FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s AND pid <> pg_backend_pid()",
            [application_name],
        )
        return list(cursor.fetchall())


def terminate_backends(application_name: str) -> list[str]:
    """pg_terminate_backend on every session a dispatcher opened; return the last query of each one cut."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s AND pid <> pg_backend_pid()",
            [application_name],
        )
        sessions = cursor.fetchall()
        cut = []
        for pid, query in sessions:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            if cursor.fetchone()[0]:
                cut.append(query)
        return cut
