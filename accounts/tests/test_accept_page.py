"""The accept page as a browser (or a mail scanner) meets it: headers, sessions, CSRF, refusals."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.utils import timezone
from django.views.debug import SafeExceptionReporterFilter
from freezegun import freeze_time

from accounts.models import InvitationEvent, ProviderInvitation, Role, User
from accounts.services import invitation_create, invitation_resend, invitation_revoke
from outbox.models import OutboundEmail

pytestmark = pytest.mark.django_db

ACCEPT = "/invitations/accept/"
PASSWORD = "a-long-unusual-passphrase-42"
Status = ProviderInvitation.Status


@pytest.fixture
def invitation(provider_role, admin_user):
    return invitation_create(email="provider@example.com", role=provider_role, invited_by=admin_user)


def form_data(**overrides):
    return {"full_name": "Dr. Ada Provider", "password1": PASSWORD, "password2": PASSWORD, **overrides}


def snapshot():
    """Everything an accept GET must leave as it was."""
    return (
        list(ProviderInvitation.objects.order_by("pk").values()),
        list(User.objects.order_by("pk").values("pk", "email", "last_login")),
        list(InvitationEvent.objects.order_by("pk").values()),
        list(OutboundEmail.objects.order_by("pk").values("pk", "status")),
    )


def assert_private(response, referrer_policy="no-referrer"):
    assert response["Referrer-Policy"] == referrer_policy
    assert "no-store" in response["Cache-Control"]
    assert "noindex" in response["X-Robots-Tag"]


# --- GET changes nothing; reload works ----------------------------------------------------------------


def test_link_and_form__get_changes_nothing_however_often_a_scanner_fetches_them(client, invitation):
    before = snapshot()
    for _ in range(3):
        scanner = Client()  # a mail scanner: no cookies kept between fetches
        assert scanner.get(f"{ACCEPT}{invitation.token}/").status_code == 302
        scanner.get(f"{ACCEPT}{invitation.token}/", follow=True)
        scanner.head(f"{ACCEPT}{invitation.token}/")
    assert snapshot() == before

    client.get(f"{ACCEPT}{invitation.token}/")
    assert client.post(ACCEPT, form_data()).status_code == 302
    assert User.objects.filter(email="provider@example.com").exists()


def test_form__reload_before_submitting_still_works(client, invitation):
    for _ in range(2):
        assert client.get(f"{ACCEPT}{invitation.token}/")["Location"] == ACCEPT
    for _ in range(3):
        page = client.get(ACCEPT)
        assert page.status_code == 200
        assert b"provider@example.com" in page.content
    assert client.post(ACCEPT, form_data())["Location"] == "/"


def test_link__post_to_the_token_url_is_refused_and_changes_nothing(client, invitation):
    before = snapshot()
    assert client.post(f"{ACCEPT}{invitation.token}/", form_data()).status_code == 405
    assert snapshot() == before


# --- the form: address and role from the invitation only ----------------------------------------------


def test_form__address_and_role_come_from_the_invitation_never_from_the_form(client, invitation, provider_role):
    superuser_role = Role.objects.create(name="Administrator")
    client.get(f"{ACCEPT}{invitation.token}/")
    page = client.get(ACCEPT)
    assert re.search(rb'<input type="email"[^>]*value="provider@example.com"[^>]*readonly', page.content)
    assert b'name="email"' not in page.content and b'name="role"' not in page.content

    client.post(
        ACCEPT, form_data(email="attacker@evil.example", role=superuser_role.pk, is_staff="on", is_superuser="on")
    )

    user = User.objects.get(email__in=["provider@example.com", "attacker@evil.example"])
    assert (user.email, user.role, user.is_staff, user.is_superuser) == (
        "provider@example.com",
        provider_role,
        False,
        False,
    )
    assert not User.objects.filter(email="attacker@evil.example").exists()


def test_pages__use_no_third_party_assets(client, invitation):
    client.get(f"{ACCEPT}{invitation.token}/")
    pages = [client.get(ACCEPT), Client().get(ACCEPT)]
    for page in pages:
        assert not re.search(rb'(src|href|action)="(https?:)?//', page.content), page.content
        assert invitation.token.encode() not in page.content


# --- headers, CSRF, sensitive parameters, login-required projects ------------------------------------


def test_headers__every_accept_response_is_private(client, invitation):
    """no-referrer everywhere but on the form itself, whose POST would otherwise carry `Origin: null`."""
    assert_private(client.get(f"{ACCEPT}{invitation.token}/"))
    assert_private(client.get(ACCEPT), referrer_policy="same-origin")
    assert_private(client.post(ACCEPT, form_data(password2="different-passphrase-43")), referrer_policy="same-origin")
    assert_private(client.post(ACCEPT, form_data()))
    assert_private(client.get(f"{ACCEPT}{invitation.token}/"))  # used: the refusal page
    assert_private(client.get(ACCEPT))
    assert_private(Client().get(f"{ACCEPT}not-a-token/"))
    assert_private(Client().get(ACCEPT))


def test_csrf__a_browser_post_with_its_origin_header_is_accepted(invitation):
    """The form page's referrer policy lets the browser send its real Origin, which CSRF checks."""
    browser = Client(enforce_csrf_checks=True)
    browser.get(f"{ACCEPT}{invitation.token}/")
    page = browser.get(ACCEPT)
    assert page["Referrer-Policy"] != "no-referrer"  # under no-referrer a browser sends `Origin: null`
    csrf = browser.cookies["csrftoken"].value
    assert browser.post(ACCEPT, form_data(csrfmiddlewaretoken=csrf), headers={"Origin": "null"}).status_code == 403
    response = browser.post(ACCEPT, form_data(csrfmiddlewaretoken=csrf), headers={"Origin": "http://testserver"})
    assert response.status_code == 302


def test_csrf__post_without_the_token_is_refused(invitation):
    browser = Client(enforce_csrf_checks=True)
    browser.get(f"{ACCEPT}{invitation.token}/")
    browser.get(ACCEPT)

    assert browser.post(ACCEPT, form_data()).status_code == 403
    assert not User.objects.filter(email="provider@example.com").exists()

    csrf = browser.cookies["csrftoken"].value
    response = browser.post(ACCEPT, form_data(csrfmiddlewaretoken=csrf))
    assert response.status_code == 302
    assert User.objects.filter(email="provider@example.com").exists()


def test_sensitive_post_parameters__passwords_are_hidden_from_error_reports(client, invitation, monkeypatch):
    def boom(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("accounts.views.invitation_accept", boom)
    client.raise_request_exception = False
    client.get(f"{ACCEPT}{invitation.token}/")

    response = client.post(ACCEPT, form_data())

    assert response.status_code == 500
    request = response.wsgi_request
    assert set(request.sensitive_post_parameters) == {"password1", "password2"}
    cleansed = SafeExceptionReporterFilter().get_post_parameters(request)
    assert PASSWORD not in cleansed.values()
    assert cleansed["full_name"] == "Dr. Ada Provider"


def test_login_required_everywhere__accept_pages_stay_reachable(client, invitation, settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.contrib.auth.middleware.LoginRequiredMiddleware"]
    assert client.get("/")["Location"].startswith("/accounts/login/")  # the middleware is on

    assert client.get(f"{ACCEPT}{invitation.token}/")["Location"] == ACCEPT
    assert client.get(ACCEPT).status_code == 200
    assert client.post(ACCEPT, form_data())["Location"] == "/"
    assert client.get("/").status_code == 200
    assert Client().get(f"{ACCEPT}{'x' * 43}/")["Location"] == ACCEPT
    unknown = Client()
    unknown.get(f"{ACCEPT}{'x' * 43}/")
    assert unknown.get(ACCEPT).status_code == 404


# --- sessions: another user signed out, a new key after acceptance ------------------------------------


def test_signed_in_admin_opening_a_provider_link__is_signed_out_and_the_provider_account_is_made(
    client, invitation, admin_user, provider_role
):
    client.force_login(admin_user)
    admin_session = client.session.session_key

    response = client.get(f"{ACCEPT}{invitation.token}/")

    assert SESSION_KEY not in client.session
    assert client.session.session_key != admin_session
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert page.context["user"].is_anonymous
    assert b"provider@example.com" in page.content

    client.post(ACCEPT, form_data())

    provider = User.objects.get(email="provider@example.com")
    assert client.session[SESSION_KEY] == str(provider.pk)
    assert provider.role == provider_role and not provider.is_staff
    admin_user.refresh_from_db()
    assert admin_user.is_superuser  # the admin account itself is untouched


def test_signed_in_user_with_a_bad_link__stays_signed_in(client, admin_user):
    """A bad link must not be a way to sign people out (a cross-site image could fetch it)."""
    client.force_login(admin_user)
    client.get(f"{ACCEPT}{'x' * 43}/")
    assert client.session[SESSION_KEY] == str(admin_user.pk)


def test_acceptance__signs_the_new_user_in_with_a_new_session_key(client, invitation):
    client.get(f"{ACCEPT}{invitation.token}/")
    client.get(ACCEPT)
    before = client.session.session_key

    client.post(ACCEPT, form_data())

    assert client.session.session_key != before
    assert client.session[SESSION_KEY] == str(User.objects.get(email="provider@example.com").pk)
    assert "_invitation_id" not in client.session


# --- clear pages for every refusal ---------------------------------------------------------------------


def refusal_page(client, token):
    client.get(f"{ACCEPT}{token}/")
    return client.get(ACCEPT)


@pytest.mark.parametrize(
    ("token", "status", "text"),
    [
        ("x" * 43, 404, b"not valid"),  # well-formed, unknown
        ("short", 404, b"not valid"),
        ("x" * 44, 404, b"not valid"),
        ("x" * 2000, 404, b"not valid"),
        ("%00" * 3, 404, b"not valid"),
        ("%E2%80%A8" + "x" * 40, 404, b"not valid"),
        ("..%2F..%2Fadmin", 404, b"not valid"),
        ("<script>alert(1)<%2Fscript>", 404, b"not valid"),
    ],
    ids=["unknown", "too-short", "too-long", "huge", "nul-bytes", "line-separator", "path-traversal", "markup"],
)
def test_refusal__unknown_and_malformed_links_get_a_clear_page(client, token, status, text):
    page = refusal_page(client, token)
    assert page.status_code == status
    assert text in page.content
    assert b"administrator" in page.content
    assert b"<script>" not in page.content
    assert_private(page)


def test_refusal__expired_link_gets_a_clear_page(client, invitation):
    with freeze_time(timezone.now() + timedelta(days=8)):
        page = refusal_page(client, invitation.token)
    assert page.status_code == 410
    assert b"has expired" in page.content and b"administrator" in page.content


def test_refusal__revoked_link_gets_a_clear_page(client, invitation):
    invitation_revoke(invitation=invitation, actor=None)
    page = refusal_page(client, invitation.token)
    assert page.status_code == 410
    assert b"withdrawn" in page.content and b"administrator" in page.content


def test_refusal__used_link_gets_a_clear_page_with_a_way_to_sign_in(client, invitation):
    client.get(f"{ACCEPT}{invitation.token}/")
    client.post(ACCEPT, form_data())
    page = refusal_page(Client(), invitation.token)
    assert page.status_code == 410
    assert b"already been used" in page.content and b"/accounts/login/" in page.content


def test_refusal__support_address_is_shown_when_configured(client, settings):
    settings.INVITATION_SUPPORT_EMAIL = "support@clinic.example"
    page = refusal_page(client, "x" * 43)
    assert b'href="mailto:support@clinic.example"' in page.content


def test_refusal__invitation_revoked_while_the_form_was_open_is_refused_on_submit_and_audited(client, invitation):
    client.get(f"{ACCEPT}{invitation.token}/")
    assert client.get(ACCEPT).status_code == 200
    invitation_revoke(invitation=invitation, actor=None)

    page = client.post(ACCEPT, form_data())

    assert page.status_code == 410 and b"withdrawn" in page.content
    assert not User.objects.filter(email="provider@example.com").exists()
    refused = InvitationEvent.objects.get(action=InvitationEvent.Action.ACCEPT_REFUSED)
    assert refused.detail == "revoked"


def test_refusal__form_left_open_past_expiry_is_refused_on_submit_and_expiry_written(client, invitation):
    client.get(f"{ACCEPT}{invitation.token}/")
    with freeze_time(timezone.now() + timedelta(days=8)):
        page = client.post(ACCEPT, form_data())
    assert page.status_code == 410 and b"expired" in page.content
    invitation.refresh_from_db()
    assert invitation.status == Status.EXPIRED
    assert not User.objects.filter(email="provider@example.com").exists()


def test_refusal__form_opened_from_a_link_that_a_resend_replaced_is_refused(client, invitation, settings):
    settings.INVITATION_RESEND_MIN_INTERVAL_SECONDS = 0
    client.get(f"{ACCEPT}{invitation.token}/")
    resent = invitation_resend(invitation=invitation, actor=None)

    page = client.post(ACCEPT, form_data())

    assert page.status_code == 410 and b"replaced" in page.content
    assert not User.objects.filter(email="provider@example.com").exists()
    client.get(f"{ACCEPT}{resent.token}/")
    assert client.post(ACCEPT, form_data()).status_code == 302


def test_refusal__form_without_a_link_in_the_session(client):
    page = client.get(ACCEPT)
    assert page.status_code == 404 and b"not valid" in page.content
