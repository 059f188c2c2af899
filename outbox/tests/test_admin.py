"""The outbox admin: filters and search, a safe preview with masked links, POST-only actions, cheap lists."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from outbox.admin import mask_links
from outbox.models import OutboundEmail

pytestmark = pytest.mark.django_db

Status = OutboundEmail.Status
CHANGELIST = reverse("admin:outbox_outboundemail_changelist")
TOKEN = "Zq8v-secret-token-4Kp2"


@pytest.fixture
def admin_client_(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def csrf_client(admin_user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    return client


def set_status(email: OutboundEmail, status: str, **fields) -> OutboundEmail:
    OutboundEmail.objects.filter(pk=email.pk).update(status=status, **fields)
    email.refresh_from_db()
    return email


def listed_ids(response) -> list[int]:
    return [row.pk for row in response.context["cl"].result_list]


def test_admin__filters_by_state(admin_client_, make_email):
    failed = set_status(make_email(), Status.FAILED)
    make_email()

    response = admin_client_.get(CHANGELIST, {"status__exact": "failed"})

    assert response.status_code == 200
    assert listed_ids(response) == [failed.pk]


def test_admin__filters_by_date(admin_client_, make_email):
    old = set_status(make_email(), Status.SENT, created_at=timezone.now() - timedelta(days=40))
    today = make_email()

    response = admin_client_.get(
        CHANGELIST, {"created_at__gte": str(timezone.now().replace(hour=0, minute=0, second=0, microsecond=0))}
    )

    assert listed_ids(response) == [today.pk]
    assert old.pk not in listed_ids(response)


def test_admin__searches_by_recipient(admin_client_, make_email):
    wanted = make_email(to=["dr.house@clinic.org"])
    make_email(to=["someone@else.org"])

    assert listed_ids(admin_client_.get(CHANGELIST, {"q": "DR.HOUSE@clinic"})) == [wanted.pk]


def test_admin__searches_by_message_id_with_or_without_brackets(admin_client_, make_email):
    wanted = make_email()
    make_email()

    for term in (wanted.message_id, wanted.message_id.strip("<>")):
        assert listed_ids(admin_client_.get(CHANGELIST, {"q": term})) == [wanted.pk]


def test_admin__changelist_queries_do_not_grow_with_rows_and_never_count_the_whole_table(admin_client_, make_email):
    def capture() -> list[str]:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client_.get(CHANGELIST).status_code == 200
        return [q["sql"] for q in ctx.captured_queries]

    make_email()
    few = capture()
    for _ in range(59):
        make_email()
    many = capture()

    assert len(many) == len(few)
    counts = [sql for sql in many if "COUNT(" in sql.upper()]
    assert counts, "the paginator counts"
    assert all("LIMIT" in sql.upper() for sql in counts), counts


def test_admin__changelist_does_not_load_bodies(admin_client_, make_email):
    make_email(body="x" * 10_000)

    with CaptureQueriesContext(connection) as ctx:
        admin_client_.get(CHANGELIST)

    listing = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith('SELECT "outbox_outboundemail"."id"')]
    assert listing and all("body_text" not in sql for sql in listing)


def test_admin__preview_masks_links_and_sandboxes_html(admin_client_, make_email):
    link = f"https://app.clinic.org/invitations/accept/{TOKEN}/"
    email = make_email(
        body=f"Open {link} to join.",
        html_body=(
            f'<p><a href="{link}">Accept</a></p><img src="https://tracker.example/pixel.gif?u=1">'
            "<script>alert('x')</script>"
        ),
    )

    response = admin_client_.get(reverse("admin:outbox_outboundemail_change", args=[email.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert TOKEN not in page
    assert "https://app.clinic.org/[link hidden]" in page
    [iframe] = re.findall(r"<iframe[^>]*>", page)
    assert 'sandbox=""' in iframe
    assert "Content-Security-Policy" in iframe and "default-src &#x27;none&#x27;" in iframe
    assert "<script>" not in page.replace("<script src=", "").split("<iframe")[1].split("</iframe>")[0]
    assert "&lt;script&gt;" in iframe  # the HTML lives escaped inside srcdoc, inert in the admin page
    assert "https://tracker.example/[link hidden]" in iframe


def test_mask_links__keeps_host_and_bare_links():
    assert mask_links("see https://a.org/x/y?z=1 and http://b.org/ and https://c.org.") == (
        "see https://a.org/[link hidden] and http://b.org/ and https://c.org."
    )


def test_admin__requeue_action_is_a_post_with_csrf(csrf_client, make_email):
    failed = set_status(make_email(), Status.FAILED, attempts=10, last_error="550 no such user")
    sent = set_status(make_email(), Status.SENT)
    csrf_client.get(CHANGELIST)  # sets the CSRF cookie
    token = csrf_client.cookies["csrftoken"].value

    response = csrf_client.post(
        CHANGELIST,
        {"action": "requeue", "_selected_action": [failed.pk, sent.pk], "csrfmiddlewaretoken": token},
        follow=True,
    )

    assert response.status_code == 200
    assert "Requeued 1 failed email(s)." in response.content.decode()
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (Status.PENDING, 0)
    assert OutboundEmail.objects.get(pk=sent.pk).status == Status.SENT


def test_admin__cancel_action_is_a_post_with_csrf_and_leaves_sending_rows(csrf_client, make_email):
    pending = make_email()
    sending = set_status(
        make_email(), Status.SENDING, claimed_by="w", lease_expires_at=timezone.now() + timedelta(minutes=5)
    )
    csrf_client.get(CHANGELIST)
    token = csrf_client.cookies["csrftoken"].value

    csrf_client.post(
        CHANGELIST, {"action": "cancel", "_selected_action": [pending.pk, sending.pk], "csrfmiddlewaretoken": token}
    )

    assert OutboundEmail.objects.get(pk=pending.pk).status == Status.CANCELLED
    assert OutboundEmail.objects.get(pk=sending.pk).status == Status.SENDING


def test_admin__actions_without_csrf_token_are_refused(csrf_client, make_email):
    failed = set_status(make_email(), Status.FAILED)

    response = csrf_client.post(CHANGELIST, {"action": "requeue", "_selected_action": [failed.pk]})

    assert response.status_code == 403
    assert OutboundEmail.objects.get(pk=failed.pk).status == Status.FAILED


def test_admin__actions_never_run_on_get(admin_client_, make_email):
    failed = set_status(make_email(), Status.FAILED)

    response = admin_client_.get(CHANGELIST, {"action": "requeue", "_selected_action": failed.pk})

    assert response.status_code in (200, 302)
    assert OutboundEmail.objects.get(pk=failed.pk).status == Status.FAILED


def test_admin__rows_cannot_be_added_or_deleted(admin_client_, make_email):
    email = make_email()

    assert admin_client_.get(reverse("admin:outbox_outboundemail_add")).status_code == 403
    assert (
        admin_client_.post(reverse("admin:outbox_outboundemail_delete", args=[email.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert OutboundEmail.objects.filter(pk=email.pk).exists()


def test_admin__searches_by_a_whole_address_whatever_its_case(admin_client_, make_email):
    wanted = make_email(to=["dr.house@clinic.org"])
    make_email(to=["dr.house@clinic.org.evil"])

    assert listed_ids(admin_client_.get(CHANGELIST, {"q": "Dr.House@Clinic.org"})) == [wanted.pk]
