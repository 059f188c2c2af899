"""enqueue_email refuses what could not be stored or sent as asked, and writes nothing then."""

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from outbox.models import OutboundEmail
from outbox.services import enqueue_email

pytestmark = pytest.mark.django_db

GOOD: dict[str, Any] = {"to": ["p@example.com"], "subject": "Hello", "body": "Text", "html_body": "<p>HTML</p>"}


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"headers": {"Bcc": "spy@example.net"}}, "reserved_header"),
        ({"headers": {"To": "spy@example.net"}}, "reserved_header"),
        ({"headers": {"From": "ceo@example.net"}}, "reserved_header"),
        ({"headers": {"Message-ID": "<fixed@example.com>"}}, "reserved_header"),
        ({"headers": {"Content-Transfer-Encoding": "base64"}}, "reserved_header"),
        ({"headers": {"X:Y": "v"}}, "invalid_header"),
        ({"headers": {"": "v"}}, "invalid_header"),
        ({"headers": {"X Note": "v"}}, "invalid_header"),
        ({"headers": {"X-Note": "line\r\nBcc: spy@example.net"}}, "header_injection"),
        ({"headers": {"X-Note": "x" * 1000}}, "too_long"),
        ({"headers": {"X-Note": 5}}, "invalid"),
        ({"subject": "Hello\x00"}, "nul"),
        ({"body": "Text\x00"}, "nul"),
        ({"html_body": "<p>\x00</p>"}, "nul"),
        ({"headers": {"X-Note": "a\x00b"}}, "nul"),
        ({"subject": "Hello\nBcc: spy@example.net"}, "header_injection"),
        ({"to": ["p@example.com\r\nBcc: spy@example.net"]}, "header_injection"),
        ({"to": []}, "no_recipients"),
        ({"to": ["not-an-address"]}, "invalid"),
        ({"from_email": "a@example.com\nBcc: spy@example.net"}, "header_injection"),
    ],
)
def test_enqueue__refuses_bad_input_and_writes_nothing(overrides, code):
    with pytest.raises(ValidationError) as error, transaction.atomic():
        enqueue_email(**{**GOOD, **overrides})
    assert error.value.code == code
    assert not OutboundEmail.objects.exists()


def test_enqueue__custom_headers_are_kept(settings):
    settings.OUTBOX_EXTRA_HEADERS = {"X-SES-CONFIGURATION-SET": "invitations"}
    with transaction.atomic():
        email = enqueue_email(**GOOD, headers={"Reply-To": "support@example.com"})
    assert email.headers == {"X-SES-CONFIGURATION-SET": "invitations", "Reply-To": "support@example.com"}


def test_enqueue__same_dedupe_key_returns_the_queued_email_and_adds_none():
    with transaction.atomic():
        first = enqueue_email(**GOOD, dedupe_key="invitation:1:1")
        again = enqueue_email(**{**GOOD, "subject": "Other"}, dedupe_key="invitation:1:1")
        # The caller's transaction is still usable after the duplicate.
        other = enqueue_email(**GOOD, dedupe_key="invitation:1:2")

    assert again.pk == first.pk
    assert (again.subject, again.message_id) == ("Hello", first.message_id)
    assert OutboundEmail.objects.count() == 2
    stored = OutboundEmail.objects.get(pk=first.pk)
    assert (first.created_at, first.next_attempt_at) == (stored.created_at, stored.next_attempt_at)
    assert other.pk not in (first.pk, None)


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_enqueue__concurrent_twins_with_one_dedupe_key_make_one_row():
    """Two transactions queueing the same key at once: one row, both callers get it, neither fails."""
    import threading

    from django.db import connection

    barrier, results, errors = threading.Barrier(2), [], []

    def enqueue_in_own_transaction() -> None:
        try:
            with transaction.atomic():
                barrier.wait(5)
                results.append(enqueue_email(**GOOD, dedupe_key="twin").pk)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=enqueue_in_own_transaction) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert errors == []
    assert len(results) == 2 and results[0] == results[1]
    assert OutboundEmail.objects.filter(dedupe_key="twin").count() == 1
