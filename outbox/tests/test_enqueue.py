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
