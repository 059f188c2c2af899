"""A role taken out of INVITATION_GRANTABLE_ROLES is no longer granted by the invitations already sent
for it: the link is refused with a page that says so, and no account is created."""

import pytest
from django.test import Client

from accounts.models import InvitationEvent, ProviderInvitation, User
from accounts.services import invitation_create

pytestmark = pytest.mark.django_db

PASSWORD = "Heron-Quartz-Meadow-4417"


def test_accept__role_no_longer_grantable__refused_no_account(provider_role, settings):
    invitation = invitation_create(email="gr@example.com", role=provider_role, invited_by=None)
    client = Client()
    client.get(f"/invitations/accept/{invitation.token}/")
    settings.INVITATION_GRANTABLE_ROLES = ["Someone else"]

    response = client.post("/invitations/accept/", {"full_name": "X", "password1": PASSWORD, "password2": PASSWORD})

    assert response.status_code == 410
    assert b"no longer" in response.content
    assert not User.objects.filter(email="gr@example.com").exists()
    assert ProviderInvitation.objects.get(pk=invitation.pk).status == ProviderInvitation.Status.PENDING
    assert InvitationEvent.objects.filter(invitation=invitation, action="accept_refused").exists()


def test_accept_link__role_no_longer_grantable__refused_on_open(provider_role, settings):
    invitation = invitation_create(email="gr@example.com", role=provider_role, invited_by=None)
    settings.INVITATION_GRANTABLE_ROLES = []

    response = Client().get(f"/invitations/accept/{invitation.token}/", follow=True)

    assert response.status_code == 410
