"""SIGTERM gives the claim back; an idle dispatcher sleeps (DESIGN.md invariant 6)."""

import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import transaction
from django.db.models.functions import Now

from outbox.models import DeliveryAttempt, OutboundEmail
from outbox.services import enqueue_email

from .processes import Dispatcher, enqueue_many, wait_until

pytestmark = [pytest.mark.postgresql, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

Status = OutboundEmail.Status


@pytest.mark.parametrize(
    ("signum", "options"),
    [
        (signal.SIGTERM, ["--batch-size", "10"]),
        (signal.SIGINT, ["--batch-size", "10"]),
        (signal.SIGTERM, ["--batch-size", "4", "--workers", "2"]),
    ],
    ids=["SIGTERM", "SIGINT", "SIGTERM-2-workers"],
)
def test_shutdown__signal_mid_batch_exits_0_and_gives_unsent_rows_back_untried(signum, options, smtp_server, tmp_path):
    message_ids = enqueue_many(10)
    smtp_server.delay = 0.3  # a slow relay: ten messages take 3 s
    with Dispatcher(smtp_server, tmp_path, *options) as dispatcher:
        wait_until(lambda: len(smtp_server.messages) >= 2, message="two messages sent")
        dispatcher.process.send_signal(signum)
        assert dispatcher.wait(30) == 0, dispatcher.output()
        output = dispatcher.output()

    received = smtp_server.message_ids()
    rows = OutboundEmail.objects.all()
    sent = {r.message_id for r in rows if r.status == Status.SENT}
    unsent = [r for r in rows if r.message_id not in sent]
    assert len(received) == len(set(received)) == len(sent)  # the message in hand was finished, once
    assert sent == set(received)
    assert unsent, "the signal came mid-batch"
    assert {(r.status, r.attempts, r.claimed_by, r.lease_expires_at) for r in unsent} == {(Status.PENDING, 0, "", None)}
    assert not DeliveryAttempt.objects.filter(email__in=unsent).exists()
    assert len(sent) + len(unsent) == len(message_ids)
    assert f"stopped on {signal.Signals(signum).name}" in output


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads CPU time from /proc")
def test_idle__only_future_rows_the_dispatcher_sleeps_without_busy_loop_or_log_flood(smtp_server, tmp_path):
    with transaction.atomic():
        later = enqueue_email(to=["later@example.com"], subject="Later", body="b")
        backing_off = enqueue_email(to=["retry@example.com"], subject="Retry", body="b")
    OutboundEmail.objects.filter(pk=later.pk).update(next_attempt_at=Now() + timedelta(hours=1))
    OutboundEmail.objects.filter(pk=backing_off.pk).update(
        next_attempt_at=Now() + timedelta(minutes=5), attempts=1, reschedules=1, last_error="451 try later"
    )
    with Dispatcher(smtp_server, tmp_path, env={"OUTBOX_POLL_INTERVAL": "0.1"}) as dispatcher:
        wait_until(lambda: "starting" in dispatcher.output(), message="the dispatcher to start")
        time.sleep(0.5)
        cpu_before, lines_before = cpu_seconds(dispatcher.pid), len(dispatcher.output().splitlines())
        time.sleep(3)  # 30 poll intervals
        cpu_used = cpu_seconds(dispatcher.pid) - cpu_before
        new_lines = dispatcher.output().splitlines()[lines_before:]
        dispatcher.process.terminate()
        assert dispatcher.wait(30) == 0

    print(f"\nidle test: cpu_seconds_in_3s={cpu_used:.2f} log_lines={len(new_lines)}")
    assert cpu_used < 1.0  # a busy loop would use the whole 3 s
    assert new_lines == []
    assert smtp_server.messages == []
    assert set(OutboundEmail.objects.values_list("status", "claimed_by")) == {(Status.PENDING, "")}
