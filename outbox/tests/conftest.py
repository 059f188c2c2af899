from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction

from outbox.services import enqueue_email


@pytest.fixture
def make_email(db):
    """Queue an email the way the application does, inside a transaction."""

    def make(**overrides):
        fields: dict[str, Any] = {
            "to": ["doctor@example.com"],
            "subject": "Hello",
            "body": "Text body",
            "html_body": "<p>HTML</p>",
        }
        fields.update(overrides)
        with transaction.atomic():
            return enqueue_email(**fields)

    return make


@pytest.fixture
def dispatch(db):
    """Run `dispatch_outbox --once` in-process."""

    def run(*args: str) -> None:
        call_command("dispatch_outbox", "--once", *args)

    return run
