from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from outbox.management.arguments import days, positive_int
from outbox.retention import blank_old_bodies, purge_finished_emails


class Command(BaseCommand):
    help = (
        "Delete finished outbound emails (sent, failed, cancelled) older than --older-than DAYS, in bounded "
        "batches; pending and sending rows are never touched. Also blanks the bodies of sent and cancelled rows "
        "older than OUTBOX_BODY_RETENTION_DAYS, which hold live invitation links. Run it daily (cron)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=days,
            metavar="DAYS",
            help="Delete finished rows last changed more than DAYS days ago. Without it, only bodies are blanked.",
        )
        parser.add_argument("--batch-size", type=positive_int, default=1000, help="Rows per transaction.")
        parser.add_argument(
            "--body-retention-days",
            type=days,
            default=None,
            metavar="DAYS",
            help="Override OUTBOX_BODY_RETENTION_DAYS for this run.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count what would change; change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = options["dry_run"]
        verb = "would" if dry_run else "did"
        retention = options["body_retention_days"]
        if retention is None:
            retention = settings.OUTBOX_BODY_RETENTION_DAYS
        blanked = blank_old_bodies(retention_days=retention, batch_size=options["batch_size"], dry_run=dry_run)
        self.stdout.write(f"Bodies blanked ({verb}): {blanked} (sent or cancelled more than {retention} day(s) ago)")
        if options["older_than"] is not None:
            deleted = purge_finished_emails(
                older_than=timedelta(days=options["older_than"]), batch_size=options["batch_size"], dry_run=dry_run
            )
            days = options["older_than"]
            self.stdout.write(f"Finished emails deleted ({verb}): {deleted} (last changed more than {days} day(s) ago)")
