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


def test_invite_provider__existing_account_is_refused_with_a_clear_message(provider_role, admin_user):
    with pytest.raises(CommandError, match="An account with this email address already exists; nothing was sent"):
        call_command("invite_provider", "ADMIN@example.com")
    assert not OutboundEmail.objects.exists()


def test_invite_provider__role_name_is_matched_case_insensitively(provider_role):
    call_command("invite_provider", "doctor@example.com", "--role", "provider")
    assert ProviderInvitation.objects.get().role == provider_role


def test_invite_provider__invited_by_needs_the_add_invitation_permission(provider_role, admin_user):
    from django.contrib.auth.models import Permission

    from accounts.models import User

    staff = User.objects.create_user("staff@example.com", "x-long-passphrase-1", is_staff=True)
    with pytest.raises(CommandError, match="permission to add invitations"):
        call_command("invite_provider", "doctor@example.com", "--invited-by", "staff@example.com")
    staff.user_permissions.add(Permission.objects.get(codename="add_providerinvitation"))
    call_command("invite_provider", "doctor@example.com", "--invited-by", "STAFF@example.com")
    assert ProviderInvitation.objects.get().invited_by == staff


def test_expire_invitations__reports_how_many_it_expired(provider_role, capsys):
    from datetime import timedelta

    from django.utils import timezone
    from freezegun import freeze_time

    call_command("invite_provider", "doctor@example.com")
    call_command("expire_invitations")
    with freeze_time(timezone.now() + timedelta(days=8)):
        call_command("expire_invitations")
    out = capsys.readouterr().out
    assert "Expired 0 invitation(s)." in out and "Expired 1 invitation(s)." in out
    assert ProviderInvitation.objects.get().status == ProviderInvitation.Status.EXPIRED


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_invite_provider__refusal_exits_non_zero_with_the_message_on_stderr(provider_role, settings):
    """As an operator runs it: a real process, its exit status and its stderr."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        db = settings.DATABASES["default"]
        user = f"{db['USER']}:{db['PASSWORD']}" if db.get("PASSWORD") else db["USER"]
        env["DATABASE_URL"] = f"postgres://{user}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"
    else:
        pytest.skip("a subprocess cannot share the in-memory SQLite test database")
    command = [sys.executable, "manage.py", "invite_provider"]
    refused = subprocess.run(
        [*command, "doctor@example.com\r\nBcc: victim@example.com"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0
    assert "cannot contain line breaks" in refused.stderr
    assert not ProviderInvitation.objects.exists()
    done = subprocess.run([*command, "Doctor@Example.com"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert ProviderInvitation.objects.get().email == "doctor@example.com"
