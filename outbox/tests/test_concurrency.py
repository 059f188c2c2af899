"""Several dispatcher processes on one PostgreSQL never send the same row (DESIGN.md invariant 4)."""

import re
import time
from collections import Counter

import pytest

from outbox.models import OutboundEmail

from .processes import Dispatcher, enqueue_many, wait_until

pytestmark = [pytest.mark.postgresql, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

Status = OutboundEmail.Status
ROWS = 2000
PROCESSES = 4


def test_concurrency__four_dispatchers_send_each_message_exactly_once(smtp_server, tmp_path):
    message_ids = enqueue_many(ROWS)
    # Hold every session at its first RCPT until all four processes hold a batch, so they really overlap.
    smtp_server.pause("rcpt")
    connections = smtp_server.connections
    started = time.monotonic()
    dispatchers = [
        Dispatcher(smtp_server, tmp_path, "--once", "--batch-size", "25", name=f"outbox-concurrency-{i}")
        for i in range(PROCESSES)
    ]
    try:
        wait_until(lambda: smtp_server.connections - connections >= PROCESSES, message="four claimed batches")
        smtp_server.resume("rcpt")
        codes = [d.wait(120) for d in dispatchers]
    finally:
        for dispatcher in dispatchers:
            dispatcher.__exit__()
    elapsed = time.monotonic() - started

    sent_by = [int(re.findall(r"after sending (\d+) email", d.output())[-1]) for d in dispatchers]
    counts = Counter(smtp_server.message_ids())
    print(
        f"\nconcurrency test: rows={ROWS} processes={PROCESSES} sent_by_process={sent_by} "
        f"received={sum(counts.values())} duplicates={sum(n - 1 for n in counts.values())} seconds={elapsed:.1f}"
    )
    assert codes == [0] * PROCESSES, [d.output()[-2000:] for d in dispatchers]
    assert all(sent_by), "every process took part"
    assert sum(sent_by) == ROWS
    assert set(counts) == set(message_ids)
    assert set(counts.values()) == {1}
    assert list(OutboundEmail.objects.values_list("status", "attempts").distinct()) == [(Status.SENT, 1)]
