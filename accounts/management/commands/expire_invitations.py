from typing import Any

from django.core.management.base import BaseCommand

from accounts.services import invitation_expire_due


class Command(BaseCommand):
    help = (
        "Mark pending invitations whose time ran out as expired and cancel their unsent emails. "
        "Run it periodically (cron); accept attempts and new invitations also notice expiry on their own."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        count = invitation_expire_due()
        self.stdout.write(f"Expired {count} invitation(s).")
