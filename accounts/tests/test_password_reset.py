"""The provider's password reset: the email goes through the outbox, the link comes from BASE_URL."""

import logging

import pytest
from django.core import mail
from django.urls import reverse

from accounts.log_filters import RedactInvitationTokens
from accounts.models import User
from accounts.password_reset import ResetSetPasswordForm
from outbox.models import OutboundEmail

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-unusual-passphrase-42"


@pytest.fixture
def provider(provider_role):
    return User.objects.create_user("dr.ada@example.com", PASSWORD, full_name="Dr. Ada Provider", role=provider_role)


def test_password_reset__queues_one_outbox_email_with_a_base_url_link_and_sends_nothing_inline(
    client, settings, provider
):
    settings.BASE_URL = "https://portal.example.org"

    response = client.post(reverse("password_reset"), {"email": "DR.ADA@example.com"}, HTTP_HOST="evil.example")

    assert response.status_code == 302
    assert response["Location"] == reverse("password_reset_done")
    assert mail.outbox == []
    email = OutboundEmail.objects.get()
    assert email.status == OutboundEmail.Status.PENDING
    assert email.recipients == ["dr.ada@example.com"]
    assert "https://portal.example.org/accounts/reset/" in email.body_text
    assert "evil.example" not in email.body_text + email.body_html
    assert "https://portal.example.org/accounts/reset/" in email.body_html


def test_password_reset__unknown_address_gets_the_same_page_and_no_email(client):
    response = client.post(reverse("password_reset"), {"email": "nobody@example.com"})

    assert response.status_code == 302
    assert response["Location"] == reverse("password_reset_done")
    assert not OutboundEmail.objects.exists()


def test_set_password__validation_errors_belong_to_the_new_password_field(provider):
    form = ResetSetPasswordForm(provider, {"new_password1": "password", "new_password2": "password"})

    assert not form.is_valid()
    assert "This password is too common." in form.errors["new_password1"]
    assert "new_password2" not in form.errors


def test_reset_link_token_is_redacted_from_access_log_lines():
    token_path = "/accounts/reset/MQ/cxyz12-0123456789abcdef0123456789abcdef/"
    record = logging.LogRecord(
        "django.server", logging.INFO, __file__, 1, '"GET %s HTTP/1.1" 302 0', (token_path,), None
    )

    RedactInvitationTokens().filter(record)

    assert record.getMessage() == '"GET /accounts/reset/MQ/[redacted]/ HTTP/1.1" 302 0'
    follow_up = logging.LogRecord(
        "django.server",
        logging.INFO,
        __file__,
        1,
        '"GET %s HTTP/1.1" 200 0',
        ("/accounts/reset/MQ/set-password/",),
        None,
    )
    RedactInvitationTokens().filter(follow_up)
    assert "set-password" in follow_up.getMessage()
