"""The invitation flow as people see it: Debian's Chromium, driven by Playwright, against a live server.

Provider pages are opened at phone width (375px) with JavaScript off; each page's last view is
saved under artifacts/browser/ for a person to look at.
"""

import os
import re
import shutil
import signal
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from accounts.models import ProviderInvitation, Role, User
from accounts.services import invitation_create, invitation_revoke
from outbox.testing import ReceivedMessage, SMTPTestServer
from outbox.tests.processes import Dispatcher, wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.postgresql,
    pytest.mark.django_db(transaction=True),
]

ARTIFACTS = Path(django_settings.BASE_DIR) / "artifacts" / "browser"
PHONE = ViewportSize(width=375, height=740)
DESKTOP = ViewportSize(width=1280, height=800)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN_EMAIL, ADMIN_PASSWORD = "admin@example.com", "correct-horse-battery-staple"
PROVIDER_EMAIL = "dr.ada@example.com"
PASSWORD = "a-long-unusual-passphrase-42"
DELIVERY_WAIT_SECONDS = 30


@pytest.fixture(scope="module", autouse=True)
def _orm_beside_playwright() -> Iterator[None]:
    """Let the ORM run in this thread while Playwright's sync API keeps an event loop in it."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def browser(_orm_beside_playwright: None) -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    executable = shutil.which("chromium")
    assert executable, "conftest.py skips browser tests when chromium is missing"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def base_url(live_server, settings) -> str:
    """The live server's address, used for the links in emails as in production."""
    settings.BASE_URL = live_server.url
    return str(live_server.url)


@pytest.fixture
def open_page(browser: Browser, base_url: str, request: pytest.FixtureRequest) -> Iterator[Callable[..., Page]]:
    """Open pages in fresh browser contexts; the last view of each is saved as a screenshot."""
    opened: list[tuple[str, Page]] = []

    def open_(label: str, *, phone: bool = True, javascript: bool = False) -> Page:
        context = browser.new_context(
            base_url=base_url, viewport=PHONE if phone else DESKTOP, java_script_enabled=javascript
        )
        page = context.new_page()
        opened.append((label, page))
        return page

    yield open_
    test_name = re.sub(r"[^\w.-]+", "-", request.node.name).strip("-")
    for label, page in opened:
        try:
            page.screenshot(path=ARTIFACTS / f"{test_name}--{label}.png", full_page=True)
        finally:
            page.context.close()


@pytest.fixture
def admin(transactional_db) -> User:
    return User.objects.create_superuser(ADMIN_EMAIL, ADMIN_PASSWORD)


@pytest.fixture
def dispatcher(base_url: str, smtp_server: SMTPTestServer, tmp_path: Path) -> Iterator[Dispatcher]:
    """`manage.py dispatch_outbox` in its own process, sending to the test SMTP server."""
    with Dispatcher(smtp_server, tmp_path, name="browser-test-dispatcher", env={"BASE_URL": base_url}) as process:
        yield process
        # Stopped before the test database is flushed; SIGTERM ending in exit 0 is part of its contract.
        process.process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, process.output()


def wait_for_message(server: SMTPTestServer, to: str) -> ReceivedMessage:
    """Wait until the SMTP server holds a message for `to` (the dispatcher works on its own time)."""
    return wait_until(
        lambda: next((message for message in server.messages if to in message.rcpt_tos), None),
        timeout=DELIVERY_WAIT_SECONDS,
        message=f"a message for {to}",
    )


def link_in(message: ReceivedMessage, path: str) -> str:
    match = re.search(rf"https?://\S+{re.escape(path)}\S*", message.part("text/plain"))
    assert match, f"no {path} link in the message"
    return match.group(0)


def sign_in_to_admin(page: Page) -> None:
    page.goto("/admin/login/")
    page.locator("#id_username").fill(ADMIN_EMAIL)
    page.locator("#id_password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#user-tools")).to_contain_text(ADMIN_EMAIL)


def create_account(page: Page, *, name: str = "Dr. Ada Provider", password: str = PASSWORD, confirm: str = "") -> None:
    page.get_by_label("Full name").fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Confirm password").fill(confirm or password)
    page.get_by_role("button", name="Create account").click()


def sign_in(page: Page, email: str, password: str) -> None:
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()


def assert_fits_phone_width(page: Page) -> None:
    """Nothing on the page is wider than the phone's screen, so nothing scrolls sideways."""
    for element in page.locator("main, main input, main button, main .errorlist, main .helptext").all():
        box = element.bounding_box()
        if box is not None:
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], element.evaluate("e => e.outerHTML")


def snap(page: Page, name: str) -> None:
    """Save an intermediate view for a person to look at (the fixture saves each page's last one)."""
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def invite(role: Role, email: str = PROVIDER_EMAIL) -> tuple[ProviderInvitation, str]:
    invitation = invitation_create(email=email, role=role, invited_by=None)
    return invitation, invitation.token  # type: ignore[attr-defined]


@pytest.mark.slow
def test_invitation__admin_invites_provider_signs_up_and_reused_link_shows_used_page(
    open_page, base_url, smtp_server, dispatcher, admin, provider_role
):
    """All real: admin form, outbox, dispatcher process, SMTP server, the link from the email, sign-up."""
    admin_page = open_page("admin", phone=False, javascript=True)
    sign_in_to_admin(admin_page)
    admin_page.goto("/admin/accounts/providerinvitation/add/")
    admin_page.locator("#id_email").fill(PROVIDER_EMAIL)
    admin_page.locator("#id_role").select_option(label="Provider")
    snap(admin_page, "step-admin-add-invitation")
    admin_page.get_by_role("button", name="Save", exact=True).click()
    expect(admin_page.locator(".messagelist .success")).to_contain_text("was added successfully")

    message = wait_for_message(smtp_server, PROVIDER_EMAIL)
    link = link_in(message, "/invitations/accept/")
    assert link.startswith(f"{base_url}/invitations/accept/")

    page = open_page("provider")
    page.goto(link)
    expect(page).to_have_url(f"{base_url}/invitations/accept/")  # the token leaves the address bar
    expect(page.get_by_role("heading", level=1)).to_have_text("Create your account")
    expect(page.get_by_label("Email address")).to_have_value(PROVIDER_EMAIL)
    assert_fits_phone_width(page)
    create_account(page)

    expect(page).to_have_url(f"{base_url}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Dr. Ada Provider")
    expect(page.get_by_test_id("role")).to_have_text("Provider")
    expect(page.locator(".site-header")).to_contain_text(PROVIDER_EMAIL)
    snap(page, "step-invitation-landing-page")

    response = page.goto(link)
    assert response is not None and response.status == 410
    expect(page.get_by_role("heading", level=1)).to_have_text("This invitation has already been used")
    expect(page.get_by_role("link", name="go to your home page")).to_be_visible()

    elsewhere = open_page("reused-link")
    response = elsewhere.goto(link)
    assert response is not None and response.status == 410
    expect(elsewhere.get_by_role("heading", level=1)).to_have_text("This invitation has already been used")
    expect(elsewhere.get_by_role("link", name="Sign in")).to_be_visible()

    admin_page.goto("/admin/accounts/providerinvitation/")
    expect(admin_page.locator("#result_list tbody tr")).to_have_count(1)
    expect(admin_page.locator("#result_list tbody tr td.field-status")).to_have_text("Accepted")


@pytest.mark.parametrize(
    ("refusal", "heading", "status"),
    [
        ("expired", "This invitation has expired", 410),
        ("revoked", "This invitation has been withdrawn", 410),
        ("malformed", "This invitation link is not valid", 404),
        ("unknown", "This invitation link is not valid", 404),
    ],
)
def test_refused_link__shows_a_page_that_says_why(open_page, provider_role, refusal, heading, status):
    invitation, token = invite(provider_role)
    if refusal == "expired":
        ProviderInvitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif refusal == "revoked":
        invitation_revoke(invitation=invitation, actor=None)
    elif refusal == "malformed":
        token = token[:10] + "!*"
    elif refusal == "unknown":
        token = token[::-1]

    page = open_page(refusal)
    response = page.goto(f"/invitations/accept/{token}/")

    assert response is not None and response.status == status
    expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    expect(page.get_by_role("button", name="Create account")).to_have_count(0)
    assert_fits_phone_width(page)
    invitation.refresh_from_db()
    assert invitation.status != ProviderInvitation.Status.ACCEPTED


def test_accept__password_validation_errors_are_shown_next_to_the_password(open_page, provider_role):
    _, token = invite(provider_role)
    page = open_page("provider")
    page.goto(f"/invitations/accept/{token}/")

    create_account(page, password="password")

    password = page.get_by_label("Password", exact=True)
    expect(password).to_have_attribute("aria-invalid", "true")
    expect(password).to_have_attribute("aria-describedby", re.compile(r"\bid_password1_error\b"))
    errors = page.locator("#id_password1 + ul.errorlist")
    expect(errors).to_contain_text("too short")
    expect(errors).to_contain_text("too common")
    expect(page.locator("#id_password1_helptext")).to_contain_text("at least 12 characters")
    expect(page.get_by_label("Full name")).to_have_value("Dr. Ada Provider")  # kept for the next try
    expect(page.locator("#id_password2 + ul.errorlist")).to_have_count(0)
    assert_fits_phone_width(page)
    assert not User.objects.filter(email=PROVIDER_EMAIL).exists()


def test_accept__password_mismatch_is_shown_next_to_the_confirmation(open_page, provider_role):
    _, token = invite(provider_role)
    page = open_page("provider")
    page.goto(f"/invitations/accept/{token}/")

    create_account(page, password=PASSWORD, confirm=PASSWORD + "x")

    expect(page.locator("#id_password2 + ul.errorlist")).to_contain_text("do not match")
    expect(page.locator("#id_password1 + ul.errorlist")).to_have_count(0)
    assert_fits_phone_width(page)
    assert not User.objects.filter(email=PROVIDER_EMAIL).exists()


def test_accept__signed_in_admin_opening_a_providers_link_is_signed_out_and_sees_the_form(
    open_page, base_url, admin, provider_role
):
    _, token = invite(provider_role)
    page = open_page("admin-opens-link", phone=False)
    sign_in_to_admin(page)

    page.goto(f"/invitations/accept/{token}/")

    expect(page).to_have_url(f"{base_url}/invitations/accept/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Create your account")
    expect(page.get_by_label("Email address")).to_have_value(PROVIDER_EMAIL)
    expect(page.locator(".site-header")).not_to_contain_text(ADMIN_EMAIL)
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    admin_tab = page.context.new_page()
    admin_tab.goto("/admin/")
    expect(admin_tab).to_have_url(re.compile(r"/admin/login/"))
    admin_tab.close()


def test_admin__revoke_action_says_what_it_did_and_the_link_then_shows_the_withdrawn_page(
    open_page, admin, provider_role
):
    _, token = invite(provider_role)
    admin_page = open_page("admin", phone=False, javascript=True)
    sign_in_to_admin(admin_page)
    admin_page.goto("/admin/accounts/providerinvitation/")
    expect(admin_page.locator("#result_list tbody td.field-status")).to_have_text("Pending")

    admin_page.locator("input[name=_selected_action]").check()
    admin_page.locator("select[name=action]").select_option("revoke")
    admin_page.get_by_role("button", name="Go").click()

    expect(admin_page.locator(".messagelist .success")).to_contain_text("Revoked 1 invitation")
    expect(admin_page.locator("#result_list tbody td.field-status")).to_have_text("Revoked")
    page = open_page("provider")
    page.goto(f"/invitations/accept/{token}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("This invitation has been withdrawn")


@pytest.mark.slow
def test_password_reset__provider_signs_out_resets_by_email_and_signs_in_again(
    open_page, base_url, smtp_server, dispatcher, provider_role
):
    User.objects.create_user(PROVIDER_EMAIL, PASSWORD, full_name="Dr. Ada Provider", role=provider_role)
    new_password = "another-long-passphrase-77"
    page = open_page("provider")
    page.goto("/accounts/login/")
    sign_in(page, PROVIDER_EMAIL, PASSWORD)
    expect(page.get_by_test_id("role")).to_have_text("Provider")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{base_url}/accounts/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email address").fill(PROVIDER_EMAIL)
    page.get_by_role("button", name="Send reset link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    snap(page, "step-reset-check-your-email")

    message = wait_for_message(smtp_server, PROVIDER_EMAIL)
    link = link_in(message, "/accounts/reset/")
    assert link.startswith(f"{base_url}/accounts/reset/")
    page.goto(link)
    expect(page).to_have_url(re.compile(r"/accounts/reset/[^/]+/set-password/$"))  # the token leaves the URL
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a new password")

    page.get_by_label("New password", exact=True).fill("short")
    page.get_by_label("Confirm new password").fill("short")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#id_new_password1 + ul.errorlist")).to_contain_text("too short")
    assert_fits_phone_width(page)
    snap(page, "step-reset-new-password-errors")
    page.get_by_label("New password", exact=True).fill(new_password)
    page.get_by_label("Confirm new password").fill(new_password)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your password has been changed")
    snap(page, "step-reset-complete")

    page.get_by_role("link", name="Sign in").click()
    sign_in(page, PROVIDER_EMAIL, PASSWORD)
    expect(page.locator(".notice")).to_contain_text("correct email address and password")
    assert_fits_phone_width(page)
    snap(page, "step-sign-in-error")
    sign_in(page, PROVIDER_EMAIL, new_password)
    expect(page).to_have_url(f"{base_url}/")
    expect(page.get_by_test_id("role")).to_have_text("Provider")
    expect(page.locator(".site-header")).to_contain_text(PROVIDER_EMAIL)

    used_link = open_page("reused-reset-link")
    used_link.goto(link)
    expect(used_link.get_by_role("heading", level=1)).to_have_text("This reset link cannot be used")
    expect(used_link.get_by_role("link", name="Ask for a new link")).to_be_visible()
