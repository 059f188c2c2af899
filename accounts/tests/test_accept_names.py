"""The name a provider types is shown to administrators: invisible formatting characters that reorder
or hide text (bidi overrides, zero-width spaces) could make it pass for someone else's, so they are
refused; the joiners that some scripts and emoji need are not."""

import pytest
from django.test import Client

from accounts.models import User
from accounts.services import invitation_create

pytestmark = pytest.mark.django_db

PASSWORD = "Heron-Quartz-Meadow-4417"


def _accept(provider_role, full_name):
    invitation = invitation_create(email="name@example.com", role=provider_role, invited_by=None)
    client = Client()
    client.get(f"/invitations/accept/{invitation.token}/")
    return client.post("/invitations/accept/", {"full_name": full_name, "password1": PASSWORD, "password2": PASSWORD})


@pytest.mark.parametrize(
    "full_name",
    [
        "Dr \u202emoc.elpmaxe@nimda",  # right-to-left override: displays as "Dr admin@example.com"
        "Ada \u2066Lovelace\u2069",  # isolates
        "Ada\u200bLovelace",  # zero-width space
        "Ada\ufeffLovelace",  # zero-width no-break space
        "\u200fAda",  # right-to-left mark
    ],
)
def test_accept_form__invisible_formatting_in_name__refused_nothing_stored(provider_role, full_name):
    response = _accept(provider_role, full_name)

    assert response.status_code == 200
    assert "control characters" in " ".join(response.context["form"].errors["full_name"])
    assert not User.objects.filter(email="name@example.com").exists()


@pytest.mark.parametrize(
    "full_name", ["\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "Ada \U0001f469\u200d\u2695"]
)
def test_accept_form__joiners_in_name__accepted(provider_role, full_name):
    response = _accept(provider_role, full_name)

    assert response.status_code == 302
    assert User.objects.get(email="name@example.com").full_name == full_name
