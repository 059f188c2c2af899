import pytest
from django.core.management import CommandError, call_command

from accounts.models import ProviderInvitation
from outbox.models import OutboundEmail

pytestmark = pytest.mark.django_db


def test_invite_provider__queues_one_invitation_and_email(provider_role, capsys):
    call_command("invite_provider", "  New.Doctor@Example.com ")

    invitation = ProviderInvitation.objects.get()
    assert invitation.email == "new.doctor@example.com"
    assert invitation.role == provider_role
    assert OutboundEmail.objects.get().recipients == ["new.doctor@example.com"]
    assert "created" in capsys.readouterr().out


def test_invite_provider__unknown_role_is_refused(db):
    with pytest.raises(CommandError, match="role"):
        call_command("invite_provider", "doctor@example.com", "--role", "Superuser")
    assert not ProviderInvitation.objects.exists()


def test_invite_provider__bad_address_is_refused(db):
    with pytest.raises(CommandError):
        call_command("invite_provider", "not-an-address")
    assert not ProviderInvitation.objects.exists()
    assert not OutboundEmail.objects.exists()
