import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from outbox.management.arguments import non_negative_float
from outbox.monitoring import backlog

EXIT_DATABASE = 1
EXIT_STALE = 2


class Command(BaseCommand):
    help = (
        "Show the outbox backlog: rows per state, due rows, the oldest due row's age, failures in the last 24 hours. "
        f"With --max-age S, exit {EXIT_STALE} when the oldest due row has waited longer than S seconds "
        "(for cron or a probe)."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")
        parser.add_argument(
            "--max-age",
            type=non_negative_float,
            metavar="SECONDS",
            help=f"Exit {EXIT_STALE} when the oldest due message has waited longer than this.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            status = backlog()
        except DatabaseError as exc:
            raise CommandError(f"database unreachable ({type(exc).__name__})", returncode=EXIT_DATABASE) from None
        if options["json"]:
            self.stdout.write(json.dumps(status, sort_keys=True))
        else:
            counts = "  ".join(f"{state}={count}" for state, count in status["counts"].items())
            self.stdout.write(counts)
            self.stdout.write(f"due now: {status['due']}, oldest waiting {status['oldest_due_age_seconds']:.0f}s")
            self.stdout.write(f"failed in the last 24 hours: {status['failed_last_24h']}")
        max_age = options["max_age"]
        if max_age is not None and status["oldest_due_age_seconds"] > max_age:
            raise CommandError(
                f"the oldest due email has waited {status['oldest_due_age_seconds']:.0f}s (more than {max_age:g}s): "
                "is a dispatcher running? (`manage.py dispatch_outbox`; `check_email` tells why sending fails)",
                returncode=EXIT_STALE,
            )
