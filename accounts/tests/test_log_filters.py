"""A live invitation token never reaches Django's request and access logs, whatever shape the URL
that carries it takes: another letter case, doubled slashes, percent-encoding or a query string."""

import logging
from collections.abc import Iterator

import pytest
from django.test import Client

from accounts.services import invitation_create

pytestmark = pytest.mark.django_db


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {getattr(record, 'request', '')}")


@pytest.fixture
def request_logs() -> Iterator[Capture]:
    capture = Capture()
    names = ("django.request", "django.server", "django.security.DisallowedHost")
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addHandler(capture)  # the loggers' own filters run before any handler
    yield capture
    for logger in loggers:
        logger.removeHandler(capture)


MANGLED_LINKS = [
    "/Invitations/Accept/{token}/",
    "/invitations//accept/{token}/",
    "/invitations/%61ccept/{token}/",
    "/invitations/accept/?token={token}",
    "/invitations/accept/x/?t={token}",
]


@pytest.mark.parametrize("shape", MANGLED_LINKS)
def test_request_logs__mangled_accept_link_keeps_token_out(shape, provider_role, request_logs):
    token = invitation_create(email="logs@example.com", role=provider_role, invited_by=None).token
    path = shape.format(token=token)
    response = Client().get(path)
    # What runserver's access log writes for the same request: the raw request line.
    logging.getLogger("django.server").info('"%s" %s %s', f"GET {path} HTTP/1.1", response.status_code, 0)

    assert request_logs.lines, "the request was logged"
    assert not [line for line in request_logs.lines if token in line]


def test_security_logs__disallowed_host_on_a_mangled_link_keeps_token_out(provider_role, request_logs, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    token = invitation_create(email="logs@example.com", role=provider_role, invited_by=None).token

    response = Client().get(f"/Invitations/Accept/{token}/", HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert request_logs.lines, "the refusal was logged"
    assert not [line for line in request_logs.lines if token in line]
