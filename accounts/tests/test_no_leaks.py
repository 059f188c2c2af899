"""A full invitation flow, failures included, leaves the token, the password and the address nowhere
they should not be: not in any log record (Django's request and access loggers included), and not
in any table but the outbound email's body."""

import http.cookiejar
import logging
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer
from django.db import connection
from django.test import Client

from accounts.models import ProviderInvitation, User
from outbox.log_format import JSONFormatter
from outbox.models import OutboundEmail

PASSWORD = "Zebra-Orchid-Lantern-9071"
WEAK_PASSWORD = "Qz7!short"
ADDRESS = "Dr.Leak@Example.com"
TOKEN_IN_BODY = re.compile(r"/invitations/accept/([A-Za-z0-9_-]{43})/")


class Capture(logging.Handler):
    """Keep what each record says at the moment it is emitted (a later handler's filter may rewrite it)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[tuple[str, str, str]] = []  # logger name, message, everything a handler could print

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.name, record.getMessage(), record_text(record)))


@pytest.fixture
def captured_logs() -> Iterator[Capture]:
    """Every record from every logger that reaches a handler: root, `django` and `django.server`."""
    capture = Capture()
    names = ["", "django", "django.server", "django.request", "accounts", "outbox"]
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for name, logger in zip(names, loggers, strict=True):
        logger.setLevel(logging.DEBUG)
        if name in ("", "django", "django.server"):  # where records stop propagating
            # First in line, so it sees each record before any configured handler's filter touches it:
            # what it sees is what every handler would get from the loggers' own filters.
            logger.handlers.insert(0, capture)
    yield capture
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)
        logger.removeHandler(capture)


@pytest.fixture
def web_server() -> Iterator[str]:
    """The WSGI server `runserver` uses, with its access log (`django.server`), on a loopback port."""
    server = WSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
    server.set_app(WSGIHandler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


class Browser:
    """A cookie-keeping HTTP client that does not follow redirects on its own."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, path: str, data: dict[str, str] | None = None) -> tuple[int, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        headers = {"Origin": self.base} if data is not None else {}
        request = urllib.request.Request(self.base + path, data=body, headers=headers)  # noqa: S310 - http only
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def submit(self, data: dict[str, str]) -> tuple[int, str]:
        _, page = self.request("/invitations/accept/")
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        csrf = match.group(1) if match else ""
        return self.request("/invitations/accept/", {**data, "csrfmiddlewaretoken": csrf})


def latest_token() -> str:
    email = OutboundEmail.objects.order_by("-pk").first()
    assert email is not None
    match = TOKEN_IN_BODY.search(email.body_text)
    assert match is not None
    return match.group(1)


def record_text(record: logging.LogRecord) -> str:
    """All a handler could write for a record: message, traceback, every extra, in two formats."""
    parts = [record.getMessage(), record.exc_text or "", JSONFormatter().format(record)]
    parts.append(logging.Formatter("%(message)s").format(record))
    parts.extend(repr(value) for key, value in vars(record).items() if key not in ("msg", "args", "exc_info"))
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_full_flow_with_failures__no_secret_in_any_log_record_or_table(
    captured_logs, web_server, smtp_server, admin_user, provider_role, settings
):
    settings.INVITATION_RESEND_MIN_INTERVAL_SECONDS = 0
    admin = Client()
    admin.force_login(admin_user)

    # The admin invites; the relay refuses the first email; the admin resends; it is delivered.
    admin.post("/admin/accounts/providerinvitation/add/", {"email": ADDRESS, "role": provider_role.pk})
    invitation = ProviderInvitation.objects.get()
    first_token = latest_token()
    smtp_server.set_mode("550")
    call_command("dispatch_outbox", "--once")
    smtp_server.set_mode("accept")
    admin.post(
        "/admin/accounts/providerinvitation/",
        {"action": "resend", "_selected_action": [invitation.pk]},
    )
    token = latest_token()
    assert token != first_token
    call_command("dispatch_outbox", "--once")
    assert len(smtp_server.messages) == 1

    provider = Browser(web_server)
    stranger = Browser(web_server)
    # Failures first: the replaced link, a link with an extra segment, a POST to the link, a bad form.
    assert stranger.request(f"/invitations/accept/{first_token}/")[0] == 302
    assert stranger.request("/invitations/accept/")[0] == 404
    assert stranger.request(f"/invitations/accept/{token}/extra/")[0] == 404
    assert stranger.request(f"/invitations/accept/{token}/", {"password1": PASSWORD})[0] == 403  # CSRF
    assert stranger.request(f"/invitations/accept/{token}x/")[0] == 302
    assert provider.request(f"/invitations/accept/{token}/")[0] == 302
    status, page = provider.submit({"full_name": "Dr. Leak", "password1": WEAK_PASSWORD, "password2": WEAK_PASSWORD})
    assert status == 200 and "too short" in page
    status, _ = provider.submit({"full_name": "Dr. Leak", "password1": PASSWORD, "password2": "Not-The-Same-1234"})
    assert status == 200
    # Then success, and the used link tried again.
    assert provider.submit({"full_name": "Dr. Leak", "password1": PASSWORD, "password2": PASSWORD})[0] == 302
    assert User.objects.get(email="dr.leak@example.com").check_password(PASSWORD)
    again = Browser(web_server)
    again.request(f"/invitations/accept/{token}/")
    assert again.request("/invitations/accept/")[0] == 410
    call_command("expire_invitations")

    # The access log saw the requests, with the token redacted.
    access = [message for name, message, _ in captured_logs.records if name == "django.server"]
    assert any("/invitations/accept/[redacted]/" in line for line in access), access
    names = {name for name, _, _ in captured_logs.records}
    assert {"django.request", "django.security.csrf", "outbox.dispatcher"} <= names  # 4xx lines, CSRF, sends

    secrets = [token, first_token, PASSWORD, WEAK_PASSWORD, "dr.leak@example.com"]
    for name, message, text in captured_logs.records:
        if name.startswith("mail.log"):
            continue  # the test SMTP server plays the remote relay; its log is not the application's
        for secret in secrets:
            assert secret.lower() not in text.lower(), (name, message)

    assert_tokens_only_in_outbound_bodies([token, first_token], also_absent=[PASSWORD, WEAK_PASSWORD])


def assert_tokens_only_in_outbound_bodies(tokens: list[str], *, also_absent: list[str]) -> None:
    """Scan every column of every row of every table (sessions decoded) for the tokens."""
    allowed = {("outbox_outboundemail", "body_text"), ("outbox_outboundemail", "body_html")}
    found_in_bodies = False
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {quote(table)}")  # noqa: S608 - names from introspection
            columns = [c[0] for c in cursor.description]
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    text = str(value)
                    if table == "django_session" and column == "session_data":
                        text += str(SessionStore().decode(value))
                    for secret in tokens:
                        if secret in text:
                            assert (table, column) in allowed, f"token found in {table}.{column}"
                            found_in_bodies = True
                    for secret in also_absent:
                        assert secret not in text, f"password found in {table}.{column}"
    assert found_in_bodies  # the scan did see the one place the token belongs
