"""A lean loopback SMTP sink for the benchmark: accepts everything, remembers when.

Unlike `outbox.testing.SMTPTestServer` it does not parse messages, so the sink costs as
little as possible and the raw limit is the limit of SMTP over loopback with aiosmtpd.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from outbox.testing import free_port

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


class _Handler:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.sink.delay:
            await asyncio.sleep(self.sink.delay)
        accepted = time.perf_counter()
        content = envelope.original_content or b""
        match = _MESSAGE_ID.search(content, 0, 8192)
        with self.sink.lock:
            self.sink.accepted.append((accepted, match.group(1).decode() if match else ""))
        return "250 2.0.0 OK queued"


class Sink:
    """aiosmtpd on a free loopback port, in a thread; `delay` seconds before each reply to DATA."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.delay = delay
        self.lock = threading.Lock()
        self.accepted: list[tuple[float, str]] = []
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port, ready_timeout=10)

    def __enter__(self) -> Sink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    def reset(self, *, delay: float | None = None) -> None:
        with self.lock:
            self.accepted = []
        if delay is not None:
            self.delay = delay

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)

    def wait_for(self, count: int, *, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.count() < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def rate(self) -> float:
        """Messages per second between the first and the last acceptance."""
        with self.lock:
            times = [t for t, _ in self.accepted]
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / (max(times) - min(times))

    @property
    def env(self) -> dict[str, Any]:
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": self.host,
            "EMAIL_PORT": str(self.port),
            "EMAIL_USE_TLS": "false",
            "EMAIL_USE_SSL": "false",
            "EMAIL_TIMEOUT": "10",
        }
