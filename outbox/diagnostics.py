"""`check_email`'s work: walk the SMTP conversation the dispatcher would have, step by step, sending nothing.

Connect (with TLS for EMAIL_USE_SSL), EHLO, STARTTLS (EMAIL_USE_TLS) and EHLO again, AUTH
(when credentials are set), NOOP, QUIT. Each step reports the server's reply; the first
failure stops the walk with a hint that says what to change. TLS uses the very context
Django's SMTP backend would build, so certificates are judged the same way.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend
from django.utils.module_loading import import_string

from .redaction import mask_address

DEFAULT_TIMEOUT = 10.0


@dataclass
class Step:
    name: str
    ok: bool
    detail: str


class ProbeFailed(Exception):
    """A step failed; `hint` says what to change."""

    def __init__(self, step: str, detail: str, hint: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step, self.detail, self.hint = step, detail, hint


def mask_user(username: str) -> str:
    """Show enough of a login to recognise it, never all of it."""
    if "@" in username:
        return mask_address(username)
    return f"{username[:4]}***" if len(username) > 4 else "***"


def describe_settings() -> str:
    security = "SSL (implicit TLS)" if settings.EMAIL_USE_SSL else "STARTTLS" if settings.EMAIL_USE_TLS else "none"
    if settings.EMAIL_USE_SSL and settings.EMAIL_USE_TLS:
        security = "both TLS and SSL (invalid)"
    user = settings.EMAIL_HOST_USER
    return (
        f"backend={settings.EMAIL_BACKEND} host={settings.EMAIL_HOST} port={settings.EMAIL_PORT} "
        f"security={security} user={mask_user(user) if user else '(none)'} "
        f"password={'set' if settings.EMAIL_HOST_PASSWORD else '(none)'} timeout={settings.EMAIL_TIMEOUT}s"
    )


def _reply(code: int, message: bytes | str) -> tuple[str, list[str]]:
    """The first line as "code text", and the remaining lines."""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    first, *rest = text.splitlines() or [""]
    return f"{code} {first}".strip(), rest


def _tls_summary(sock: Any) -> str:
    try:
        version, cipher = sock.version(), sock.cipher()[0]
        cert = sock.getpeercert() or {}
        subject = dict(item[0] for item in cert.get("subject", ()))
        issuer = dict(item[0] for item in cert.get("issuer", ()))
        return (
            f"{version} {cipher}, certificate for {subject.get('commonName', '?')} "
            f"issued by {issuer.get('commonName', issuer.get('organizationName', '?'))}"
        )
    except (AttributeError, ValueError, TypeError):
        return "TLS established"


def _hint_for(exc: BaseException, step: str) -> tuple[str, str]:
    """The failure in words, and what to do about it."""
    host, port = settings.EMAIL_HOST, settings.EMAIL_PORT
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return _reply(exc.smtp_code, exc.smtp_error)[0], (
            "The server refused the credentials: check EMAIL_HOST_USER and EMAIL_HOST_PASSWORD. "
            "Amazon SES wants SMTP credentials (not IAM access keys) of the same region as EMAIL_HOST; "
            'Google wants an app password; SendGrid wants the user "apikey" and an API key as the password.'
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        if step == "STARTTLS":
            return "the server does not offer STARTTLS", (
                f"Check EMAIL_HOST/EMAIL_PORT ({host}:{port}): your provider offers STARTTLS on 587. For implicit "
                "TLS on 465 set EMAIL_USE_SSL=true and EMAIL_USE_TLS=false. Never send without TLS in production."
            )
        return f"the server does not support {step}", (
            "The server offers no AUTH on this connection: many servers offer it only after STARTTLS "
            "(set EMAIL_USE_TLS=true), or this relay authorises by address (leave EMAIL_HOST_USER empty)."
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {exc.verify_message or exc}", (
            f"The server's certificate does not verify for {host!r}: EMAIL_HOST must be the name on the "
            "certificate (not an IP address or alias), and its issuer must be trusted. For a private CA, "
            "point SSL_CERT_FILE at a bundle that includes it."
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}", (
            "The TLS handshake failed. With EMAIL_USE_SSL the server must speak TLS at once (port 465); on "
            "587 or 25 use EMAIL_USE_TLS (STARTTLS) instead."
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = _reply(exc.smtp_code, exc.smtp_error)[0]
        if exc.smtp_code in (530, 538):
            return reply, "The server wants TLS before this step: set EMAIL_USE_TLS=true (port 587)."
        if 400 <= exc.smtp_code < 500:
            return reply, "The server is busy or throttling (4xx): try again later; the dispatcher retries these."
        return reply, "The server refused this step; its reply above says why."
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"the server closed the connection ({exc or 'no reason given'})", (
            "If EMAIL_PORT is 465 the server expects TLS at once: set EMAIL_USE_SSL=true and EMAIL_USE_TLS=false."
        )
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {host!r}: {exc}", "Check EMAIL_HOST for typos, and that this host can resolve DNS."
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {host}:{port}", "Nothing listens there: check EMAIL_HOST and EMAIL_PORT."
    if isinstance(exc, TimeoutError):
        return f"no answer within {settings.EMAIL_TIMEOUT or DEFAULT_TIMEOUT}s", (
            f"A firewall may drop traffic to {host}:{port} (cloud hosts often block port 25: use 587), or "
            "with EMAIL_USE_TLS on port 465 the server waits for TLS: use EMAIL_USE_SSL there."
        )
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc}", f"Check that this host can reach {host}:{port}."
    return f"{type(exc).__name__}: {exc}", "Unexpected failure; run with a debugger or check the EMAIL_* settings."


def probe(report: Callable[[Step], None]) -> None:
    """Walk the SMTP conversation with the configured settings; raise `ProbeFailed` at the first failure."""
    try:
        backend_class = import_string(settings.EMAIL_BACKEND)
    except ImportError as exc:
        raise ProbeFailed("settings", f"EMAIL_BACKEND cannot be imported: {exc}", "Set a valid EMAIL_BACKEND.") from exc
    if not (isinstance(backend_class, type) and issubclass(backend_class, DjangoSMTPBackend)):
        raise ProbeFailed(
            "settings",
            f"EMAIL_BACKEND is {settings.EMAIL_BACKEND}, which does not talk SMTP: nothing to check",
            "To send real email set EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend and the EMAIL_* "
            "settings of your provider (docs/email-provider.md).",
        )
    try:
        # Typed Any: the stubs do not know `ssl_context`, which builds TLS exactly as sending does.
        backend: Any = DjangoSMTPBackend(fail_silently=False)
    except ValueError as exc:  # both EMAIL_USE_TLS and EMAIL_USE_SSL
        raise ProbeFailed(
            "settings", str(exc), "Set only one of EMAIL_USE_TLS (port 587) and EMAIL_USE_SSL (465)."
        ) from exc
    if not backend.host:
        raise ProbeFailed("settings", "EMAIL_HOST is empty", "Set EMAIL_HOST to your provider's SMTP host.")
    timeout = backend.timeout or DEFAULT_TIMEOUT
    smtp: smtplib.SMTP
    if backend.use_ssl:
        smtp = smtplib.SMTP_SSL(context=backend.ssl_context, timeout=timeout)
    else:
        smtp = smtplib.SMTP(timeout=timeout)
    # Connecting in the constructor would hide the banner; TLS still needs the name to verify against.
    smtp._host = backend.host  # type: ignore[attr-defined]

    def step(name: str, action: Callable[[], Any], describe: Callable[[Any], str]) -> Any:
        try:
            result = action()
        except Exception as exc:  # every failure becomes a reported step with a hint
            detail, hint = _hint_for(exc, name)
            report(Step(name, False, detail))
            raise ProbeFailed(name, detail, hint) from exc
        report(Step(name, True, describe(result)))
        return result

    def replied(result: tuple[int, bytes]) -> str:
        return _reply(*result)[0]

    def ehlo_reply(result: tuple[int, bytes]) -> str:
        first, rest = _reply(*result)
        extensions = ", ".join(line.strip() for line in rest)
        return f"{first}; extensions: {extensions or 'none'}"

    def ehlo() -> tuple[int, bytes]:
        result = smtp.ehlo()
        if result[0] != 250:
            raise smtplib.SMTPHeloError(*result)
        return result

    try:
        security = " with TLS" if backend.use_ssl else ""
        step(
            f"connect to {backend.host}:{backend.port}{security}",
            lambda: smtp.connect(backend.host, backend.port),
            lambda result: replied(result) + (f"; {_tls_summary(smtp.sock)}" if backend.use_ssl else ""),
        )
        step("EHLO", ehlo, ehlo_reply)
        if backend.use_tls:

            def starttls() -> tuple[int, bytes]:
                if not smtp.has_extn("starttls"):
                    raise smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server.")
                return smtp.starttls(context=backend.ssl_context)

            step("STARTTLS", starttls, lambda result: f"{replied(result)}; {_tls_summary(smtp.sock)}")
            step("EHLO", ehlo, ehlo_reply)
        if backend.username and backend.password:

            def login() -> tuple[int, bytes]:
                if not smtp.has_extn("auth"):
                    raise smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
                return smtp.login(backend.username, backend.password)

            step(f"AUTH as {mask_user(backend.username)}", login, replied)
        else:
            report(Step("AUTH", True, "skipped: EMAIL_HOST_USER or EMAIL_HOST_PASSWORD is empty"))
        step("NOOP", smtp.noop, replied)
        step("QUIT", smtp.quit, replied)
    finally:
        with contextlib.suppress(OSError):
            smtp.close()
