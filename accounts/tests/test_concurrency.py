"""Simultaneous submissions of one invitation link: exactly one account, on real PostgreSQL row locks."""

import threading

import pytest
from django.db import connection
from django.test import Client

from accounts.models import InvitationEvent, ProviderInvitation, User
from accounts.services import invitation_create

pytestmark = [pytest.mark.postgresql, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-unusual-passphrase-42"
BROWSERS = 4
ROUNDS = 5


def submit_together(token: str, count: int) -> list[int]:
    """Open the link in `count` browsers, then POST the form from all of them at the same moment."""
    browsers = [Client() for _ in range(count)]
    for browser in browsers:
        browser.get(f"/invitations/accept/{token}/")
        assert browser.get("/invitations/accept/").status_code == 200
    start = threading.Barrier(count)
    statuses: list[int] = []
    lock = threading.Lock()

    def post(browser: Client, index: int) -> None:
        try:
            start.wait()
            data = {"full_name": f"Browser {index}", "password1": PASSWORD, "password2": PASSWORD}
            response = browser.post("/invitations/accept/", data)
            with lock:
                statuses.append(response.status_code)
        finally:
            connection.close()  # each thread has its own connection; leave none open

    threads = [threading.Thread(target=post, args=(b, i)) for i, b in enumerate(browsers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_same_link_posted_at_once__creates_exactly_one_account(provider_role):
    role = provider_role
    for round_ in range(ROUNDS):
        email = f"provider{round_}@example.com"
        invitation = invitation_create(email=email, role=role, invited_by=None)

        statuses = submit_together(invitation.token, BROWSERS)

        assert sorted(statuses) == [302] + [410] * (BROWSERS - 1), statuses
        assert User.objects.filter(email__iexact=email).count() == 1
        invitation.refresh_from_db()
        assert invitation.status == ProviderInvitation.Status.ACCEPTED
        assert invitation.accepted_user == User.objects.get(email=email)
        events = InvitationEvent.objects.filter(invitation=invitation)
        assert events.filter(action="accepted").count() == 1
        assert list(events.filter(action="accept_refused").values_list("detail", flat=True)) == ["used"] * (
            BROWSERS - 1
        )
