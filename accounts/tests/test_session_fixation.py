"""A session key planted in the provider's browser before they open their link (session fixation) does
not carry their invitation: opening a valid link moves it to a fresh session key, so whoever knows the
old key cannot submit the form and choose the new account's password."""

import pytest
from django.conf import settings
from django.test import Client

from accounts.models import User
from accounts.services import invitation_create

pytestmark = pytest.mark.django_db

PASSWORD = "Heron-Quartz-Meadow-4417"


def test_accept_link__planted_session_key__does_not_get_the_invitation(provider_role):
    attacker = Client()
    attacker.get("/invitations/accept/" + "A" * 43 + "/")  # any link gives the attacker a session
    planted = attacker.cookies[settings.SESSION_COOKIE_NAME].value
    invitation = invitation_create(email="victim@example.com", role=provider_role, invited_by=None)
    victim = Client()
    victim.cookies[settings.SESSION_COOKIE_NAME] = planted

    victim.get(f"/invitations/accept/{invitation.token}/")
    response = attacker.post(
        "/invitations/accept/", {"full_name": "Mallory", "password1": PASSWORD, "password2": PASSWORD}
    )

    assert victim.cookies[settings.SESSION_COOKIE_NAME].value != planted
    assert response.status_code in (404, 410)
    assert not User.objects.filter(email="victim@example.com").exists()
    assert victim.get("/invitations/accept/").status_code == 200  # the provider's own form still works
