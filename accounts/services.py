"""Invitation lifecycle: create, resend, revoke, expire, accept. Every write is one transaction.

Each state change checks its precondition on the locked row, writes the new state and one
audit event (`InvitationEvent`), and raises one domain error when refused. `expired` is
written when it is noticed (an accept attempt, a new invitation for the address, a resend or
revoke, or the `expire_invitations` sweep), so the one-pending-per-address constraint never
blocks a re-invite.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
import unicodedata
from datetime import timedelta
from typing import Any

import idna
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Exists, Q, QuerySet
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from outbox.models import OutboundEmail
from outbox.redaction import mask_address
from outbox.services import cancel_pending, emails_for, enqueue_email

from .models import InvitationEvent, ProviderInvitation, Role, User
from .tokens import invitation_token_generator

logger = logging.getLogger(__name__)

Status = ProviderInvitation.Status
Action = InvitationEvent.Action
MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit, less the angle brackets
MAX_LOCAL_PART_LENGTH = 64  # RFC 5321 section 4.5.3.1.1
INVITE_PERMISSION = "accounts.add_providerinvitation"
# RFC 5322 dot-atom: no quoted local parts, no comments, nothing a mail header could be split on.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


class InvitationError(Exception):
    """A refused invitation action, with a message fit to show to the person who asked."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class InvalidInvitationLink(InvitationError):
    """The accept link cannot be used; `code` says why (see `REFUSALS`)."""


REFUSALS = {
    "malformed": "This invitation link is not valid.",
    "unknown": "This invitation link is not valid.",
    "replaced": "This invitation link has been replaced by a newer one.",
    "expired": "This invitation has expired.",
    "revoked": "This invitation has been withdrawn.",
    "used": "This invitation has already been used.",
    "account_exists": "An account with this email address already exists.",
    "role_withdrawn": "The role this invitation grants can no longer be granted by invitation.",
}


def _refuse_link(code: str) -> InvalidInvitationLink:
    return InvalidInvitationLink(REFUSALS[code], code=code)


def _has_control_characters(value: str) -> bool:
    # Cc covers CR, LF, NUL and TAB; Zl/Zp are U+2028/U+2029, which some mail tools treat as line breaks.
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value)


def normalize_invitation_email(value: Any) -> str:
    """Trim, lower-case and validate an address; the domain is returned in its ASCII (IDNA) form.

    Refuses what a mail relay or a mail header could misread: line breaks and other control
    characters, quoted or non-ASCII local parts, IP literals, dotless domains, overlong parts.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("Enter an email address.", code="required")
    if len(value) > 4 * MAX_EMAIL_LENGTH:  # before any further work on a hostile value
        raise ValidationError(f"An email address has at most {MAX_EMAIL_LENGTH} characters.", code="too_long")
    email = value.strip()
    if _has_control_characters(email):
        raise ValidationError(
            "An email address cannot contain line breaks or other control characters.", code="header_injection"
        )
    if len(email) > MAX_EMAIL_LENGTH:
        raise ValidationError(f"An email address has at most {MAX_EMAIL_LENGTH} characters.", code="too_long")
    local, sep, domain = email.rpartition("@")
    if not sep or not local or not domain:
        raise ValidationError("Enter a valid email address, like name@example.com.", code="invalid")
    if not local.isascii():
        raise ValidationError(
            "Addresses with non-ASCII characters before the @ cannot be delivered by the mail relay; "
            "ask the provider for an ASCII address.",
            code="non_ascii_local_part",
        )
    if len(local) > MAX_LOCAL_PART_LENGTH:
        raise ValidationError(f"The part before the @ has at most {MAX_LOCAL_PART_LENGTH} characters.", code="too_long")
    if not _DOT_ATOM.fullmatch(local):
        raise ValidationError("Enter a valid email address, like name@example.com.", code="invalid")
    if domain.startswith("[") or "." not in domain.strip("."):
        raise ValidationError("Enter an address at a full domain name, like name@example.com.", code="invalid")
    try:
        # IDNA 2008 with UTS #46 mapping, as browsers and current mail systems use: straße.de stays
        # xn--strae-oqa.de (Python's built-in codec, IDNA 2003, would send to strasse.de instead).
        domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise ValidationError("Enter a valid email address, like name@example.com.", code="invalid") from None
    email = f"{local}@{domain}".lower()
    if len(email) > MAX_EMAIL_LENGTH:
        raise ValidationError(f"An email address has at most {MAX_EMAIL_LENGTH} characters.", code="too_long")
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError("Enter a valid email address, like name@example.com.", code="invalid") from None
    return email


def grantable_roles() -> QuerySet[Role]:
    return Role.objects.filter(name__in=settings.INVITATION_GRANTABLE_ROLES)


def _check_role(role: Role) -> None:
    if role.name not in settings.INVITATION_GRANTABLE_ROLES:
        grantable = ", ".join(settings.INVITATION_GRANTABLE_ROLES)
        raise InvitationError(
            f"The role {role.name!r} cannot be granted by invitation; choose one of: {grantable}.",
            code="role_not_grantable",
        )


def may_invite(user: Any) -> bool:
    """Only active staff with the add-invitation permission invite, resend or revoke."""
    return bool(user and user.is_active and user.is_staff and user.has_perm(INVITE_PERMISSION))


def _check_actor(actor: AbstractBaseUser | None) -> None:
    # None is the system itself (a management command run by an operator, the seed's model method).
    if actor is not None and not may_invite(actor):
        raise InvitationError("You do not have permission to manage invitations.", code="permission_denied")


def _actor_label(actor: Any) -> str:
    return str(getattr(actor, "email", "")) if actor is not None else ""


def _record(invitation: ProviderInvitation, action: str, *, actor: Any = None, detail: str = "") -> InvitationEvent:
    return InvitationEvent.objects.create(
        invitation=invitation, action=action, actor=actor, actor_label=_actor_label(actor), detail=detail
    )


def _expire(invitations: QuerySet[ProviderInvitation], *, detail: str) -> int:
    """Write `expired` on the pending rows of `invitations` whose time ran out; cancel their unsent emails."""
    expired = 0
    due = invitations.filter(status=Status.PENDING, expires_at__lte=timezone.now())
    for invitation in due.select_for_update():
        invitation.status = Status.EXPIRED
        invitation.save(update_fields=["status"])
        cancel_pending(emails_for(invitation))
        _record(invitation, Action.EXPIRED, detail=detail)
        logger.info("invitation %s expired (noticed by %s)", invitation.pk, detail)
        expired += 1
    return expired


def accounts_at(email: str) -> QuerySet[User]:
    """Accounts at a normalised address, also one stored with its domain in Unicode (the admin's user form)."""
    local, _, domain = email.rpartition("@")
    same_address = Q(email__iexact=email)
    with contextlib.suppress(idna.IDNAError, UnicodeError):  # not an IDNA domain: the ASCII form is the only one
        same_address |= Q(email__iexact=f"{local}@{idna.decode(domain)}")
    return User.objects.filter(same_address)


def _refuse_existing_account(email: str) -> None:
    existing = accounts_at(email).first()
    if existing is not None:
        if existing.is_active:
            raise InvitationError(
                "An account with this email address already exists; nothing was sent.", code="account_exists"
            )
        raise InvitationError(
            "A deactivated account with this email address exists; reactivate it instead. Nothing was sent.",
            code="account_inactive",
        )


def check_invitable(email: str) -> None:
    """Refuse an address that already has an account or a live pending invitation."""
    _refuse_existing_account(email)
    with transaction.atomic():
        _expire(ProviderInvitation.objects.filter(email__iexact=email), detail="new invitation for the address")
    if ProviderInvitation.objects.filter(email__iexact=email, status=Status.PENDING).exists():
        raise InvitationError(
            "A pending invitation for this address already exists; resend or revoke it instead.",
            code="already_invited",
        )


def _issue_token(invitation: ProviderInvitation) -> str:
    token = invitation_token_generator.make_token()
    invitation.token_digest = invitation_token_generator.digest(token)
    invitation.expires_at = timezone.now() + timedelta(days=settings.INVITATION_EXPIRY_DAYS)
    return token


@sensitive_variables("token", "context")
def _enqueue_invitation_email(invitation: ProviderInvitation, token: str) -> OutboundEmail:
    context = {
        "accept_url": f"{settings.BASE_URL}/invitations/accept/{token}/",
        "expiry_days": settings.INVITATION_EXPIRY_DAYS,
        "role": invitation.role.name,
    }
    invitation.send_count += 1
    invitation.last_sent_requested_at = timezone.now()
    invitation.email_sent, invitation.email_sent_at = False, None
    invitation.email_failed_at, invitation.email_error = None, ""
    invitation.save(
        update_fields=[
            "send_count",
            "last_sent_requested_at",
            "email_sent",
            "email_sent_at",
            "email_failed_at",
            "email_error",
        ]
    )
    return enqueue_email(
        to=[invitation.email],
        subject=render_to_string("accounts/email/invitation_subject.txt", context).strip(),
        body=render_to_string("accounts/email/invitation.txt", context),
        html_body=render_to_string("accounts/email/invitation.html", context),
        dedupe_key=f"provider-invitation:{invitation.pk}:{invitation.send_count}",
        related_object=invitation,
    )


@sensitive_variables("token")
def invitation_create(*, email: str, role: Role, invited_by: AbstractBaseUser | None) -> ProviderInvitation:
    """Create a pending invitation and queue its email in the same transaction.

    The returned instance carries the raw token as `.token` (never stored) for the caller.
    """
    _check_actor(invited_by)
    email = normalize_invitation_email(email)
    _check_role(role)
    with transaction.atomic():
        check_invitable(email)
        invitation = ProviderInvitation(
            email=email,
            role=role,
            invited_by=invited_by,  # type: ignore[misc]
            invited_by_email=_actor_label(invited_by),
        )
        token = _issue_token(invitation)
        try:
            with transaction.atomic():
                invitation.save()
        except IntegrityError:
            # Another request invited the same address a moment ago; the partial unique index decided.
            raise InvitationError(
                "A pending invitation for this address already exists; resend or revoke it instead.",
                code="already_invited",
            ) from None
        _record(invitation, Action.CREATED, actor=invited_by, detail=f"role {role.name}")
        _enqueue_invitation_email(invitation, token)
    logger.info("invitation %s created for %s (role %s)", invitation.pk, mask_address(email), role.name)
    invitation.token = token  # type: ignore[attr-defined]
    return invitation


def _locked(invitation: ProviderInvitation | int) -> ProviderInvitation:
    pk = invitation if isinstance(invitation, int) else invitation.pk
    return ProviderInvitation.objects.select_for_update().select_related("role").get(pk=pk)


def _check_pending(invitation: ProviderInvitation, verb: str) -> None:
    if invitation.status != Status.PENDING:
        raise InvitationError(
            f"Only pending invitations can be {verb}; this one is {invitation.status}.", code="not_pending"
        )


def _notice_expiry(invitation: ProviderInvitation, *, detail: str) -> None:
    """Write `expired` if the invitation's time ran out, and refuse; committed before the error."""
    with transaction.atomic():
        expired = _expire(ProviderInvitation.objects.filter(pk=invitation.pk), detail=detail)
    if expired:
        raise InvitationError("This invitation has expired; invite the address again instead.", code="expired")


def _check_resend_allowed(invitation: ProviderInvitation) -> None:
    now = timezone.now()
    min_interval = settings.INVITATION_RESEND_MIN_INTERVAL_SECONDS
    if invitation.last_sent_requested_at is not None:
        waited = (now - invitation.last_sent_requested_at).total_seconds()
        if waited < min_interval:
            raise InvitationError(
                f"This invitation was sent {int(waited)} seconds ago; wait {int(min_interval - waited) + 1} "
                "more seconds before resending it.",
                code="resend_too_soon",
            )
    max_per_day = settings.INVITATION_RESEND_MAX_PER_DAY
    resends = invitation.events.filter(action=Action.RESENT, at__gt=now - timedelta(days=1)).count()
    if resends >= max_per_day:
        raise InvitationError(
            f"This invitation was already resent {resends} times in the last 24 hours (the limit is "
            f"{max_per_day}); try again later or check the address.",
            code="resend_limit",
        )


@sensitive_variables("token")
def invitation_resend(*, invitation: ProviderInvitation, actor: AbstractBaseUser | None) -> ProviderInvitation:
    """Rotate the token and expiry, cancel the unsent email and queue a new one.

    The old link stops working at once. The returned instance carries the new `.token`.
    Refused while the invitation is not pending, and when the rate limit is reached.
    """
    _check_actor(actor)
    _notice_expiry(invitation, detail="resend attempt")
    with transaction.atomic():
        invitation = _locked(invitation)
        _check_pending(invitation, "resent")
        _refuse_existing_account(invitation.email)  # an admin may have created the account by hand since
        _check_resend_allowed(invitation)
        cancelled = cancel_pending(emails_for(invitation))
        token = _issue_token(invitation)
        invitation.save(update_fields=["token_digest", "expires_at"])
        _record(invitation, Action.RESENT, actor=actor, detail=f"{cancelled} unsent email(s) cancelled")
        _enqueue_invitation_email(invitation, token)
    logger.info("invitation %s resent (send %s)", invitation.pk, invitation.send_count)
    invitation.token = token  # type: ignore[attr-defined]
    return invitation


def invitation_revoke(*, invitation: ProviderInvitation, actor: AbstractBaseUser | None) -> ProviderInvitation:
    """Revoke a pending invitation and cancel its unsent email."""
    _check_actor(actor)
    _notice_expiry(invitation, detail="revoke attempt")
    with transaction.atomic():
        invitation = _locked(invitation)
        _check_pending(invitation, "revoked")
        invitation.status = Status.REVOKED
        invitation.save(update_fields=["status"])
        cancelled = cancel_pending(emails_for(invitation))
        _record(invitation, Action.REVOKED, actor=actor, detail=f"{cancelled} unsent email(s) cancelled")
    logger.info("invitation %s revoked", invitation.pk)
    return invitation


def invitation_expire_due() -> int:
    """Write `expired` on every pending invitation whose time ran out (the periodic sweep)."""
    total = 0
    while True:
        with transaction.atomic():
            ids = list(
                ProviderInvitation.objects.filter(status=Status.PENDING, expires_at__lte=timezone.now())
                .order_by("pk")
                .values_list("pk", flat=True)[:500]
            )
            if not ids:
                return total
            total += _expire(ProviderInvitation.objects.filter(pk__in=ids), detail="periodic sweep")


def _refusal(invitation: ProviderInvitation, token_digest: str | None = None) -> InvalidInvitationLink | None:
    if invitation.status == Status.ACCEPTED:
        return _refuse_link("used")
    if invitation.status == Status.REVOKED:
        return _refuse_link("revoked")
    if invitation.is_expired:
        return _refuse_link("expired")
    if invitation.role.name not in settings.INVITATION_GRANTABLE_ROLES:  # taken out of the setting since
        return _refuse_link("role_withdrawn")
    if token_digest is not None and not hmac.compare_digest(token_digest, invitation.token_digest):
        return _refuse_link("replaced")
    return None


@sensitive_variables("token")
def invitation_for_token(token: str) -> ProviderInvitation:
    """Find the pending invitation for a link's token; changes nothing."""
    if not isinstance(token, str) or not invitation_token_generator.is_well_formed(token):
        raise _refuse_link("malformed")
    invitation = (
        ProviderInvitation.objects.select_related("role")
        .filter(token_digest=invitation_token_generator.digest(token))
        .first()
    )
    if invitation is None:
        raise _refuse_link("unknown")
    if refusal := _refusal(invitation):
        raise refusal
    return invitation


def invitation_check(*, invitation_id: int, token_digest: str | None = None) -> ProviderInvitation:
    """Load an invitation by id (kept in the session) and check it can still be accepted; changes nothing.

    With `token_digest` (also kept in the session), a link replaced by a resend is refused too.
    """
    invitation = ProviderInvitation.objects.select_related("role").filter(pk=invitation_id).first()
    if invitation is None:
        raise _refuse_link("unknown")
    if refusal := _refusal(invitation, token_digest):
        raise refusal
    return invitation


@sensitive_variables("password")
def invitation_accept(*, invitation_id: int, full_name: str, password: str, token_digest: str | None = None) -> User:
    """Create the invited account with the invitation's role, once.

    The invitation row stays locked from the check to the write, so two submissions of the same
    link at the same moment create one account; the other is refused as used. A refusal is
    recorded (and an expiry written) before the error is raised.
    """
    user: User | None = None
    with transaction.atomic():
        invitation = _locked(invitation_id)
        refusal = _refusal(invitation, token_digest)
        if refusal is None and accounts_at(invitation.email).exists():
            refusal = _refuse_link("account_exists")
        if refusal is None:
            try:
                with transaction.atomic():
                    user = User.objects.create_user(
                        invitation.email, password, full_name=full_name.strip(), role=invitation.role
                    )
            except IntegrityError:
                refusal = _refuse_link("account_exists")
        if refusal is not None or user is None:
            refusal = refusal or _refuse_link("unknown")
            _note_refused_accept(invitation, refusal)
        else:
            invitation.status = Status.ACCEPTED
            invitation.accepted_at = timezone.now()
            invitation.accepted_user = user
            invitation.save(update_fields=["status", "accepted_at", "accepted_user"])
            cancel_pending(emails_for(invitation))
            _record(invitation, Action.ACCEPTED, actor=user)
            _retire_others(invitation, user)
    if refusal is not None or user is None:
        raise refusal or _refuse_link("unknown")
    logger.info("invitation %s accepted; user %s created", invitation_id, user.pk)
    return user


def _note_refused_accept(invitation: ProviderInvitation, refusal: InvalidInvitationLink) -> None:
    if refusal.code == "expired":
        _expire(ProviderInvitation.objects.filter(pk=invitation.pk), detail="accept attempt")
    _record(invitation, Action.ACCEPT_REFUSED, detail=refusal.code)
    logger.info("invitation %s: accept refused (%s)", invitation.pk, refusal.code)


def invitation_refuse_accept(*, invitation_id: int, token_digest: str | None = None) -> InvalidInvitationLink | None:
    """Record a submitted accept form that cannot be used (and write `expired` if that is why).

    Return the refusal, or None if the invitation can in fact still be accepted.
    """
    with transaction.atomic():
        invitation = ProviderInvitation.objects.select_for_update().filter(pk=invitation_id).first()
        if invitation is None:
            return _refuse_link("unknown")
        refusal = _refusal(invitation, token_digest)
        if refusal is not None:
            _note_refused_accept(invitation, refusal)
    return refusal


def _retire_others(accepted: ProviderInvitation, user: User) -> None:
    """Revoke any other pending invitation for the accepted address, and cancel its unsent emails."""
    others = ProviderInvitation.objects.filter(email__iexact=accepted.email, status=Status.PENDING).exclude(
        pk=accepted.pk
    )
    for other in others.select_for_update():
        other.status = Status.REVOKED
        other.save(update_fields=["status"])
        cancel_pending(emails_for(other))
        _record(other, Action.REVOKED, actor=user, detail=f"retired: invitation #{accepted.pk} was accepted")


def invitation_record_email_outcome(*, email: OutboundEmail, sent: bool) -> None:
    """Note the outbox's final word on an invitation email: audit it, and show a failure in the list.

    Runs inside the outbox's recording transaction, once per message, so it costs two statements
    (an UPDATE and the audit INSERT) whenever it can. Only the invitation's latest email updates
    its delivery fields (an earlier one was superseded by a resend), and an accepted invitation's
    fields stay as they were.
    """
    if sent:
        changes: dict[str, Any] = dict(
            email_sent=True, email_sent_at=email.sent_at, email_failed_at=None, email_error=""
        )
        action, detail = Action.EMAIL_SENT, f"outbound email #{email.pk}"
    else:
        changes = dict(email_sent=False, email_failed_at=timezone.now(), email_error=email.last_error or "failed")
        action, detail = Action.EMAIL_FAILED, f"outbound email #{email.pk}: {email.last_error}"
    invitation = ProviderInvitation.objects.filter(pk=email.related_object_id)
    # The latest email is the one with no later email queued for the same invitation.
    later_email = OutboundEmail.objects.filter(
        related_content_type_id=email.related_content_type_id,
        related_object_id=email.related_object_id,
        pk__gt=email.pk,
    )
    updated = invitation.filter(~Exists(later_email)).update_unaccepted(**changes)
    if not updated and not invitation.exists():
        return  # the invitation is gone: nothing to audit
    InvitationEvent.objects.create(invitation_id=int(email.related_object_id), action=action, detail=detail)
