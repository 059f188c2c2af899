"""The accept flow through Django's test client."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from freezegun import freeze_time

from accounts.models import ProviderInvitation, User
from accounts.services import invitation_create

pytestmark = pytest.mark.django_db

ACCEPT = "/invitations/accept/"
PASSWORD = "a-long-unusual-passphrase-42"


@pytest.fixture
def invitation(provider_role, admin_user):
    return invitation_create(email="provider@example.com", role=provider_role, invited_by=admin_user)


def sign_up(client, **overrides):
    data = {"full_name": "Dr. Ada Provider", "password1": PASSWORD, "password2": PASSWORD, **overrides}
    return client.post(ACCEPT, data)


def test_accept_link__get_redirects_to_token_free_form_and_changes_nothing(client, invitation):
    response = client.get(f"{ACCEPT}{invitation.token}/")

    assert response.status_code == 302
    assert response["Location"] == ACCEPT
    form = client.get(ACCEPT)
    assert form.status_code == 200
    assert b"provider@example.com" in form.content
    assert invitation.token.encode() not in form.content
    invitation.refresh_from_db()
    assert invitation.status == ProviderInvitation.Status.PENDING
    assert User.objects.filter(email="provider@example.com").count() == 0


def test_accept__post_creates_user_with_role_and_signs_in(client, invitation, provider_role):
    client.get(f"{ACCEPT}{invitation.token}/")

    response = sign_up(client)

    assert response.status_code == 302
    assert response["Location"] == reverse("home")
    user = User.objects.get(email="provider@example.com")
    assert user.role == provider_role
    assert user.full_name == "Dr. Ada Provider"
    assert user.check_password(PASSWORD)
    home = client.get(reverse("home"))
    assert home.context["user"] == user
    assert b"Provider" in home.content
    invitation.refresh_from_db()
    assert invitation.status == ProviderInvitation.Status.ACCEPTED
    assert invitation.accepted_user == user


def test_accept__second_use_of_the_link_is_refused(client, invitation):
    client.get(f"{ACCEPT}{invitation.token}/")
    sign_up(client)
    client.logout()

    client.get(f"{ACCEPT}{invitation.token}/")
    response = sign_up(client)

    assert response.status_code == 410
    assert b"already been used" in response.content
    assert User.objects.filter(email="provider@example.com").count() == 1


def test_accept__expired_link_is_refused(client, invitation):
    with freeze_time(timezone.now() + timedelta(days=7, seconds=1)):
        client.get(f"{ACCEPT}{invitation.token}/")
        response = client.get(ACCEPT)
        assert response.status_code == 410
        assert b"expired" in response.content
        assert sign_up(client).status_code == 410
    assert not User.objects.filter(email="provider@example.com").exists()


def test_accept__weak_password_is_refused_by_django_validators(client, invitation):
    client.get(f"{ACCEPT}{invitation.token}/")

    response = sign_up(client, password1="password", password2="password")

    assert response.status_code == 200
    assert "password1" in response.context["form"].errors
    assert not User.objects.filter(email="provider@example.com").exists()


def test_accept_link__unknown_token_gets_a_clear_page(client):
    client.get(f"{ACCEPT}{'x' * 43}/")
    response = client.get(ACCEPT)
    assert response.status_code == 404
    assert b"not valid" in response.content


def test_log_filter__is_on_djangos_request_and_access_loggers_whatever_logging_says():
    import logging

    from accounts.log_filters import RedactInvitationTokens

    for name in ("django.request", "django.server", "django.security.csrf"):
        assert any(isinstance(f, RedactInvitationTokens) for f in logging.getLogger(name).filters), name


def test_log_filter__redacts_the_path_in_the_message_and_in_the_request_extra(rf):
    import logging

    from accounts.log_filters import RedactInvitationTokens

    token = "A" * 43
    request = rf.get(f"/invitations/accept/{token}/")
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Not Found: %s", (request.path,), None)
    record.request = request  # type: ignore[attr-defined]
    RedactInvitationTokens().filter(record)
    assert token not in record.getMessage()
    assert token not in repr(record.request) and token not in record.request.path  # type: ignore[attr-defined]
