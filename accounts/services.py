"""Invitation lifecycle: create, resend, revoke, accept. Every write is one transaction."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from outbox.models import OutboundEmail
from outbox.services import cancel_pending, emails_for, enqueue_email

from .models import ProviderInvitation, Role, User
from .tokens import invitation_token_generator

Status = ProviderInvitation.Status
MAX_EMAIL_LENGTH = 254


class InvitationError(Exception):
    """A refused invitation action, with a message fit to show to the person who asked."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class InvalidInvitationLink(InvitationError):
    """The accept link cannot be used; `code` is unknown, malformed, expired, revoked or used."""


def normalize_invitation_email(value: str) -> str:
    """Trim, lower-case and validate an address; the domain is returned in its ASCII (IDNA) form."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("Enter an email address.", code="required")
    if any(ch in value for ch in "\r\n\x00"):
        raise ValidationError("An email address cannot contain line breaks.", code="header_injection")
    email = value.strip()
    if len(email) > MAX_EMAIL_LENGTH:
        raise ValidationError(f"An email address has at most {MAX_EMAIL_LENGTH} characters.", code="too_long")
    local, sep, domain = email.rpartition("@")
    if not sep or not local or not domain:
        raise ValidationError("Enter a valid email address.", code="invalid")
    if not local.isascii():
        raise ValidationError(
            "Addresses with non-ASCII characters before the @ cannot be delivered by the mail relay.",
            code="non_ascii_local_part",
        )
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError("Enter a valid email address.", code="invalid") from None
    email = f"{local}@{domain}".lower()
    if len(email) > MAX_EMAIL_LENGTH:
        raise ValidationError(f"An email address has at most {MAX_EMAIL_LENGTH} characters.", code="too_long")
    validate_email(email)
    return email


def grantable_roles() -> Any:
    return Role.objects.filter(name__in=settings.INVITATION_GRANTABLE_ROLES)


def check_invitable(email: str) -> None:
    """Refuse an address that already has an account or a live pending invitation."""
    if User.objects.filter(email__iexact=email).exists():
        raise InvitationError(
            "An account with this email address already exists; nothing was sent.", code="account_exists"
        )
    _expire_stale(email)
    if ProviderInvitation.objects.filter(email__iexact=email, status=Status.PENDING).exists():
        raise InvitationError(
            "A pending invitation for this address already exists; resend or revoke it instead.",
            code="already_invited",
        )


def _expire_stale(email: str) -> None:
    ProviderInvitation.objects.filter(
        email__iexact=email, status=Status.PENDING, expires_at__lte=timezone.now()
    ).update(status=Status.EXPIRED)


def _issue_token(invitation: ProviderInvitation) -> str:
    token = invitation_token_generator.make_token()
    invitation.token_digest = invitation_token_generator.digest(token)
    invitation.expires_at = timezone.now() + timedelta(days=settings.INVITATION_EXPIRY_DAYS)
    return token


def _enqueue_invitation_email(invitation: ProviderInvitation, token: str) -> OutboundEmail:
    context = {
        "accept_url": f"{settings.BASE_URL}/invitations/accept/{token}/",
        "expiry_days": settings.INVITATION_EXPIRY_DAYS,
        "role": invitation.role.name,
    }
    invitation.send_count += 1
    invitation.last_sent_requested_at = timezone.now()
    invitation.save(update_fields=["send_count", "last_sent_requested_at"])
    return enqueue_email(
        to=[invitation.email],
        subject=render_to_string("accounts/email/invitation_subject.txt", context).strip(),
        body=render_to_string("accounts/email/invitation.txt", context),
        html_body=render_to_string("accounts/email/invitation.html", context),
        dedupe_key=f"provider-invitation:{invitation.pk}:{invitation.send_count}",
        related_object=invitation,
    )


def invitation_create(*, email: str, role: Role, invited_by: AbstractBaseUser | None) -> ProviderInvitation:
    """Create a pending invitation and queue its email in the same transaction.

    The returned instance carries the raw token as `.token` (never stored) for the caller.
    """
    email = normalize_invitation_email(email)
    if role.name not in settings.INVITATION_GRANTABLE_ROLES:
        raise InvitationError(f"The role {role.name!r} cannot be granted by invitation.", code="role_not_grantable")
    with transaction.atomic():
        check_invitable(email)
        invitation = ProviderInvitation(email=email, role=role, invited_by=invited_by)
        token = _issue_token(invitation)
        try:
            with transaction.atomic():
                invitation.save()
        except IntegrityError:
            raise InvitationError(
                "A pending invitation for this address already exists; resend or revoke it instead.",
                code="already_invited",
            ) from None
        _enqueue_invitation_email(invitation, token)
    invitation.token = token  # type: ignore[attr-defined]
    return invitation


def invitation_resend(*, invitation: ProviderInvitation, actor: AbstractBaseUser | None) -> ProviderInvitation:
    """Rotate the token and expiry, cancel the unsent email and queue a new one.

    The old link stops working at once. The returned instance carries the new `.token`.
    """
    with transaction.atomic():
        invitation = ProviderInvitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.status != Status.PENDING:
            raise InvitationError(
                f"Only pending invitations can be resent; this one is {invitation.status}.", code="not_pending"
            )
        cancel_pending(emails_for(invitation))
        token = _issue_token(invitation)
        invitation.email_sent, invitation.email_sent_at = False, None
        invitation.save(update_fields=["token_digest", "expires_at", "email_sent", "email_sent_at"])
        _enqueue_invitation_email(invitation, token)
    invitation.token = token  # type: ignore[attr-defined]
    return invitation


def invitation_revoke(*, invitation: ProviderInvitation, actor: AbstractBaseUser | None) -> ProviderInvitation:
    """Revoke a pending invitation and cancel its unsent email."""
    with transaction.atomic():
        invitation = ProviderInvitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.status != Status.PENDING:
            raise InvitationError(
                f"Only pending invitations can be revoked; this one is {invitation.status}.", code="not_pending"
            )
        invitation.status = Status.REVOKED
        invitation.save(update_fields=["status"])
        cancel_pending(emails_for(invitation))
    return invitation


def _refusal(invitation: ProviderInvitation) -> InvalidInvitationLink | None:
    if invitation.status == Status.ACCEPTED:
        return InvalidInvitationLink("This invitation has already been used.", code="used")
    if invitation.status == Status.REVOKED:
        return InvalidInvitationLink("This invitation has been withdrawn.", code="revoked")
    if invitation.is_expired:
        return InvalidInvitationLink("This invitation has expired.", code="expired")
    return None


def invitation_for_token(token: str) -> ProviderInvitation:
    """Find the pending invitation for a link's token; changes nothing."""
    if not invitation_token_generator.is_well_formed(token):
        raise InvalidInvitationLink("This invitation link is not valid.", code="malformed")
    invitation = (
        ProviderInvitation.objects.select_related("role")
        .filter(token_digest=invitation_token_generator.digest(token))
        .first()
    )
    if invitation is None:
        raise InvalidInvitationLink("This invitation link is not valid.", code="unknown")
    if refusal := _refusal(invitation):
        raise refusal
    return invitation


def invitation_check(*, invitation_id: int) -> ProviderInvitation:
    """Load an invitation by id (kept in the session) and check it can still be accepted."""
    invitation = ProviderInvitation.objects.select_related("role").filter(pk=invitation_id).first()
    if invitation is None:
        raise InvalidInvitationLink("This invitation link is not valid.", code="unknown")
    if refusal := _refusal(invitation):
        raise refusal
    return invitation


def invitation_accept(*, invitation_id: int, full_name: str, password: str) -> User:
    """Create the invited account with the invitation's role, once; the row is locked meanwhile."""
    with transaction.atomic():
        invitation = ProviderInvitation.objects.select_for_update().select_related("role").get(pk=invitation_id)
        refusal = _refusal(invitation)
        if refusal is not None and refusal.code == "expired" and invitation.status == Status.PENDING:
            invitation.status = Status.EXPIRED
            invitation.save(update_fields=["status"])
    if refusal is not None:
        raise refusal
    with transaction.atomic():
        invitation = ProviderInvitation.objects.select_for_update().select_related("role").get(pk=invitation_id)
        if refusal := _refusal(invitation):
            raise refusal
        if User.objects.filter(email__iexact=invitation.email).exists():
            raise InvalidInvitationLink("An account with this email address already exists.", code="used")
        user = User.objects.create_user(invitation.email, password, full_name=full_name.strip(), role=invitation.role)
        invitation.status = Status.ACCEPTED
        invitation.accepted_at = timezone.now()
        invitation.accepted_user = user
        invitation.save(update_fields=["status", "accepted_at", "accepted_user"])
        ProviderInvitation.objects.filter(email__iexact=invitation.email, status=Status.PENDING).exclude(
            pk=invitation.pk
        ).update(status=Status.REVOKED)
        cancel_pending(emails_for(invitation))
    return user
