"""Logging filter that keeps invitation tokens out of every log line, access logs included."""

import logging
import re
from typing import Any

_ACCEPT_PATH = re.compile(r"(/invitations/accept/)[^/\s\"'?<>]+")
# Django's password-reset link, /accounts/reset/<uidb64>/<token>/; its set-password step holds no token.
_RESET_PATH = re.compile(r"(/accounts/reset/[^/\s\"'?<>]+/)(?!set-password/)[^/\s\"'?<>]+")
_MARKERS = ("/invitations/accept/", "/accounts/reset/")
# Django loggers that write a request path: 4xx/5xx lines, runserver access lines, CSRF refusals.
_GUARDED_LOGGERS = ("django.request", "django.server", "django.security.csrf")


def redact(text: str) -> str:
    return _RESET_PATH.sub(r"\1[redacted]", _ACCEPT_PATH.sub(r"\1[redacted]", text))


def _has_secret_path(text: str) -> bool:
    return any(marker in text for marker in _MARKERS)


class RedactInvitationTokens(logging.Filter):
    """Replace the token in any `/invitations/accept/<token>/` or password-reset path with `[redacted]`.

    Covers the message, its traceback, and the `request` Django passes as an extra (which a JSON
    formatter or an error-mail handler would otherwise print with its full path).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _has_secret_path(message):
            record.msg = redact(message)
            record.args = ()
        request: Any = getattr(record, "request", None)
        if request is not None and _has_secret_path(str(getattr(request, "path", ""))):
            record.request = _RedactedRequest(request)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and _has_secret_path(record.exc_text):
            record.exc_text = redact(record.exc_text)
        return True


class _RedactedRequest:
    """What an error handler may know of a request to a credential-bearing path: not the path."""

    def __init__(self, request: Any) -> None:
        self.method = getattr(request, "method", "")
        self.path = redact(str(getattr(request, "path", "")))
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
