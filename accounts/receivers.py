"""Hear about invitation emails from the outbox (which knows nothing of invitations)."""

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.dispatch import receiver

from outbox.models import OutboundEmail
from outbox.signals import email_failed, email_sent

from .models import ProviderInvitation
from .services import invitation_record_email_outcome


def _is_invitation_email(email: OutboundEmail) -> bool:
    return email.related_content_type_id == ContentType.objects.get_for_model(ProviderInvitation).pk


@receiver(email_sent, sender=OutboundEmail)
def mark_invitation_email_sent(*, email: OutboundEmail, **kwargs: Any) -> None:
    """Set `email_sent` only once the server really accepted the message."""
    if _is_invitation_email(email):
        invitation_record_email_outcome(email=email, sent=True)


@receiver(email_failed, sender=OutboundEmail)
def mark_invitation_email_failed(*, email: OutboundEmail, **kwargs: Any) -> None:
    """Show a failed invitation email, with the server's reason, in the invitation list."""
    if _is_invitation_email(email):
        invitation_record_email_outcome(email=email, sent=False)
