"""Resending an invitation whose address got an account in the meantime (an admin created it by hand)
is refused like a new invitation would be: nothing is sent, and the pending invitation is left as it was."""

import pytest

from accounts.models import ProviderInvitation, User
from accounts.services import InvitationError, invitation_create, invitation_resend
from outbox.models import OutboundEmail

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("account_email", ["Doc@Example.com", "doc@example.com"])
def test_resend__address_now_has_an_account__refused_nothing_queued(provider_role, settings, account_email):
    settings.INVITATION_RESEND_MIN_INTERVAL_SECONDS = 0
    invitation = invitation_create(email="doc@example.com", role=provider_role, invited_by=None)
    User.objects.create(email=account_email)
    emails_before = OutboundEmail.objects.count()

    with pytest.raises(InvitationError) as refused:
        invitation_resend(invitation=invitation, actor=None)

    assert refused.value.code == "account_exists"
    assert OutboundEmail.objects.count() == emails_before
    stored = ProviderInvitation.objects.get(pk=invitation.pk)
    assert (stored.status, stored.token_digest, stored.send_count) == ("pending", invitation.token_digest, 1)
