"""Hear about invitation emails from the outbox (which knows nothing of invitations)."""

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.dispatch import receiver

from outbox.models import OutboundEmail
from outbox.signals import email_sent

from .models import ProviderInvitation


@receiver(email_sent, sender=OutboundEmail)
def mark_invitation_email_sent(*, email: OutboundEmail, **kwargs: Any) -> None:
    """Set `email_sent` only once the server really accepted the message."""
    if email.related_content_type_id != ContentType.objects.get_for_model(ProviderInvitation).pk:
        return
    ProviderInvitation.objects.filter(pk=email.related_object_id).update(email_sent=True, email_sent_at=email.sent_at)
