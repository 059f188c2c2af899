"""`outbox_status` and `GET /healthz`: the backlog, its age, and the exit code or status that alerts on it."""

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.utils import timezone

from outbox.models import OutboundEmail
from outbox.testing import free_port

pytestmark = pytest.mark.django_db

Status = OutboundEmail.Status


@pytest.fixture
def backlog_rows(make_email):
    """Two sent, one failed today, one cancelled, one pending due for ten minutes, one pending not yet due."""
    now = timezone.now()

    def row(status, **fields):
        email = make_email()
        OutboundEmail.objects.filter(pk=email.pk).update(status=status, **fields)
        return email

    row(Status.SENT, sent_at=now)
    row(Status.SENT, sent_at=now)
    row(Status.FAILED, last_error="550 no such user")
    row(Status.FAILED, updated_at=now - timedelta(days=3))  # not in the last 24 hours
    row(Status.CANCELLED)
    row(Status.PENDING, next_attempt_at=now - timedelta(minutes=10))
    row(Status.PENDING, next_attempt_at=now + timedelta(hours=1))


def run_status(*args, capsys):
    call_command("outbox_status", *args)
    return capsys.readouterr().out


def test_outbox_status__json_prints_one_object_with_counts_age_and_recent_failures(backlog_rows, capsys):
    out = run_status("--json", capsys=capsys)

    status = json.loads(out)
    assert status["counts"] == {"pending": 2, "sending": 0, "sent": 2, "failed": 2, "cancelled": 1}
    assert status["due"] == 1
    assert 590 <= status["oldest_due_age_seconds"] < 3600
    assert status["failed_last_24h"] == 1


def test_outbox_status__empty_outbox_has_zero_age(capsys):
    status = json.loads(run_status("--json", capsys=capsys))

    assert status["counts"] == {"pending": 0, "sending": 0, "sent": 0, "failed": 0, "cancelled": 0}
    assert status["oldest_due_age_seconds"] == 0
    assert status["due"] == 0


def test_outbox_status__sending_row_with_expired_lease_counts_as_due(make_email, capsys):
    email = make_email()
    OutboundEmail.objects.filter(pk=email.pk).update(
        status=Status.SENDING, claimed_by="dead", lease_expires_at=timezone.now() - timedelta(minutes=5)
    )

    status = json.loads(run_status("--json", capsys=capsys))

    assert status["due"] == 1
    assert status["oldest_due_age_seconds"] >= 290


def test_outbox_status__max_age_exceeded_exits_2(backlog_rows, capsys):
    with pytest.raises(CommandError, match="is a dispatcher running") as excinfo:
        call_command("outbox_status", "--json", "--max-age", "300")

    assert excinfo.value.returncode == 2
    assert json.loads(capsys.readouterr().out)["due"] == 1  # the report is still printed


def test_outbox_status__max_age_not_exceeded_exits_0(backlog_rows, capsys):
    out = run_status("--max-age", "3600", capsys=capsys)

    assert "pending=2" in out and "failed in the last 24 hours: 1" in out


def test_healthz__database_up_answers_200_with_the_backlog(client, make_email):
    make_email()

    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["counts"]["pending"] == 1
    assert body["oldest_due_age_seconds"] < 60
    assert body["problems"] == []
    assert "no-cache" in response["Cache-Control"]


def test_healthz__stale_backlog_answers_503(client, backlog_rows, settings):
    settings.OUTBOX_HEALTH_MAX_DUE_AGE_SECONDS = 300

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy" and body["database"] == "ok"
    assert "oldest due email waited" in body["problems"][0]


def test_healthz__backlog_within_threshold_answers_200(client, backlog_rows, settings):
    settings.OUTBOX_HEALTH_MAX_DUE_AGE_SECONDS = 3600

    assert client.get("/healthz").status_code == 200


def test_healthz__only_get(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_healthz__database_unreachable_answers_503(client):
    """Point the connection at a port where nothing listens: the view answers 503 instead of raising."""
    connection = connections["default"]
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(free_port()))
    try:
        response = client.get("/healthz")
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)

    assert response.status_code == 503
    assert response.json() == {"status": "unhealthy", "database": "unreachable"}


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_outbox_status__database_unreachable_exits_1_with_a_message():
    connection = connections["default"]
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(free_port()))
    try:
        with pytest.raises(CommandError, match="database unreachable") as excinfo:
            call_command("outbox_status", "--json")
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)

    assert excinfo.value.returncode == 1
