from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Role, User
from accounts.services import InvitationError, invitation_create, may_invite


class Command(BaseCommand):
    help = "Invite a provider by email; the email is queued for `dispatch_outbox`."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--role", default="Provider", help="Role to grant (default: Provider).")
        parser.add_argument("--invited-by", help="Email of the staff user recorded as the inviter.")

    def handle(self, *args: Any, **options: Any) -> None:
        role = Role.objects.filter(name__iexact=(options["role"] or "").strip()).first()
        if role is None or role.name not in settings.INVITATION_GRANTABLE_ROLES:
            grantable = ", ".join(settings.INVITATION_GRANTABLE_ROLES)
            raise CommandError(f"Unknown or non-grantable role {options['role']!r}; choose one of: {grantable}.")
        inviter = None
        if options["invited_by"]:
            inviter = User.objects.filter(email__iexact=options["invited_by"].strip()).first()
            if not may_invite(inviter):
                raise CommandError("--invited-by must name an active staff user with permission to add invitations.")
        try:
            invitation = invitation_create(email=options["email"], role=role, invited_by=inviter)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        except InvitationError as error:
            raise CommandError(error.message) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Invitation {invitation.pk} created for {invitation.email} as {role.name}; "
                f"email queued, expires {invitation.expires_at:%Y-%m-%d %H:%M} UTC."
            )
        )
