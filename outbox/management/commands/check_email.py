from typing import Any

from django.core.management.base import BaseCommand, CommandError

from outbox.diagnostics import ProbeFailed, Step, describe_settings, probe


class Command(BaseCommand):
    help = (
        "Check the email settings against the real server: connect, STARTTLS or TLS, AUTH, NOOP. "
        "Prints each step and the server's replies; sends nothing. Exits 1 with a hint on failure."
    )
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"Email settings: {describe_settings()}")

        def report(step: Step) -> None:
            mark = self.style.SUCCESS("[ok]  ") if step.ok else self.style.ERROR("[FAIL]")
            self.stdout.write(f"{mark} {step.name}: {step.detail}")

        try:
            probe(report)
        except ProbeFailed as failure:
            raise CommandError(
                f"cannot send email: {failure.step} failed: {failure.detail}\nHint: {failure.hint}", returncode=1
            ) from None
        self.stdout.write(self.style.SUCCESS("Every step passed; nothing was sent."))
