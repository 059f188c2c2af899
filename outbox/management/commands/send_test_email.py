import time
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models.functions import Now
from django.utils import timezone

from outbox.dispatcher import Dispatcher, Options
from outbox.management.commands.dispatch_outbox import EXIT_CONFIGURATION_FAULT
from outbox.models import OutboundEmail
from outbox.redaction import mask_address
from outbox.services import enqueue_email

Status = OutboundEmail.Status
EXIT_NOT_DELIVERED = 1


class Command(BaseCommand):
    help = (
        "Queue a test email to ADDRESS through the outbox, like any other email (no invitation is involved). "
        "With --wait, dispatch it now and report what the server said: exit 0 when it was accepted, "
        f"{EXIT_NOT_DELIVERED} when it failed or must wait for a retry, {EXIT_CONFIGURATION_FAULT} on a "
        "configuration fault (run check_email)."
    )
    requires_system_checks = "__all__"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("address", help="Where to send the test email.")
        parser.add_argument(
            "--wait",
            action="store_true",
            help="Dispatch now (one `dispatch_outbox --once` pass, which also sends whatever else is due) "
            "and report the outcome.",
        )
        parser.add_argument(
            "--timeout", type=float, default=60.0, help="With --wait, give up after this many seconds (default 60)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        address = options["address"].strip()
        sent_by = timezone.now().strftime("%Y-%m-%d %H:%M:%S UTC")
        try:
            with transaction.atomic():
                email = enqueue_email(
                    to=[address],
                    subject="Test email from the Medical Document Parser",
                    body=(
                        "This is a test message sent by `manage.py send_test_email` "
                        f"at {sent_by} to check that email from {settings.BASE_URL} reaches you.\n\n"
                        "No action is needed.\n"
                    ),
                    headers={"X-Outbox-Test": "send_test_email"},
                )
        except ValidationError as exc:
            raise CommandError(f"not queued: {'; '.join(exc.messages)}") from None
        masked = mask_address(address)
        self.stdout.write(f"Queued test email #{email.pk} to {masked} (Message-ID {email.message_id}).")
        if not options["wait"]:
            self.stdout.write("The dispatcher sends it; `outbox_status` or the admin shows the outcome.")
            return
        self._wait(email, options["timeout"])

    def _wait(self, email: OutboundEmail, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            email.refresh_from_db()
            if email.status in OutboundEmail.FINISHED:
                break
            due = OutboundEmail.objects.filter(pk=email.pk, status=Status.PENDING, next_attempt_at__lte=Now())
            if due.exists():
                dispatcher = Dispatcher(
                    Options(
                        batch_size=settings.OUTBOX_BATCH_SIZE,
                        workers=1,
                        poll_interval=settings.OUTBOX_POLL_INTERVAL,
                        once=True,
                    )
                )
                dispatcher.run()
                if dispatcher.database_unavailable:
                    raise CommandError("not sent: the database is unreachable", returncode=EXIT_NOT_DELIVERED)
                if dispatcher.fault is not None:
                    raise CommandError(
                        f"not sent: configuration fault: {dispatcher.fault}. Run `manage.py check_email`.",
                        returncode=EXIT_CONFIGURATION_FAULT,
                    )
                continue
            if email.status == Status.PENDING and email.attempts:
                raise CommandError(
                    f"not delivered yet: {email.last_error}; the dispatcher retries at "
                    f"{email.next_attempt_at:%Y-%m-%d %H:%M:%S %Z}.",
                    returncode=EXIT_NOT_DELIVERED,
                )
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"still {email.status} after {timeout:g}s; see `outbox_status`.",
                    returncode=EXIT_NOT_DELIVERED,
                )
            time.sleep(0.2)  # another dispatcher holds it: wait for its outcome
        attempt = email.attempt_log.order_by("-attempted_at", "-id").first()
        took = f" in {attempt.duration_ms} ms" if attempt else ""
        if email.status == Status.SENT:
            self.stdout.write(
                self.style.SUCCESS(f"Sent: the server accepted #{email.pk}{took} after {email.attempts} attempt(s).")
            )
            return
        raise CommandError(
            f"not sent ({email.status}): {email.last_error or 'no reason recorded'}", returncode=EXIT_NOT_DELIVERED
        )
