"""Invitations queue their email in the same transaction; the seed's test, adapted to the outbox."""

import re

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import transaction

from accounts.models import ProviderInvitation
from accounts.services import InvalidInvitationLink, invitation_create, invitation_for_token
from outbox.models import OutboundEmail

pytestmark = pytest.mark.django_db

SUBJECT = "Invitation to join the Medical Document Parser System"


def dispatch() -> None:
    call_command("dispatch_outbox", "--once")


def test_invitation_email__one_message_with_the_link_in_both_parts(provider_role, admin_user, settings):
    invitation = invitation_create(email="provider@example.com", role=provider_role, invited_by=admin_user)
    assert mail.outbox == []  # nothing is sent from the request

    dispatch()

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.subject == SUBJECT
    assert message.to == ["provider@example.com"]
    link = f"{settings.BASE_URL}/invitations/accept/{invitation.token}/"
    assert link in message.body
    assert link in message.alternatives[0][0]  # type: ignore[attr-defined]
    assert "7 days" in message.body
    invitation.refresh_from_db()
    assert invitation.email_sent is True
    assert invitation.email_sent_at is not None


def test_resend_invitation__new_link_and_the_old_one_stops_working(provider_role, admin_user, settings):
    settings.INVITATION_RESEND_MIN_INTERVAL_SECONDS = 0
    invitation = invitation_create(email="provider@example.com", role=provider_role, invited_by=admin_user)
    dispatch()
    first_token = invitation.token

    resent = ProviderInvitation.objects.get(pk=invitation.pk).resend_invitation()
    dispatch()

    assert len(mail.outbox) == 2
    assert resent.token != first_token
    assert resent.token in mail.outbox[1].body  # type: ignore[attr-defined]
    assert first_token not in mail.outbox[1].body
    with pytest.raises(InvalidInvitationLink):
        invitation_for_token(first_token)
    assert invitation_for_token(resent.token).pk == invitation.pk


def test_invitation_rolled_back__no_outbound_row_and_nothing_sent(provider_role, admin_user):
    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        invitation_create(email="provider@example.com", role=provider_role, invited_by=admin_user)
        raise Boom

    assert ProviderInvitation.objects.count() == 0
    assert OutboundEmail.objects.count() == 0
    dispatch()
    assert mail.outbox == []


def test_invitation_stores_only_the_token_digest(provider_role, admin_user):
    invitation = invitation_create(email="provider@example.com", role=provider_role, invited_by=admin_user)
    stored = ProviderInvitation.objects.get(pk=invitation.pk)
    assert invitation.token not in stored.token_digest
    assert re.fullmatch(r"[0-9a-f]{64}", stored.token_digest)
    assert len(invitation.token) >= 43  # 256 bits, base64url
