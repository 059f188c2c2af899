"""The invitation lifecycle rules, through the services: states, expiry, uniqueness, resend, revoke."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.utils import timezone
from freezegun import freeze_time

from accounts.models import InvitationEditRefused, InvitationEvent, ProviderInvitation, Role, User
from accounts.services import (
    InvalidInvitationLink,
    InvitationError,
    invitation_accept,
    invitation_create,
    invitation_expire_due,
    invitation_for_token,
    invitation_resend,
    invitation_revoke,
)
from outbox.models import OutboundEmail

pytestmark = pytest.mark.django_db

Status = ProviderInvitation.Status
Action = InvitationEvent.Action
PASSWORD = "a-long-unusual-passphrase-42"
PAST_EXPIRY = timedelta(days=7, seconds=1)


@pytest.fixture(autouse=True)
def no_resend_interval(settings):
    settings.INVITATION_RESEND_MIN_INTERVAL_SECONDS = 0
    settings.INVITATION_RESEND_MAX_PER_DAY = 100


def invite(email="provider@example.com", *, role=None, by=None):
    return invitation_create(email=email, role=role or Role.objects.get_or_create(name="Provider")[0], invited_by=by)


def accept(invitation, **kwargs):
    return invitation_accept(invitation_id=invitation.pk, full_name="Dr. Ada", password=PASSWORD, **kwargs)


def actions(invitation):
    return list(InvitationEvent.objects.filter(invitation=invitation).values_list("action", flat=True))


# --- addresses: normalised, case-insensitive, one pending per address ---------------------------


def test_create__address_is_trimmed_and_lower_cased(provider_role):
    invitation = invite("  Dr.Ada@Example.COM \t")
    assert ProviderInvitation.objects.get().email == "dr.ada@example.com"
    assert OutboundEmail.objects.get().recipients == ["dr.ada@example.com"]
    assert invitation.email == "dr.ada@example.com"


def test_create__mixed_case_duplicate_of_a_pending_invitation_is_refused(provider_role):
    invite("provider@example.com")
    with pytest.raises(InvitationError) as refused:
        invite("PROVIDER@Example.Com")
    assert refused.value.code == "already_invited"
    assert ProviderInvitation.objects.count() == 1
    assert OutboundEmail.objects.count() == 1


def test_one_pending_per_address__enforced_by_the_database_whatever_the_case(provider_role):
    """The partial unique index on lower(email) holds even for writes that skip the service."""
    invite("provider@example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        ProviderInvitation.objects.create(
            email="Provider@EXAMPLE.com", role=provider_role, token_digest="f" * 64, expires_at=timezone.now()
        )


def test_one_pending_per_address__finished_invitations_do_not_count(provider_role):
    for status in (Status.REVOKED, Status.EXPIRED):
        ProviderInvitation.objects.create(
            email="provider@example.com",
            role=provider_role,
            token_digest=status * 8 + "0" * (64 - 8 * len(status)),
            expires_at=timezone.now(),
            status=status,
        )
    invitation = invite("Provider@Example.com")
    assert invitation.status == Status.PENDING


def test_create__idn_domain_is_stored_and_sent_in_ascii_form(provider_role):
    invitation = invite("Dr.Ada@Bücher.Example")
    assert invitation.email == "dr.ada@xn--bcher-kva.example"
    assert OutboundEmail.objects.get().recipients == ["dr.ada@xn--bcher-kva.example"]
    with pytest.raises(InvitationError):  # the Unicode and the ASCII forms are one address
        invite("dr.ada@xn--BCHER-kva.example")


def test_create__address_of_an_active_account_is_refused_and_nothing_is_sent(provider_role):
    User.objects.create_user("Existing@Example.com", PASSWORD)
    with pytest.raises(InvitationError) as refused:
        invite("existing@EXAMPLE.com")
    assert refused.value.code == "account_exists"
    assert "already exists" in refused.value.message
    assert not ProviderInvitation.objects.exists()
    assert not OutboundEmail.objects.exists()


def test_create__address_of_a_deactivated_account_is_refused_with_its_own_message(provider_role):
    User.objects.create_user("gone@example.com", PASSWORD, is_active=False)
    with pytest.raises(InvitationError) as refused:
        invite("gone@example.com")
    assert refused.value.code == "account_inactive"
    assert "reactivate" in refused.value.message
    assert not OutboundEmail.objects.exists()


def test_create__role_not_in_the_grantable_setting_is_refused(provider_role, settings):
    admin_role = Role.objects.create(name="Administrator")
    with pytest.raises(InvitationError) as refused:
        invite(role=admin_role)
    assert refused.value.code == "role_not_grantable"
    settings.INVITATION_GRANTABLE_ROLES = ["Provider", "Administrator"]
    assert invite(role=admin_role).role == admin_role


def test_create__records_the_inviter_and_an_audit_event(provider_role, admin_user):
    invitation = invite(by=admin_user)
    event = InvitationEvent.objects.get(invitation=invitation)
    assert (event.action, event.actor, event.actor_label) == (Action.CREATED, admin_user, "admin@example.com")
    assert invitation.invited_by_email == "admin@example.com"


# --- expiry: written when noticed -------------------------------------------------------------------


def test_reinvite_after_expiry__old_one_is_marked_expired_and_a_new_one_is_created(provider_role):
    old = invite()
    with freeze_time(timezone.now() + PAST_EXPIRY):
        new = invite("PROVIDER@example.com")
    old.refresh_from_db()
    assert old.status == Status.EXPIRED
    assert new.status == Status.PENDING and new.pk != old.pk
    assert Action.EXPIRED in actions(old)


def test_expiry__noticed_by_an_accept_attempt_is_written_and_audited(provider_role):
    invitation = invite()
    with freeze_time(timezone.now() + PAST_EXPIRY), pytest.raises(InvalidInvitationLink) as refused:
        accept(invitation)
    assert refused.value.code == "expired"
    invitation.refresh_from_db()
    assert invitation.status == Status.EXPIRED
    assert actions(invitation)[-2:] == [Action.EXPIRED, Action.ACCEPT_REFUSED]
    assert InvitationEvent.objects.get(action=Action.ACCEPT_REFUSED).detail == "expired"
    assert not User.objects.exists()


def test_expiry__the_sweep_marks_every_due_invitation_and_cancels_unsent_email(provider_role, capsys):
    due = [invite(f"due{i}@example.com") for i in range(3)]
    with freeze_time(timezone.now() + timedelta(days=3)):
        fresh = invite("fresh@example.com")
    with freeze_time(timezone.now() + PAST_EXPIRY):
        call_command("expire_invitations")
        assert invitation_expire_due() == 0  # nothing left to do
    assert "Expired 3 invitation(s)." in capsys.readouterr().out
    assert set(ProviderInvitation.objects.filter(status=Status.EXPIRED)) == set(due)
    fresh.refresh_from_db()
    assert fresh.status == Status.PENDING
    assert OutboundEmail.objects.filter(status=OutboundEmail.Status.CANCELLED).count() == 3
    assert OutboundEmail.objects.filter(status=OutboundEmail.Status.PENDING).count() == 1


def test_expiry__the_link_check_refuses_but_writes_nothing(provider_role):
    """Opening a link is a GET: it reports expiry without writing it (mail scanners open links)."""
    invitation = invite()
    with freeze_time(timezone.now() + PAST_EXPIRY), pytest.raises(InvalidInvitationLink) as refused:
        invitation_for_token(invitation.token)
    assert refused.value.code == "expired"
    invitation.refresh_from_db()
    assert invitation.status == Status.PENDING
    assert actions(invitation) == [Action.CREATED]


# --- resend --------------------------------------------------------------------------------------------


def test_resend__rotates_token_renews_expiry_cancels_the_unsent_email_and_queues_a_new_one(provider_role, admin_user):
    invitation = invite()
    first_email = OutboundEmail.objects.get()
    with freeze_time(timezone.now() + timedelta(days=2)):
        resent = invitation_resend(invitation=invitation, actor=admin_user)
    assert resent.token != invitation.token
    assert resent.expires_at > invitation.expires_at
    first_email.refresh_from_db()
    assert first_email.status == OutboundEmail.Status.CANCELLED
    second = OutboundEmail.objects.exclude(pk=first_email.pk).get()
    assert second.status == OutboundEmail.Status.PENDING
    assert resent.token in second.body_text
    with pytest.raises(InvalidInvitationLink):
        invitation_for_token(invitation.token)
    assert actions(invitation) == [Action.CREATED, Action.RESENT]


def test_resend__too_soon_is_refused_with_a_clear_message(provider_role, settings):
    settings.INVITATION_RESEND_MIN_INTERVAL_SECONDS = 60
    invitation = invite()
    with freeze_time(timezone.now() + timedelta(seconds=20)), pytest.raises(InvitationError) as refused:
        invitation_resend(invitation=invitation, actor=None)
    assert refused.value.code == "resend_too_soon"
    assert "wait" in refused.value.message and "seconds" in refused.value.message
    assert OutboundEmail.objects.count() == 1
    with freeze_time(timezone.now() + timedelta(seconds=61)):
        invitation_resend(invitation=invitation, actor=None)
    assert OutboundEmail.objects.count() == 2


def test_resend__daily_limit_is_refused_then_allowed_again_a_day_later(provider_role, settings):
    settings.INVITATION_RESEND_MAX_PER_DAY = 2
    invitation = invite()
    start = timezone.now()
    for minutes in (1, 2):
        with freeze_time(start + timedelta(minutes=minutes)):
            invitation_resend(invitation=invitation, actor=None)
    with freeze_time(start + timedelta(minutes=3)), pytest.raises(InvitationError) as refused:
        invitation_resend(invitation=invitation, actor=None)
    assert refused.value.code == "resend_limit"
    assert "24 hours" in refused.value.message and "limit is 2" in refused.value.message
    assert OutboundEmail.objects.count() == 3
    with freeze_time(start + timedelta(days=1, minutes=2)):
        invitation_resend(invitation=invitation, actor=None)
    assert OutboundEmail.objects.count() == 4


def test_resend__of_an_expired_invitation_writes_expired_and_is_refused(provider_role):
    invitation = invite()
    with freeze_time(timezone.now() + PAST_EXPIRY), pytest.raises(InvitationError) as refused:
        invitation_resend(invitation=invitation, actor=None)
    assert refused.value.code == "expired"
    invitation.refresh_from_db()
    assert invitation.status == Status.EXPIRED


@pytest.mark.parametrize("status", [Status.REVOKED, Status.ACCEPTED])
def test_resend__only_while_pending(provider_role, status):
    invitation = invite()
    if status == Status.REVOKED:
        invitation_revoke(invitation=invitation, actor=None)
    else:
        accept(invitation)
    with pytest.raises(InvitationError) as refused:
        invitation_resend(invitation=invitation, actor=None)
    assert refused.value.code == "not_pending"
    assert OutboundEmail.objects.count() == 1


# --- revoke --------------------------------------------------------------------------------------------


def test_revoke__pending_invitation_is_revoked_its_unsent_email_cancelled_and_the_link_refused(
    provider_role, admin_user
):
    invitation = invite()
    invitation_revoke(invitation=invitation, actor=admin_user)
    invitation.refresh_from_db()
    assert invitation.status == Status.REVOKED
    assert OutboundEmail.objects.get().status == OutboundEmail.Status.CANCELLED
    with pytest.raises(InvalidInvitationLink) as refused:
        invitation_for_token(invitation.token)
    assert refused.value.code == "revoked"
    event = InvitationEvent.objects.get(action=Action.REVOKED)
    assert event.actor == admin_user


def test_revoke__of_an_accepted_invitation_is_refused_and_changes_nothing(provider_role):
    invitation = invite()
    accept(invitation)
    with pytest.raises(InvitationError) as refused:
        invitation_revoke(invitation=invitation, actor=None)
    assert refused.value.code == "not_pending"
    invitation.refresh_from_db()
    assert invitation.status == Status.ACCEPTED


def test_revoke__twice_is_refused(provider_role):
    invitation = invite()
    invitation_revoke(invitation=invitation, actor=None)
    with pytest.raises(InvitationError, match="revoked"):
        invitation_revoke(invitation=invitation, actor=None)


def test_reinvite_after_revoke__a_new_invitation_is_created(provider_role):
    invitation = invite()
    invitation_revoke(invitation=invitation, actor=None)
    assert invite("Provider@Example.com").status == Status.PENDING


# --- accept --------------------------------------------------------------------------------------------


def test_accept__creates_the_account_with_the_invitation_role_once(provider_role):
    invitation = invite()
    user = accept(invitation)
    assert (user.email, user.role, user.full_name) == ("provider@example.com", provider_role, "Dr. Ada")
    invitation.refresh_from_db()
    assert invitation.status == Status.ACCEPTED and invitation.accepted_user == user
    with pytest.raises(InvalidInvitationLink) as refused:
        accept(invitation)
    assert refused.value.code == "used"
    assert User.objects.filter(email__iexact="provider@example.com").count() == 1
    assert actions(invitation) == [Action.CREATED, Action.ACCEPTED, Action.ACCEPT_REFUSED]
    assert InvitationEvent.objects.get(action=Action.ACCEPTED).actor == user


def test_accept__of_a_revoked_invitation_is_refused_and_audited(provider_role):
    invitation = invite()
    invitation_revoke(invitation=invitation, actor=None)
    with pytest.raises(InvalidInvitationLink) as refused:
        accept(invitation)
    assert refused.value.code == "revoked"
    assert InvitationEvent.objects.get(action=Action.ACCEPT_REFUSED).detail == "revoked"
    assert not User.objects.exists()


def test_accept__with_the_digest_of_a_link_replaced_by_a_resend_is_refused(provider_role):
    invitation = invite()
    old_digest = ProviderInvitation.objects.get().token_digest
    invitation_resend(invitation=invitation, actor=None)
    with pytest.raises(InvalidInvitationLink) as refused:
        accept(invitation, token_digest=old_digest)
    assert refused.value.code == "replaced"
    assert not User.objects.exists()


def test_accept__leaves_no_pending_invitation_or_unsent_email_for_the_address(provider_role):
    """Accepting retires the address's other pending invitations (the one-pending index keeps that to one)."""
    old = invite()
    invitation_revoke(invitation=old, actor=None)
    invitation = invite("Provider@Example.com")
    accept(invitation)
    assert not ProviderInvitation.objects.filter(email__iexact="provider@example.com", status=Status.PENDING).exists()
    assert not OutboundEmail.objects.filter(status=OutboundEmail.Status.PENDING).exists()
    with pytest.raises(InvitationError) as refused:
        invite("provider@example.com")
    assert refused.value.code == "account_exists"


def test_accept__cancels_the_invitation_email_still_waiting_in_the_outbox(provider_role):
    invitation = invite()
    accept(invitation)
    assert OutboundEmail.objects.get().status == OutboundEmail.Status.CANCELLED


def test_accept__refused_when_an_account_was_created_meanwhile(provider_role):
    invitation = invite()
    User.objects.create_user("PROVIDER@example.com", PASSWORD)
    with pytest.raises(InvalidInvitationLink) as refused:
        accept(invitation)
    assert refused.value.code == "account_exists"
    invitation.refresh_from_db()
    assert invitation.status == Status.PENDING


# --- accepted invitations are a record: never edited or deleted ----------------------------------------


def test_accepted_invitation__cannot_be_saved_or_deleted(provider_role):
    invitation = invite()
    accept(invitation)
    stored = ProviderInvitation.objects.get()
    stored.email = "someone.else@example.com"
    with pytest.raises(InvitationEditRefused):
        stored.save()
    with pytest.raises(InvitationEditRefused):
        stored.delete()
    with pytest.raises(InvitationEditRefused):
        ProviderInvitation.objects.all().delete()
    assert ProviderInvitation.objects.get().email == "provider@example.com"


def test_invited_by__the_invitation_survives_the_inviter_deletion(provider_role):
    inviter = User.objects.create_user("inviter@example.com", PASSWORD, is_staff=True)
    inviter.user_permissions.add(Permission.objects.get(codename="add_providerinvitation"))
    inviter = User.objects.get(pk=inviter.pk)
    invitation = invite(by=inviter)
    accept(invitation)
    inviter.delete()
    invitation.refresh_from_db()
    assert invitation.status == Status.ACCEPTED
    assert invitation.invited_by is None
    assert invitation.invited_by_email == "inviter@example.com"
    created = InvitationEvent.objects.get(invitation=invitation, action=Action.CREATED)
    assert created.actor is None and created.actor_label == "inviter@example.com"


# --- permissions in the services ----------------------------------------------------------------------


def test_services__refuse_a_staff_user_without_the_add_invitation_permission(provider_role, admin_user):
    staff = User.objects.create_user("staff@example.com", PASSWORD, is_staff=True)
    invitation = invite(by=admin_user)
    for call in (
        lambda: invite("other@example.com", by=staff),
        lambda: invitation_resend(invitation=invitation, actor=staff),
        lambda: invitation_revoke(invitation=invitation, actor=staff),
    ):
        with pytest.raises(InvitationError) as refused:
            call()
        assert refused.value.code == "permission_denied"
    assert ProviderInvitation.objects.count() == 1
    assert OutboundEmail.objects.count() == 1


def test_accepted_invitation__bulk_update_is_refused(provider_role):
    invitation = invite()
    accept(invitation)
    with pytest.raises(InvitationEditRefused):
        ProviderInvitation.objects.filter(pk=invitation.pk).update(email="someone.else@example.com")


@pytest.mark.postgresql
def test_accepted_invitation__the_database_refuses_raw_edits_and_deletes(provider_role):
    """A trigger backs the model's refusal for writes that bypass the ORM."""
    from django.db import connection

    invitation = invite()
    user = accept(invitation)
    for sql in (
        "UPDATE accounts_providerinvitation SET email = 'x@example.com' WHERE id = %s",
        "UPDATE accounts_providerinvitation SET status = 'revoked' WHERE id = %s",
        "DELETE FROM accounts_providerinvitation WHERE id = %s",
    ):
        with (
            pytest.raises(IntegrityError, match="accepted invitation"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [invitation.pk])
    user.delete()  # the database's own SET NULL is the one change allowed
    invitation.refresh_from_db()
    assert invitation.accepted_user is None and invitation.status == Status.ACCEPTED
