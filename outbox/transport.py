"""The one module that talks to the email backend and translates what it raises.

Everything the backend can raise becomes a `DeliveryError` with a `Kind`:

- transient: 4xx replies, refused/reset/dropped connections, timeouts: try again later;
- permanent: 5xx replies for the recipients, the sender or the data, and messages that
  cannot be built at all: fail the row now;
- configuration: authentication or TLS failures: every message would fail the same way,
  so the dispatcher stops sending as a whole instead of burning each row's attempts.
"""

from __future__ import annotations

import enum
import smtplib
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend
from django.core.mail.message import sanitize_address
from django.utils.module_loading import import_string

from .models import OutboundEmail

DJANGO_SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


class Kind(enum.Enum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    CONFIGURATION = "configuration"


@dataclass
class DeliveryError(Exception):
    """A failed try, classified; `unknown` means the server may have accepted the message."""

    kind: Kind
    reply: str
    code: int | None = None
    unknown: bool = False
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    tried: bool = True  # False when nothing reached the server (the message could not be built)

    def __post_init__(self) -> None:
        # PostgreSQL text and jsonb cannot hold NUL: a hostile reply must not make the outcome unrecordable.
        self.reply = self.reply.replace("\x00", "")
        self.refused = {
            addr.replace("\x00", ""): (code, msg.replace("\x00", "")) for addr, (code, msg) in self.refused.items()
        }

    def __str__(self) -> str:
        return f"{self.code} {self.reply}" if self.code else self.reply

    @property
    def throttled(self) -> bool:
        """Whether the server asked us to slow down (Amazon SES answers 454 over quota)."""
        return self.code == 454


class MessageBuildError(Exception):
    """The message could not be turned into bytes and addresses; nothing was sent."""


def _decode(reply: Any) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return str(reply)


def _kind_for_code(code: int) -> Kind:
    return Kind.TRANSIENT if 400 <= code < 500 else Kind.PERMANENT


def classify(exc: BaseException, *, data_started: bool = False) -> DeliveryError:
    """Map an exception raised while sending to a `DeliveryError`."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, MessageBuildError):
        cause = exc.__cause__ or exc
        return DeliveryError(Kind.PERMANENT, f"cannot build message: {type(cause).__name__}: {cause}", tried=False)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return DeliveryError(Kind.CONFIGURATION, f"authentication failed: {_decode(exc.smtp_error)}", exc.smtp_code)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryError(Kind.CONFIGURATION, f"server does not support a required extension: {exc}")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return DeliveryError(Kind.CONFIGURATION, f"TLS failed: {exc}")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = {addr: (code, _decode(msg)) for addr, (code, msg) in exc.recipients.items()}
        codes = [code for code, _ in refused.values()]
        kind = Kind.TRANSIENT if any(400 <= c < 500 for c in codes) else Kind.PERMANENT
        worst = min(codes, key=lambda c: (c >= 500, c)) if kind is Kind.TRANSIENT else max(codes)
        reply = next(msg for code, msg in refused.values() if code == worst)
        return DeliveryError(kind, f"all recipients refused: {reply}", worst, refused=refused)
    if isinstance(exc, smtplib.SMTPConnectError | smtplib.SMTPHeloError):
        code = exc.smtp_code
        kind = Kind.TRANSIENT if code < 500 or code == 554 else Kind.CONFIGURATION
        return DeliveryError(kind, f"connection refused by server: {_decode(exc.smtp_error)}", code)
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        if code in (530, 534, 538):  # authentication required / mechanism too weak / encryption required
            return DeliveryError(Kind.CONFIGURATION, _decode(exc.smtp_error), code)
        return DeliveryError(_kind_for_code(code), _decode(exc.smtp_error), code)
    if isinstance(exc, smtplib.SMTPServerDisconnected | TimeoutError | ConnectionError):
        reply = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return DeliveryError(Kind.TRANSIENT, reply, unknown=data_started)
    if isinstance(exc, OSError):  # DNS failures, unreachable networks
        return DeliveryError(Kind.TRANSIENT, f"{type(exc).__name__}: {exc}", unknown=data_started)
    if isinstance(exc, smtplib.SMTPException):
        return DeliveryError(Kind.TRANSIENT, f"{type(exc).__name__}: {exc}", unknown=data_started)
    # Anything else means the message itself cannot be built or encoded: retrying will not help.
    return DeliveryError(Kind.PERMANENT, f"cannot build message: {type(exc).__name__}: {exc}")


class _TrackingSMTP(smtplib.SMTP):
    """smtplib.SMTP that remembers whether DATA was started, to tell 'failed' from 'unknown'."""

    data_started = False

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.data_started = True
        return super().data(msg)


class _TrackingSMTPSSL(smtplib.SMTP_SSL):
    data_started = False

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.data_started = True
        return super().data(msg)


class SMTPEmailBackend(DjangoSMTPBackend):
    """Django's SMTP backend, keeping what its `send_messages` drops.

    Django ignores the per-recipient refusals that `smtplib.sendmail` returns when the
    server accepts some recipients and refuses others; this backend stores them on the
    message as `refused_recipients`, and tracks whether DATA started.
    """

    connection: Any  # a _TrackingSMTP or _TrackingSMTPSSL while open

    @property
    def connection_class(self) -> type[smtplib.SMTP]:
        return _TrackingSMTPSSL if self.use_ssl else _TrackingSMTP

    def _send(self, email_message: Any) -> bool:
        self.connection.data_started = False
        if not email_message.recipients():
            return False
        encoding = email_message.encoding or settings.DEFAULT_CHARSET
        try:
            from_email = sanitize_address(email_message.from_email, encoding)
            recipients = [sanitize_address(addr, encoding) for addr in email_message.recipients()]
            content = email_message.message().as_bytes(linesep="\r\n")
        except Exception as exc:  # bad header, broken address: this message alone cannot be sent
            raise MessageBuildError(str(exc)) from exc
        refused = self.connection.sendmail(from_email, recipients, content)
        email_message.refused_recipients = {addr: (code, _decode(msg)) for addr, (code, msg) in refused.items()}
        return True

    def abort(self) -> None:
        """Drop the connection without a polite QUIT: it is dead or in an unknown state."""
        if self.connection is not None:
            try:
                self.connection.close()
            finally:
                self.connection = None


def backend_path() -> str:
    """The backend the dispatcher uses: the configured one, with Django's SMTP backend upgraded."""
    path = settings.EMAIL_BACKEND
    return f"{__name__}.SMTPEmailBackend" if path == DJANGO_SMTP_BACKEND else path


def build_message(email: OutboundEmail, *, connection: Any = None) -> EmailMultiAlternatives:
    """Build the message for a row, with its stored Message-ID; MIME errors surface at send.

    Raise ValueError for a row whose stored shape is broken (written around `enqueue_email`).
    """
    recipients, headers = email.recipients, email.headers
    if not isinstance(recipients, list) or not recipients or not all(isinstance(a, str) for a in recipients):
        raise ValueError("recipients must be a non-empty list of addresses")
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ValueError("headers must map names to text")
    if not email.message_id:
        raise ValueError("the row has no Message-ID")
    message = EmailMultiAlternatives(
        subject=email.subject,
        body=email.body_text,
        from_email=email.from_email,
        to=list(recipients),
        headers={**headers, "Message-ID": email.message_id},
        connection=connection,
    )
    if email.body_html:
        message.attach_alternative(email.body_html, "text/html")
    return message


@dataclass
class SendResult:
    refused: dict[str, tuple[int, str]]
    duration_ms: int


class Session:
    """One reusable connection to the email backend, opened lazily, dropped on faults."""

    #: Keep an idle session this long, so a message that comes soon after goes out at once.
    idle_seconds = 5.0

    def __init__(self) -> None:
        self.backend_class = import_string(backend_path())
        self.connection: Any = None
        self.last_used = 0.0

    @property
    def is_open(self) -> bool:
        return self.connection is not None

    def open(self) -> None:
        if self.connection is not None:
            return
        connection = self.backend_class(fail_silently=False)
        try:
            connection.open()
        except BaseException as exc:
            getattr(connection, "abort", connection.close)()
            raise classify(exc) from exc
        self.connection = connection

    def send(self, message: EmailMultiAlternatives) -> SendResult:
        """Send one message over the session; raise `DeliveryError` if it was not accepted."""
        started = time.monotonic()
        reused = self.connection is not None
        self.open()
        try:
            sent = self.connection.send_messages([message])
        except BaseException as exc:
            smtp = getattr(self.connection, "connection", None)
            data_started = bool(getattr(smtp, "data_started", False))
            if reused and not data_started and isinstance(exc, smtplib.SMTPServerDisconnected | ConnectionError):
                # The server closed a session we kept open: not a try of this message; once more, afresh.
                self.abort()
                return self.send(message)
            error = classify(exc, data_started=data_started)
            if error.kind is not Kind.PERMANENT or isinstance(exc, smtplib.SMTPServerDisconnected):
                self.abort()
            elif smtp is not None and error.tried:
                self._reset(smtp)
            raise error from exc
        self.last_used = time.monotonic()
        if not sent:
            raise DeliveryError(Kind.PERMANENT, "message has no recipients", tried=False)
        return SendResult(getattr(message, "refused_recipients", {}), int((time.monotonic() - started) * 1000))

    def _reset(self, smtp: smtplib.SMTP) -> None:
        # After a refused transaction the session is still good; RSET clears it for the next one.
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self.abort()

    def abort(self) -> None:
        connection, self.connection = self.connection, None
        if connection is None:
            return
        if hasattr(connection, "abort"):
            connection.abort()
        else:
            connection.close()

    def close_if_idle(self) -> None:
        """Close the session once it has gone unused for `idle_seconds`."""
        if self.connection is not None and time.monotonic() - self.last_used >= self.idle_seconds:
            self.close()

    def close(self) -> None:
        """Close politely (QUIT) after a batch; never raise."""
        connection, self.connection = self.connection, None
        if connection is None:
            return
        try:
            connection.close()
        except Exception:  # noqa: BLE001 - a failed QUIT must not kill the dispatcher
            if hasattr(connection, "abort"):
                connection.abort()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
