import re
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from outbox import services
from outbox.models import OutboundEmail

_RELATIVE = re.compile(r"^(\d+)\s*([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str) -> datetime:
    """Parse `24h`, `30m`, `7d` (ago), or an ISO date or date-time (UTC when no offset is given)."""
    value = value.strip()
    if match := _RELATIVE.match(value):
        try:
            return timezone.now() - timedelta(**{_UNITS[match[2]]: int(match[1])})
        except OverflowError:  # further back than dates go
            raise ValueError(value) from None
    moment = parse_datetime(value)
    if moment is None and (day := parse_date(value)) is not None:
        moment = datetime(day.year, day.month, day.day)
    if moment is None:
        raise ValueError(value)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)


class Command(BaseCommand):
    help = (
        "Put failed outbound emails back to pending, due now, with a fresh attempt budget. "
        "Choose them with --since and/or --id, or --all."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since",
            type=parse_since,
            metavar="WHEN",
            help="Only rows that failed at or after WHEN: 24h, 30m, 7d (ago), or an ISO date or date-time (UTC).",
        )
        parser.add_argument(
            "--id", type=int, action="append", dest="ids", metavar="ID", help="Only this row (repeatable)."
        )
        parser.add_argument("--all", action="store_true", help="Every failed row.")
        parser.add_argument("--dry-run", action="store_true", help="Count the rows; change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        since, ids = options["since"], options["ids"]
        if since is None and not ids and not options["all"]:
            raise CommandError("choose the rows: --since WHEN, --id ID (repeatable), or --all")
        failed = OutboundEmail.objects.filter(status=OutboundEmail.Status.FAILED)
        if since is not None:
            failed = failed.filter(updated_at__gte=since)
        if ids:
            failed = failed.filter(id__in=ids)
            missing = set(ids) - set(failed.values_list("id", flat=True))
            if missing:
                self.stderr.write(f"Not failed (or no such row), left alone: {', '.join(map(str, sorted(missing)))}")
        if options["dry_run"]:
            self.stdout.write(f"Would requeue {failed.count()} failed email(s).")
            return
        count = services.requeue_failed(failed)
        self.stdout.write(f"Requeued {count} failed email(s); the dispatcher sends them now.")
