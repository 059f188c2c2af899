"""Logging filter that keeps invitation tokens out of every log line, access logs included."""

import logging
import re
from typing import Any

_ACCEPT_PATH = re.compile(r"(/invitations/accept/)[^/\s\"'?<>]+")
# Django's password-reset link, /accounts/reset/<uidb64>/<token>/; its set-password step holds no token.
_RESET_PATH = re.compile(r"(/accounts/reset/[^/\s\"'?<>]+/)(?!set-password/)[^/\s\"'?<>]+")
_MARKERS = ("/invitations/accept/", "/accounts/reset/")
# An invitation token's shape (accounts.tokens): 43 URL-safe base64 characters. A request line can carry a
# live one in a shape the path patterns above miss (`/Invitations/Accept/`, `//`, `%61ccept`, `?t=`), and
# the URL resolver or the person who mangled the link may still accept it; in request logs, blank them all.
_TOKEN_SHAPED = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
# Django loggers that write a request path: 4xx/5xx lines, runserver access lines, CSRF refusals, and the
# 400s of a SuspiciousOperation (`django.security.<exception class>`, with the request as an extra).
_GUARDED_LOGGERS = (
    "django.request",
    "django.server",
    "django.security.csrf",
    "django.security.DisallowedHost",
    "django.security.DisallowedRedirect",
    "django.security.RequestDataTooBig",
    "django.security.TooManyFieldsSent",
    "django.security.TooManyFilesSent",
    "django.security.SuspiciousMultipartForm",
    "django.security.SuspiciousSession",
)
_REQUEST_LOGGER_PREFIXES = ("django.request", "django.server", "django.security")


def redact(text: str) -> str:
    return _RESET_PATH.sub(r"\1[redacted]", _ACCEPT_PATH.sub(r"\1[redacted]", text))


def _redact_request_text(text: str) -> str:
    return _TOKEN_SHAPED.sub("[redacted]", redact(text))


def _has_secret_path(text: str) -> bool:
    return any(marker in text for marker in _MARKERS)


def _has_secret_request_text(text: str) -> bool:
    return _has_secret_path(text) or bool(_TOKEN_SHAPED.search(text))


class RedactInvitationTokens(logging.Filter):
    """Replace the token in any `/invitations/accept/<token>/` or password-reset path with `[redacted]`.

    Covers the message, its traceback, and the `request` Django passes as an extra (which a JSON
    formatter or an error-mail handler would otherwise print with its full path).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # Request and access loggers print whatever URL came in: blank anything token-shaped there too.
        from_request_logger = record.name.startswith(_REQUEST_LOGGER_PREFIXES)
        has_secret = _has_secret_request_text if from_request_logger else _has_secret_path
        scrub = _redact_request_text if from_request_logger else redact
        message = record.getMessage()
        if has_secret(message):
            record.msg = scrub(message)
            record.args = ()
        request: Any = getattr(record, "request", None)
        if request is not None and has_secret(_request_url(request)):
            record.request = _RedactedRequest(request, scrub)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and has_secret(record.exc_text):
            record.exc_text = scrub(record.exc_text)
        return True


def _request_url(request: Any) -> str:
    """The path with its query string, as `str(request)` prints it; a non-HTTP `request` (a socket) has none."""
    get_full_path = getattr(request, "get_full_path", None)
    return str(get_full_path() if callable(get_full_path) else getattr(request, "path", ""))


class _RedactedRequest:
    """What an error handler may know of a request to a credential-bearing path: not the path."""

    def __init__(self, request: Any, scrub: Any = redact) -> None:
        self.method = getattr(request, "method", "")
        self.path = scrub(_request_url(request))
        self.META: dict[str, str] = {}

    def __str__(self) -> str:
        return f"<request: {self.method} {self.path!r}>"

    __repr__ = __str__


def install() -> None:
    """Attach the filter to Django's request and access loggers themselves, whatever LOGGING says.

    A filter on a logger runs before any handler, including handlers added later by a process
    manager or an error tracker.
    """
    for name in _GUARDED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactInvitationTokens) for f in logger.filters):
            logger.addFilter(RedactInvitationTokens())
