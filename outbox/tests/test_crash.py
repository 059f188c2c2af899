"""A dispatcher killed with SIGKILL at any instant loses nothing (DESIGN.md invariants 3 and 4)."""

from collections import Counter

import pytest
from django.db import transaction
from django.db.models.functions import Now

from outbox.models import OutboundEmail

from .processes import Dispatcher, backends, enqueue_many, wait_until

pytestmark = [pytest.mark.postgresql, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

Status = OutboundEmail.Status
ROWS = 40
ENV = {"OUTBOX_LEASE_SECONDS": "3", "EMAIL_TIMEOUT": "1"}
NAME = "outbox-crash"


def test_crash__sigkill_at_each_point_loses_nothing_and_duplicates_at_most_the_kills(smtp_server, tmp_path):
    message_ids = enqueue_many(ROWS)
    kills = 0

    def start() -> Dispatcher:
        return Dispatcher(smtp_server, tmp_path, "--batch-size", "5", name=NAME, env=ENV)

    # 1. Before send: rows claimed, the SMTP session is at RCPT, no message has gone out.
    smtp_server.pause("rcpt")
    with start() as dispatcher:
        assert smtp_server.reached["rcpt"].wait(30), dispatcher.output()
        dispatcher.kill()
    smtp_server.resume("rcpt")
    kills += 1
    assert smtp_server.messages == []
    assert OutboundEmail.objects.filter(status=Status.SENDING).count() == 5

    # 2. In flight: the server has stored the message, the 250 reply has not reached the dispatcher.
    smtp_server.pause("accepted")
    with start() as dispatcher:
        assert smtp_server.reached["accepted"].wait(30), dispatcher.output()
        dispatcher.kill()
    smtp_server.resume("accepted")
    kills += 1

    # 3. Sent and acknowledged, outcome not written: the test holds the row lock mark_sent needs.
    smtp_server.pause("accepted")
    with start() as dispatcher:
        assert smtp_server.reached["accepted"].wait(30), dispatcher.output()
        in_flight = smtp_server.messages[-1].message_id
        with transaction.atomic():
            OutboundEmail.objects.select_for_update().get(message_id=in_flight)
            smtp_server.resume("accepted")
            wait_until(
                lambda: any(wait == "Lock" for _, wait in backends(NAME)),
                message="the dispatcher to block on recording the outcome",
            )
            dispatcher.kill()
    kills += 1
    assert OutboundEmail.objects.get(message_id=in_flight).status == Status.SENDING

    # 4. Mid-batch, while messages stream out.
    smtp_server.delay = 0.05
    seen = len(smtp_server.messages)
    with start() as dispatcher:
        wait_until(lambda: len(smtp_server.messages) >= seen + 7, message="a few more messages")
        dispatcher.kill()
    kills += 1
    smtp_server.delay = 0.0

    # The killed processes' database sessions end, and their leases run out; then a fresh dispatcher drains.
    wait_until(lambda: not backends(NAME), message="the killed dispatchers' sessions to end")
    wait_until(
        lambda: not OutboundEmail.objects.filter(status=Status.SENDING, lease_expires_at__gt=Now()).exists(),
        message="the leases to run out",
    )
    with Dispatcher(smtp_server, tmp_path, "--once", name=NAME, env=ENV) as final:
        assert final.wait(60) == 0, final.output()

    counts = Counter(smtp_server.message_ids())
    duplicates = sum(n - 1 for n in counts.values())
    print(f"\ncrash test: rows={ROWS} kills={kills} messages_received={sum(counts.values())} duplicates={duplicates}")
    assert set(OutboundEmail.objects.values_list("status", flat=True)) == {Status.SENT}
    assert set(counts) == set(message_ids)
    assert duplicates <= kills
