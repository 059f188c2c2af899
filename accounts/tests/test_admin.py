"""The invitation admin: who may invite, resend and revoke; what the list shows; the read-only trail."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.utils import timezone
from freezegun import freeze_time

from accounts.models import InvitationEvent, ProviderInvitation, User
from accounts.services import invitation_accept, invitation_create
from outbox.models import OutboundEmail

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/accounts/providerinvitation/"
ADD = f"{CHANGELIST}add/"
PASSWORD = "correct-horse-battery-staple"
Status = ProviderInvitation.Status


def staff(email, *codenames):
    user = User.objects.create_user(email, PASSWORD, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def rows():
    return ProviderInvitation.objects.count(), OutboundEmail.objects.count(), InvitationEvent.objects.count()


def run_action(client, action, invitations):
    return client.post(CHANGELIST, {"action": action, "_selected_action": [i.pk for i in invitations]}, follow=True)


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def invitation(provider_role, admin_user):
    return invitation_create(email="provider@example.com", role=provider_role, invited_by=admin_user)


# --- permissions -----------------------------------------------------------------------------------------


def test_staff_without_add_permission__cannot_invite_resend_or_revoke(client, invitation, provider_role, settings):
    settings.INVITATION_RESEND_MIN_INTERVAL_SECONDS = 0
    client.force_login(staff("viewer@example.com", "view_providerinvitation"))
    before = rows()

    assert client.get(CHANGELIST).status_code == 200  # may look
    assert client.get(ADD).status_code == 403
    assert client.post(ADD, {"email": "new@example.com", "role": provider_role.pk}).status_code == 403
    page = client.get(CHANGELIST)
    assert b'value="resend"' not in page.content and b'value="revoke"' not in page.content
    for action in ("resend", "revoke"):
        run_action(client, action, [invitation])

    assert rows() == before
    invitation.refresh_from_db()
    assert invitation.status == Status.PENDING and invitation.send_count == 1


def test_staff_without_any_invitation_permission__sees_nothing(client, invitation):
    client.force_login(staff("nobody@example.com"))
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(ADD).status_code == 403


def test_staff_with_add_permission__invites_resends_and_revokes(client, provider_role, settings):
    settings.INVITATION_RESEND_MIN_INTERVAL_SECONDS = 0
    inviter = staff("inviter@example.com", "add_providerinvitation", "view_providerinvitation")
    client.force_login(inviter)

    response = client.post(ADD, {"email": " New.Doctor@Example.com ", "role": provider_role.pk}, follow=True)

    invitation = ProviderInvitation.objects.get()
    assert response.status_code == 200
    assert (invitation.email, invitation.invited_by, invitation.status) == (
        "new.doctor@example.com",
        inviter,
        "pending",
    )
    assert OutboundEmail.objects.count() == 1
    assert "Resent 1 invitation(s)." in messages_of(run_action(client, "resend", [invitation]))
    assert OutboundEmail.objects.count() == 2
    assert "Revoked 1 invitation(s)." in messages_of(run_action(client, "revoke", [invitation]))
    invitation.refresh_from_db()
    assert invitation.status == Status.REVOKED
    assert list(invitation.events.values_list("action", "actor")) == [
        ("created", inviter.pk),
        ("resent", inviter.pk),
        ("revoked", inviter.pk),
    ]


def test_inactive_staff_with_add_permission__cannot_invite(provider_role):
    inviter = staff("inviter@example.com", "add_providerinvitation")
    inviter.is_active = False
    inviter.save()
    with pytest.raises(Exception, match="permission"):
        invitation_create(email="x@example.com", role=provider_role, invited_by=inviter)


# --- clear refusals ----------------------------------------------------------------------------------------


def test_add__existing_account_is_refused_with_a_clear_message_and_nothing_sent(client, admin_user, provider_role):
    client.force_login(admin_user)
    before = rows()
    response = client.post(ADD, {"email": "ADMIN@example.com", "role": provider_role.pk})
    assert (
        "An account with this email address already exists; nothing was sent."
        in response.context["adminform"].form.errors["email"]
    )
    assert rows() == before


def test_add__mixed_case_duplicate_of_a_pending_invitation_is_refused(client, admin_user, invitation, provider_role):
    client.force_login(admin_user)
    before = rows()
    response = client.post(ADD, {"email": "Provider@EXAMPLE.com", "role": provider_role.pk})
    assert "A pending invitation for this address already exists" in " ".join(
        response.context["adminform"].form.errors["email"]
    )
    assert rows() == before


def test_resend_action__rate_limit_is_reported_to_the_admin(client, admin_user, invitation, settings):
    settings.INVITATION_RESEND_MIN_INTERVAL_SECONDS = 60
    client.force_login(admin_user)
    response = run_action(client, "resend", [invitation])
    (message,) = messages_of(response)
    assert "provider@example.com: This invitation was sent 0 seconds ago; wait" in message
    assert OutboundEmail.objects.count() == 1


def test_revoke_action__on_an_accepted_invitation_is_refused_with_a_message(client, admin_user, invitation):
    invitation_accept(invitation_id=invitation.pk, full_name="Dr. Ada", password="a-long-unusual-passphrase-42")
    client.force_login(admin_user)
    (message,) = messages_of(run_action(client, "revoke", [invitation]))
    assert "Only pending invitations can be revoked; this one is accepted." in message
    invitation.refresh_from_db()
    assert invitation.status == Status.ACCEPTED


# --- accepted invitations are never edited or deleted -------------------------------------------------


def test_accepted_invitation__admin_can_view_but_not_change_or_delete_it(client, admin_user, invitation):
    invitation_accept(invitation_id=invitation.pk, full_name="Dr. Ada", password="a-long-unusual-passphrase-42")
    client.force_login(admin_user)
    url = f"{CHANGELIST}{invitation.pk}/change/"
    before = list(ProviderInvitation.objects.values())

    page = client.get(url)
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert client.post(url, {"email": "other@example.com"}).status_code == 403
    assert client.get(f"{CHANGELIST}{invitation.pk}/delete/").status_code == 403
    assert client.post(f"{CHANGELIST}{invitation.pk}/delete/", {"post": "yes"}).status_code == 403
    assert b"delete_selected" not in client.get(CHANGELIST).content
    assert list(ProviderInvitation.objects.values()) == before


# --- a failed email shows in the list, with the reason -------------------------------------------------


def test_changelist__failed_email_shows_with_the_server_reason(client, admin_user, invitation, smtp_server, settings):
    settings.INVITATION_RESEND_MIN_INTERVAL_SECONDS = 0
    smtp_server.set_mode("550")
    call_command("dispatch_outbox", "--once")
    client.force_login(admin_user)

    page = client.get(CHANGELIST)

    assert b"FAILED: " in page.content and b"550" in page.content and b"Mailbox unavailable" in page.content
    invitation.refresh_from_db()
    assert invitation.email_failed_at is not None and "550" in invitation.email_error
    failed = client.get(f"{CHANGELIST}?email_failed_at__isnull=False")
    assert b"provider@example.com" in failed.content
    event = InvitationEvent.objects.get(action=InvitationEvent.Action.EMAIL_FAILED)
    assert "550" in event.detail

    # The inviter fixes things and resends: the list shows the new email's state, then its delivery.
    smtp_server.set_mode("accept")
    run_action(client, "resend", [invitation])
    assert b"FAILED" not in client.get(CHANGELIST).content
    call_command("dispatch_outbox", "--once")
    invitation.refresh_from_db()
    assert invitation.email_sent and not invitation.email_error
    assert b"sent " in client.get(CHANGELIST).content
    assert InvitationEvent.objects.filter(action=InvitationEvent.Action.EMAIL_SENT).count() == 1


def test_changelist__failure_of_a_superseded_email_does_not_mark_the_current_one(invitation, settings):
    """Only the invitation's latest email speaks for it; an older one failing later changes nothing."""
    from outbox.services import mark_failed

    settings.INVITATION_RESEND_MIN_INTERVAL_SECONDS = 0
    first = OutboundEmail.objects.get()
    OutboundEmail.objects.filter(pk=first.pk).update(
        status=OutboundEmail.Status.SENDING, claimed_by="old", lease_expires_at=timezone.now()
    )  # the first email was already being sent when the resend happened
    invitation.resend_invitation()
    first.refresh_from_db()
    mark_failed(email=first, claim="old", attempts=[], error="550 too late")
    invitation.refresh_from_db()
    assert invitation.email_error == ""
    assert InvitationEvent.objects.filter(action=InvitationEvent.Action.EMAIL_FAILED).count() == 1


def test_changelist__query_count_does_not_grow_with_the_number_of_invitations(
    client, admin_user, provider_role, django_assert_max_num_queries
):
    client.force_login(admin_user)
    for i in range(3):
        invitation_create(email=f"p{i}@example.com", role=provider_role, invited_by=admin_user)
    with django_assert_max_num_queries(12) as few:
        client.get(CHANGELIST)
    for i in range(3, 30):
        invitation_create(email=f"p{i}@example.com", role=provider_role, invited_by=admin_user)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(CHANGELIST)


# --- the audit trail: visible, read only ---------------------------------------------------------------


def test_audit_trail__is_visible_and_read_only_in_the_admin(client, admin_user, invitation):
    client.force_login(admin_user)
    event = InvitationEvent.objects.get()
    base = "/admin/accounts/invitationevent/"

    assert b"Created" in client.get(base).content
    assert client.get(f"{base}{event.pk}/change/").status_code == 200
    assert client.get(f"{base}add/").status_code == 403
    assert client.post(f"{base}{event.pk}/change/", {"detail": "edited"}).status_code == 403
    assert client.post(f"{base}{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert b"delete_selected" not in client.get(base).content
    event.refresh_from_db()
    assert event.detail == "role Provider"
    assert b"Created" in client.get(f"{CHANGELIST}{invitation.pk}/change/").content  # inline on the invitation


def test_audit_trail__records_every_step_with_actor_and_time(client, admin_user, invitation, settings):
    settings.INVITATION_RESEND_MIN_INTERVAL_SECONDS = 0
    client.force_login(admin_user)
    run_action(client, "resend", [invitation])
    call_command("dispatch_outbox", "--once")
    provider = invitation_accept(
        invitation_id=invitation.pk, full_name="Dr. Ada", password="a-long-unusual-passphrase-42"
    )
    with freeze_time(timezone.now() + timedelta(minutes=1)):
        run_action(client, "revoke", [invitation])  # refused: it was accepted; no event
    events = list(invitation.events.order_by("at", "id"))
    assert [e.action for e in events] == ["created", "resent", "email_sent", "accepted"]
    assert [e.actor_id for e in events] == [admin_user.pk, admin_user.pk, None, provider.pk]
    assert [e.actor_label for e in events] == ["admin@example.com", "admin@example.com", "", "provider@example.com"]
    assert all(e.at is not None and e.invitation_id == invitation.pk for e in events)
