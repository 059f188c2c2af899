import logging
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from outbox.dispatcher import Dispatcher, Options
from outbox.management.arguments import positive_float, positive_int

logger = logging.getLogger("outbox.dispatcher")

EXIT_CONFIGURATION_FAULT = 3
EXIT_DATABASE_UNAVAILABLE = 4


class Command(BaseCommand):
    help = (
        "Send queued outbound email. Runs until SIGTERM/SIGINT; with --once, drains what is due and exits. "
        f"Exit status {EXIT_CONFIGURATION_FAULT}: configuration fault (credentials, TLS); "
        f"{EXIT_DATABASE_UNAVAILABLE}: database unreachable."
    )
    # Production start-up refuses bad email configuration (see outbox/checks.py).
    requires_system_checks = "__all__"

    def check(self, *args: Any, **kwargs: Any) -> None:
        # In production the deploy-tagged checks run too, as with `check --deploy`.
        if settings.OUTBOX_DEPLOY_CHECKS_AT_STARTUP and not settings.DEBUG:
            kwargs["include_deployment_checks"] = True
        super().check(*args, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Drain what is due now, then exit.")
        parser.add_argument("--batch-size", type=positive_int, default=settings.OUTBOX_BATCH_SIZE)
        parser.add_argument(
            "--workers", type=positive_int, default=1, help="Sender threads, each with its own SMTP session."
        )
        parser.add_argument("--poll-interval", type=positive_float, default=settings.OUTBOX_POLL_INTERVAL)

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        dispatcher = Dispatcher(
            Options(
                batch_size=options["batch_size"],
                workers=options["workers"],
                poll_interval=options["poll_interval"],
                once=options["once"],
            ),
            stop=stop,
        )

        received: list[str] = []

        def request_stop(signum: int, frame: Any) -> None:
            # Only set flags here: logging from a signal handler can deadlock or recurse.
            received.append(signal.Signals(signum).name)
            stop.set()
            dispatcher.waker.notify()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

        if connection.vendor == "sqlite":
            logger.warning("outbox: SQLite database: run one dispatcher process only (use PostgreSQL to scale out)")
        logger.info(
            "outbox: dispatcher %s starting (workers=%s, batch=%s, backend=%s%s)",
            dispatcher.name,
            options["workers"],
            options["batch_size"],
            settings.EMAIL_BACKEND.rsplit(".", 2)[-2],
            ", once" if options["once"] else "",
        )
        dispatcher.run()
        logger.info(
            "outbox: dispatcher %s stopped%s after sending %s email(s)",
            dispatcher.name,
            f" on {received[0]}" if received else "",
            dispatcher.sent,
        )
        if dispatcher.database_unavailable:
            raise CommandError("database unreachable", returncode=EXIT_DATABASE_UNAVAILABLE)
        if dispatcher.fault is not None:
            raise CommandError(f"configuration fault: {dispatcher.fault}", returncode=EXIT_CONFIGURATION_FAULT)
