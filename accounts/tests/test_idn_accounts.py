"""An account stored with its domain in Unicode (as the admin's user form and createsuperuser keep it)
is the same mailbox as the invitation's ASCII (IDNA) address: no invitation, no second account."""

import pytest
from django.test import Client

from accounts.models import ProviderInvitation, User
from accounts.services import InvitationError, invitation_create

pytestmark = pytest.mark.django_db

PASSWORD = "Heron-Quartz-Meadow-4417"


def test_invite__account_with_unicode_domain_exists__refused_and_nothing_written(provider_role):
    User.objects.create(email="Doc@Straße.de")  # stored as typed, as the admin's add-user form does

    with pytest.raises(InvitationError) as refused:
        invitation_create(email="doc@straße.de", role=provider_role, invited_by=None)

    assert refused.value.code == "account_exists"
    assert not ProviderInvitation.objects.exists()


def test_accept__account_with_unicode_domain_created_meanwhile__refused_no_second_account(provider_role):
    invitation = invitation_create(email="doc@straße.de", role=provider_role, invited_by=None)
    User.objects.create(email="doc@straße.de")  # an admin added the account by hand after the invitation went out
    client = Client()
    client.get(f"/invitations/accept/{invitation.token}/")

    response = client.post(
        "/invitations/accept/", {"full_name": "Dr Doc", "password1": PASSWORD, "password2": PASSWORD}
    )

    assert response.status_code == 410
    assert User.objects.count() == 1
