import os
import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.models import User


class Command(BaseCommand):
    help = (
        "Create the development administrator once (DEMO_ADMIN_EMAIL / DEMO_ADMIN_PASSWORD, "
        "or a generated password printed once). Refuses to run with DEBUG off."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("create_demo_admin is for development only (DEBUG is off); use createsuperuser.")
        email = os.environ.get("DEMO_ADMIN_EMAIL", "admin@example.com").strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            self.stdout.write(
                f"Demo administrator {email} already exists (its password was printed when it was made; "
                f"to set a new one: python manage.py changepassword {email})."
            )
            return
        password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser(email, password, full_name="Demo Administrator")
        shown = "(from DEMO_ADMIN_PASSWORD)" if os.environ.get("DEMO_ADMIN_PASSWORD") else password
        self.stdout.write(self.style.SUCCESS(f"Demo administrator created: {email} / {shown}"))
        self.stdout.write(f"Sign in at {settings.BASE_URL}/admin/ - this password is shown only once.")
