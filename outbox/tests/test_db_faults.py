"""The dispatcher rides out dropped database connections (issue: database faults)."""

from collections import Counter

import pytest

from outbox.models import OutboundEmail

from .processes import Dispatcher, enqueue_many, terminate_backends, wait_until

pytestmark = [pytest.mark.postgresql, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

Status = OutboundEmail.Status
ROWS = 300
NAME = "outbox-dbfault"


def test_db_fault__terminated_connections_mid_drain_the_dispatcher_reconnects_and_sends_everything(
    smtp_server, tmp_path
):
    message_ids = enqueue_many(ROWS)
    smtp_server.delay = 0.01  # a drain of a few seconds, long enough to cut it three times
    terminations = cut = 0

    def cut_a_worker_session() -> bool:
        nonlocal cut
        queries = terminate_backends(NAME)
        cut += len(queries)
        # The LISTEN session always exists; a worker's session is reopened per batch, so retry until one is hit.
        return any(not q.startswith("LISTEN") for q in queries)

    env = {"OUTBOX_LEASE_SECONDS": "3", "EMAIL_TIMEOUT": "1"}
    with Dispatcher(smtp_server, tmp_path, "--batch-size", "20", name=NAME, env=env) as dispatcher:
        for threshold in (40, 120, 200):
            wait_until(lambda t=threshold: len(smtp_server.messages) >= t, message=f"{threshold} messages")  # type: ignore[misc]
            wait_until(cut_a_worker_session, message="a worker's database session to cut")
            terminations += 1
        wait_until(
            lambda: OutboundEmail.objects.filter(status=Status.SENT).count() == ROWS,
            timeout=60,
            message="every row sent",
        )
        assert dispatcher.process.poll() is None, "the dispatcher kept running"
        dispatcher.process.terminate()
        assert dispatcher.wait(30) == 0
        output = dispatcher.output()

    counts = Counter(smtp_server.message_ids())
    duplicates = sum(n - 1 for n in counts.values())
    print(f"\ndatabase fault test: rows={ROWS} terminations={terminations} sessions_cut={cut} duplicates={duplicates}")
    assert cut >= terminations
    assert "Traceback" not in output
    # Every row that says SENT was received by the server; nothing is marked sent that was not sent.
    sent = set(OutboundEmail.objects.filter(status=Status.SENT).values_list("message_id", flat=True))
    assert sent == set(message_ids) == set(counts)
    assert duplicates <= terminations
