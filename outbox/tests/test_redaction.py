"""Masking an address for a log line never raises, whatever a row's recipients hold: a crash there came
after the outcome was recorded and was reported as an unexpected error and a lost lease."""

import logging

import pytest

from outbox.models import OutboundEmail
from outbox.redaction import mask_address, mask_addresses

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("value", "masked"), [(123, "***"), (None, "***"), ("doctor@example.com", "d***@example.com")])
def test_mask_address__any_value_is_masked_without_raising(value, masked):
    assert mask_address(value) == masked
    assert mask_addresses([value, "x@example.org"]) == f"{masked}, x***@example.org"


def test_dispatch__non_string_recipient_written_around_enqueue__no_false_lease_lost(
    smtp_server, make_email, dispatch, caplog
):
    email = make_email()
    OutboundEmail.objects.filter(pk=email.pk).update(recipients=[123])

    with caplog.at_level(logging.INFO):
        dispatch()

    email.refresh_from_db()
    assert email.status in (OutboundEmail.Status.SENT, OutboundEmail.Status.FAILED)
    outbox_lines = [r.getMessage() for r in caplog.records if r.name.startswith("outbox")]
    assert not [line for line in outbox_lines if "lease lost" in line or "unexpected error" in line], outbox_lines
