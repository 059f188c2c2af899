"""A real SMTP server for tests and benchmarks, built on aiosmtpd, with injectable faults.

    with SMTPTestServer() as server:          # listens on a free loopback port
        server.mode = "451"                   # answer DATA with 451 (see MODES)
        server.set_mode("drop", times=1)      # ... for the first DATA only, then accept
        ...
        server.messages                       # what was accepted, parsed

    server.pause("accepted")                  # hold the next session at a point (see PAUSE_POINTS)
    server.reached["accepted"].wait(10)       # ... until a client gets there
    server.resume("accepted")

aiosmtpd is a development dependency; production code never imports this module.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

#: Reply given to DATA (or at connect/RCPT) in each fault mode.
MODES = {
    "accept": None,
    "421-connect": "421 4.3.2 Service not available, closing transmission channel",
    "451": "451 4.3.0 Temporary local problem, try again later",
    "452": "452 4.3.1 Insufficient system storage",
    "454": "454 4.7.0 Throttling failure: Maximum sending rate exceeded",
    "550": "550 5.1.1 Mailbox unavailable",
    "553": "553 5.1.3 Mailbox name not allowed",
    "554": "554 5.7.1 Message rejected",
    "partial": "550 5.1.1 No such user here",  # refuses recipients listed in `refuse`
    "drop": None,  # close the connection after DATA, before answering
    "stall": None,  # never answer DATA
}

#: Where `pause()` can hold a session: before answering a RCPT (the message is not sent yet), and
#: after the message is stored but before the 250 reply (sent, but the client does not know yet).
PAUSE_POINTS = ("rcpt", "accepted")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    def part(self, content_type: str) -> str:
        for part in self.message.walk():
            if part.get_content_type() == content_type and not part.is_multipart():
                return str(part.get_content())
        raise KeyError(content_type)


@dataclass
class _Handler:
    server: SMTPTestServer
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_fault(self, applies: bool) -> bool:
        """Whether this command gets the fault: the mode applies here and `times` is not used up."""
        with self.lock:
            if not applies or (
                self.server.fail_times is not None and self.server.faults_given >= self.server.fail_times
            ):
                return False
            self.server.faults_given += 1
            return True

    async def checkpoint(self, point: str) -> None:
        if point in self.server.pause_at:
            self.server.reached[point].set()
            while point in self.server.pause_at:
                await asyncio.sleep(0.01)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        await self.checkpoint("rcpt")
        if self.server.mode == "partial" and address.lower() in self.server.refuse:
            return MODES["partial"] or ""
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.server.data_commands += 1
        mode = self.server.mode
        if not self.take_fault(mode not in ("accept", "partial", "421-connect")):
            mode = "accept"
        if self.server.delay:
            await asyncio.sleep(self.server.delay)
        if mode == "stall":
            await asyncio.sleep(self.server.stall_seconds)
            return "451 4.4.2 Timed out"
        if mode == "drop":
            assert server.transport is not None
            server.transport.close()
            # The message may well have been delivered: a dropped reply is an unknown outcome.
            self._store(envelope)
            return "250 2.0.0 OK (never heard)"
        if mode not in ("accept", "partial", "421-connect"):
            return MODES[mode] or ""
        self._store(envelope)
        await self.checkpoint("accepted")
        return "250 2.0.0 OK queued"

    def _store(self, envelope: Envelope) -> None:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        received = ReceivedMessage(str(envelope.mail_from), list(envelope.rcpt_tos), parsed, raw)  # type: ignore[arg-type]
        with self.lock:
            self.server.messages.append(received)
        if self.server.on_message is not None:
            self.server.on_message(received)


class _FaultySMTP(SMTP):
    async def _handle_client(self) -> None:
        handler = self.event_handler
        with handler.lock:
            handler.server.connections += 1
        if handler.take_fault(handler.server.mode == "421-connect"):
            await self.push(MODES["421-connect"] or "")
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()


class _Controller(Controller):
    def __init__(self, test_server: SMTPTestServer, **kwargs: Any) -> None:
        self.test_server = test_server
        super().__init__(_Handler(test_server), **kwargs)

    def factory(self) -> SMTP:
        return _FaultySMTP(self.handler, **self.SMTP_kwargs)


class SMTPTestServer:
    """An aiosmtpd server on a loopback port, in its own thread."""

    def __init__(
        self,
        *,
        port: int | None = None,
        mode: str = "accept",
        username: str | None = None,
        password: str | None = None,
        tls_context: Any = None,
        require_starttls: bool = False,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.mode = mode
        self.refuse: set[str] = set()
        self.fail_times: int | None = None  # apply the mode to the first N DATA commands only
        self.faults_given = 0
        self.data_commands = 0
        self.connections = 0
        self.pause_at: set[str] = set()
        self.reached = {point: threading.Event() for point in PAUSE_POINTS}
        self.delay = 0.0  # seconds before answering each DATA, like a remote relay
        self.stall_seconds = 60.0
        self.messages: list[ReceivedMessage] = []
        self.on_message: Any = None
        self.username, self.password = username, password
        kwargs: dict[str, Any] = {"hostname": self.host, "port": self.port, "ready_timeout": 10}
        if username is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False, auth_required=True)
        if tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=require_starttls)
        self._controller = _Controller(self, **kwargs)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.username
            and data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False)

    def set_mode(self, mode: str, *, times: int | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
        self.mode, self.fail_times, self.faults_given = mode, times, 0

    def pause(self, point: str) -> None:
        """Hold every session that reaches `point` until `resume(point)`; `reached[point]` tells when one did."""
        if point not in PAUSE_POINTS:
            raise ValueError(f"unknown pause point {point!r}; choose from {', '.join(PAUSE_POINTS)}")
        self.reached[point].clear()
        self.pause_at.add(point)

    def resume(self, point: str) -> None:
        self.pause_at.discard(point)

    def start(self) -> SMTPTestServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SMTPTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def message_ids(self) -> list[str]:
        with self._controller.handler.lock:
            return [m.message_id for m in self.messages]

    @property
    def env(self) -> dict[str, str]:
        """Environment for a dispatcher subprocess that sends to this server."""
        values = {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": self.host,
            "EMAIL_PORT": str(self.port),
            "EMAIL_USE_TLS": "false",
            "EMAIL_USE_SSL": "false",
            "EMAIL_TIMEOUT": "5",
        }
        if self.username is not None:
            values.update(EMAIL_HOST_USER=self.username, EMAIL_HOST_PASSWORD=self.password or "")
        return values
