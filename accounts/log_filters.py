"""Logging filter that keeps invitation tokens out of every log line, access logs included."""

import logging
import re

_ACCEPT_PATH = re.compile(r"(/invitations/accept/)[^/\s\"'?]+")


def redact(text: str) -> str:
    return _ACCEPT_PATH.sub(r"\1[redacted]", text)


class RedactInvitationTokens(logging.Filter):
    """Replace the token in any `/invitations/accept/<token>/` path with `[redacted]`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/invitations/accept/" in message:
            record.msg = redact(message)
            record.args = ()
        return True
