"""System checks that refuse email settings which cannot work, or cannot be trusted, in production.

Ids are stable; each message says what is wrong and each hint what to set. The checks
tagged `deploy` run with `manage.py check --deploy` and when `dispatch_outbox` starts in
production (`OUTBOX_DEPLOY_CHECKS_AT_STARTUP`); the others run with every command.
"""

from __future__ import annotations

from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend
from django.utils.module_loading import import_string

TAG = "email"

#: Backends that deliver nothing: fine in development and tests, wrong with DEBUG off.
NON_DELIVERING_BACKENDS = {
    "django.core.mail.backends.console.EmailBackend": "console",
    "django.core.mail.backends.locmem.EmailBackend": "locmem",
    "django.core.mail.backends.dummy.EmailBackend": "dummy",
    "django.core.mail.backends.filebased.EmailBackend": "file",
}

#: Ports whose convention is a plain connection upgraded with STARTTLS, and ports for implicit TLS.
STARTTLS_PORTS = frozenset({25, 587, 2525, 2587})
IMPLICIT_TLS_PORTS = frozenset({465, 2465})

#: SMTP hosts of providers that do not sign a HIPAA Business Associate Agreement (docs/email-provider.md).
NO_BAA_PROVIDERS = {
    "sendgrid.net": "Twilio SendGrid",
    "postmarkapp.com": "Postmark",
    "mandrillapp.com": "Mailchimp Transactional (Mandrill)",
}

DJANGO_DEFAULT_FROM_EMAIL = "webmaster@localhost"

#: Headers the outbox sets itself from the row; a setting must not override them.
RESERVED_HEADERS = frozenset({"message-id", "from", "to", "cc", "bcc", "subject", "date", "sender", "reply-to"})


def _uses_smtp() -> bool:
    """Whether EMAIL_BACKEND talks SMTP (Django's backend or a subclass, the outbox's included)."""
    if settings.EMAIL_BACKEND in NON_DELIVERING_BACKENDS:
        return False
    try:
        backend = import_string(settings.EMAIL_BACKEND)
    except ImportError:
        return False
    return isinstance(backend, type) and issubclass(backend, DjangoSMTPBackend)


def _security() -> str:
    if settings.EMAIL_USE_TLS and settings.EMAIL_USE_SSL:
        return "both"
    if settings.EMAIL_USE_SSL:
        return "ssl"
    if settings.EMAIL_USE_TLS:
        return "starttls"
    return "none"


def check_email_transport(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Settings that break sending in every environment: TLS mode, port, host, timeout."""
    errors: list[CheckMessage] = []
    try:
        import_string(settings.EMAIL_BACKEND)
    except ImportError as exc:
        return [
            Error(
                f"EMAIL_BACKEND {settings.EMAIL_BACKEND!r} cannot be imported: {exc}.",
                hint="Set EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend.",
                id="outbox.E010",
            )
        ]
    if not _uses_smtp():
        return errors
    security = _security()
    port = settings.EMAIL_PORT
    if security == "both":
        errors.append(
            Error(
                "EMAIL_USE_TLS and EMAIL_USE_SSL are both on; they are two different ways to encrypt.",
                hint="Use EMAIL_USE_TLS=true with port 587 (STARTTLS), or EMAIL_USE_SSL=true with port 465 "
                "(implicit TLS), and set the other to false.",
                id="outbox.E002",
            )
        )
    elif security == "starttls" and port in IMPLICIT_TLS_PORTS:
        errors.append(
            Error(
                f"EMAIL_PORT={port} is an implicit-TLS port, but EMAIL_USE_TLS asks for STARTTLS; "
                "the server will wait for a TLS handshake that never comes.",
                hint="Set EMAIL_USE_SSL=true and EMAIL_USE_TLS=false for port 465, or use port 587 with STARTTLS.",
                id="outbox.E003",
            )
        )
    elif security == "ssl" and port in STARTTLS_PORTS:
        errors.append(
            Error(
                f"EMAIL_PORT={port} expects a plain connection upgraded with STARTTLS, but EMAIL_USE_SSL "
                "starts with a TLS handshake the server will not answer.",
                hint="Set EMAIL_USE_TLS=true and EMAIL_USE_SSL=false for port 587, or use port 465 with EMAIL_USE_SSL.",
                id="outbox.E003",
            )
        )
    if not str(settings.EMAIL_HOST or "").strip():
        errors.append(
            Error(
                "EMAIL_HOST is empty: there is no server to send through.",
                hint="Set EMAIL_HOST to your provider's SMTP host (docs/email-provider.md), "
                "e.g. email-smtp.us-east-1.amazonaws.com.",
                id="outbox.E004",
            )
        )
    timeout = settings.EMAIL_TIMEOUT
    if timeout is None or timeout <= 0:
        errors.append(
            Error(
                "EMAIL_TIMEOUT is not set: a relay that stops answering would hang the dispatcher.",
                hint="Set EMAIL_TIMEOUT to a number of seconds, e.g. EMAIL_TIMEOUT=10.",
                id="outbox.E006",
            )
        )
    return errors


def check_extra_headers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """OUTBOX_EXTRA_HEADERS must be plain name/value strings that do not replace the message's own."""
    headers = getattr(settings, "OUTBOX_EXTRA_HEADERS", {})
    hint = 'Set OUTBOX_EXTRA_HEADERS as a comma list of Name=value, e.g. "X-SES-CONFIGURATION-SET=invitations".'
    if not isinstance(headers, dict):
        return [Error("OUTBOX_EXTRA_HEADERS must be a mapping of header names to values.", hint=hint, id="outbox.E007")]
    errors: list[CheckMessage] = []
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            problem = "names and values must be strings"
        elif not name or any(c in name for c in ":\r\n ") or not name.isascii():
            problem = "not a valid header name"
        elif "\r" in value or "\n" in value:
            problem = "the value contains a line break"
        elif name.lower() in RESERVED_HEADERS:
            problem = "the outbox sets this header itself"
        else:
            continue
        errors.append(Error(f"OUTBOX_EXTRA_HEADERS[{name!r}]: {problem}.", hint=hint, id="outbox.E007"))
    return errors


def check_email_deployment(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Production email: a delivering backend, encryption, credentials, a real sender, https links, a BAA."""
    messages: list[CheckMessage] = []
    backend = settings.EMAIL_BACKEND
    if backend in NON_DELIVERING_BACKENDS and not settings.DEBUG:
        messages.append(
            Error(
                f"EMAIL_BACKEND is the {NON_DELIVERING_BACKENDS[backend]} backend with DEBUG off: "
                "invitations would never reach anyone.",
                hint="Set EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend and the EMAIL_* settings "
                "of your provider (docs/email-provider.md).",
                id="outbox.E001",
            )
        )
    if _uses_smtp():
        if _security() == "none":
            messages.append(
                Error(
                    "Neither EMAIL_USE_TLS nor EMAIL_USE_SSL is on: credentials and invitation links would "
                    "cross the network in clear text.",
                    hint="Set EMAIL_USE_TLS=true with EMAIL_PORT=587 (STARTTLS), or EMAIL_USE_SSL=true with "
                    "EMAIL_PORT=465 (implicit TLS).",
                    id="outbox.E005",
                )
            )
        if not settings.EMAIL_HOST_USER or not settings.EMAIL_HOST_PASSWORD:
            messages.append(
                Warning(
                    "EMAIL_HOST_USER or EMAIL_HOST_PASSWORD is empty: the dispatcher will not authenticate.",
                    hint="Set both to your provider's SMTP credentials; leave them empty only for a relay that "
                    "authorises this host by its address (Google Workspace SMTP relay by IP, a local MTA).",
                    id="outbox.W001",
                )
            )
        provider = _no_baa_provider(str(settings.EMAIL_HOST or ""))
        if provider and not getattr(settings, "EMAIL_NO_BAA_ACCEPTED", False):
            messages.append(
                Warning(
                    f"EMAIL_HOST {settings.EMAIL_HOST!r} belongs to {provider}, which does not sign a HIPAA "
                    "Business Associate Agreement.",
                    hint="Prefer a provider that signs one (Amazon SES, Google Workspace; docs/email-provider.md). "
                    "If your compliance officer accepts this one because no PHI goes through it, set "
                    "EMAIL_NO_BAA_ACCEPTED=true.",
                    id="outbox.W002",
                )
            )
    address = parseaddr(str(settings.DEFAULT_FROM_EMAIL))[1]
    local, at, domain = address.rpartition("@")
    domain = domain.lower() if local and at else ""
    if address == DJANGO_DEFAULT_FROM_EMAIL or not domain or domain == "localhost" or domain.endswith(".localhost"):
        messages.append(
            Error(
                f"DEFAULT_FROM_EMAIL is {settings.DEFAULT_FROM_EMAIL!r}: receivers reject or junk mail from a "
                "sender domain that is not yours.",
                hint="Set DEFAULT_FROM_EMAIL to an address on a domain you verified with the provider, e.g. "
                '"Medical Document Parser <noreply@mail.yourclinic.org>", with SPF, DKIM and DMARC in place.',
                id="outbox.E008",
            )
        )
    base_url = urlsplit(str(settings.BASE_URL))
    if base_url.scheme != "https" or not base_url.netloc:
        messages.append(
            Error(
                f"BASE_URL is {settings.BASE_URL!r}: invitation links must use https, or their tokens travel "
                "in clear text.",
                hint="Set BASE_URL to the public https address of the site, e.g. BASE_URL=https://app.yourclinic.org.",
                id="outbox.E009",
            )
        )
    return messages


def _no_baa_provider(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    for domain, provider in NO_BAA_PROVIDERS.items():
        if host == domain or host.endswith(f".{domain}"):
            return provider
    return ""


def register_checks() -> None:
    register(check_email_transport, TAG)
    register(check_extra_headers, TAG)
    register(check_email_deployment, TAG, deploy=True)
