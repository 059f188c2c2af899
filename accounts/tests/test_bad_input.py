"""A table of hostile and broken inputs, tried on every input path; each is refused and stores nothing.

The paths: the admin's add form, `manage.py invite_provider`, and the provider's accept form.
"""

from collections import Counter

import pytest
from django.core.management import CommandError, call_command

from accounts.models import InvitationEvent, ProviderInvitation, Role, User
from accounts.services import invitation_create, normalize_invitation_email
from outbox.models import OutboundEmail

pytestmark = pytest.mark.django_db

INVALID = "Enter a valid email address"
EMPTY = "Enter an email address"
CONTROL = "cannot contain line breaks or other control characters"
TOO_LONG = "has at most 254 characters"
LOCAL_TOO_LONG = "has at most 64 characters"
NON_ASCII = "non-ASCII characters before the @"
FULL_DOMAIN = "at a full domain name"

# (category, case id, address, expected message fragment)
ADDRESSES = [
    ("empty", "empty", "", EMPTY),
    ("empty", "spaces", "   ", EMPTY),
    ("empty", "tab-and-newline", "\t\n", EMPTY),
    ("malformed", "no-at", "plainaddress", INVALID),
    ("malformed", "no-local-part", "@example.com", INVALID),
    ("malformed", "no-domain", "doctor@", INVALID),
    ("malformed", "two-ats", "doctor@@example.com", INVALID),
    ("malformed", "space-inside", "doc tor@example.com", INVALID),
    ("malformed", "leading-dot", ".doctor@example.com", INVALID),
    ("malformed", "double-dot-local", "doc..tor@example.com", INVALID),
    ("malformed", "double-dot-domain", "doctor@example..com", INVALID),
    ("malformed", "hyphen-label", "doctor@-example.com", INVALID),
    ("malformed", "trailing-dot-domain", "doctor@example.com.", INVALID),
    ("malformed", "dotless-domain", "doctor@localhost", FULL_DOMAIN),
    ("malformed", "ip-literal", "doctor@[127.0.0.1]", FULL_DOMAIN),
    ("malformed", "quoted-local-part", '"doctor"@example.com', INVALID),
    ("malformed", "display-name", "Doctor <doctor@example.com>", INVALID),
    ("header-injection", "two-recipients-comma", "doctor@example.com,victim@example.com", INVALID),
    ("header-injection", "two-recipients-semicolon", "doctor@example.com;victim@example.com", INVALID),
    ("header-injection", "crlf-bcc", "doctor@example.com\r\nBcc: victim@example.com", CONTROL),
    ("header-injection", "lf-bcc", "doctor@example.com\nBcc: victim@example.com", CONTROL),
    ("header-injection", "cr-in-local-part", "doc\rtor@example.com", CONTROL),
    ("header-injection", "nul-byte", "doctor@example.com\x00", CONTROL),
    ("header-injection", "unicode-line-separator", "doctor@example.com\u2028Bcc: victim@example.com", CONTROL),
    ("header-injection", "next-line-c1", "doctor@exam\u0085ple.com", CONTROL),
    ("header-injection", "zero-width-space", "doc\u200btor@example.com", CONTROL),
    ("header-injection", "encoded-crlf", "doctor@example.com%0d%0aBcc:victim@example.com", INVALID),
    ("overlong", "local-part-65", "d" * 65 + "@example.com", LOCAL_TOO_LONG),
    ("overlong", "address-258", "d@" + "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 60 + ".com", TOO_LONG),
    ("overlong", "domain-label-64", "doctor@" + "a" * 64 + ".com", INVALID),
    ("overlong", "ten-thousand", "d" * 10_000 + "@example.com", TOO_LONG),
    ("non-ascii-local", "accented", "dóctor@example.com", NON_ASCII),
    ("non-ascii-local", "cyrillic", "доктор@example.com", NON_ASCII),
    ("non-ascii-local", "cjk", "医生@example.com", NON_ASCII),
    ("malformed", "fullwidth-at-sign", "doctor\uff20example.com", INVALID),
]

# (category, case id, POST data overrides, field, expected message fragment)
ACCEPT_FORM = [
    ("empty", "name-empty", {"full_name": ""}, "full_name", "This field is required"),
    ("empty", "name-spaces", {"full_name": "   "}, "full_name", "This field is required"),
    ("empty", "password-empty", {"password1": "", "password2": ""}, "password1", "This field is required"),
    ("empty", "confirmation-missing", {"password2": None}, "password2", "This field is required"),
    ("header-injection", "name-crlf", {"full_name": "Ada\r\nBcc: x@example.com"}, "full_name", CONTROL),
    ("header-injection", "name-nul", {"full_name": "Ada\x00"}, "full_name", "Null characters are not allowed"),
    ("header-injection", "name-line-separator", {"full_name": "Ada\u2028Lovelace"}, "full_name", CONTROL),
    ("overlong", "name-151", {"full_name": "A" * 151}, "full_name", "at most 150 characters"),
    ("overlong", "password-1025", {"password1": "p" * 1025, "password2": "p" * 1025}, "password1", "at most 1024"),
    ("weak-password", "mismatch", {"password2": "another-long-passphrase-43"}, "password2", "do not match"),
    ("weak-password", "too-short", {"password1": "Sh0rt!x", "password2": "Sh0rt!x"}, "password1", "too short"),
    ("weak-password", "common", {"password1": "password1234", "password2": "password1234"}, "password1", "common"),
    ("weak-password", "numeric", {"password1": "839201749261", "password2": "839201749261"}, "password1", "numeric"),
    (
        "weak-password",
        "like-the-address",
        {"password1": "provider@example.com", "password2": "provider@example.com"},
        "password1",
        "too similar",
    ),
]

# (category, case id, --role value, expected message fragment)
COMMAND_ROLES = [
    ("role", "not-grantable", "Administrator", "non-grantable role"),
    ("role", "unknown", "Wizard", "non-grantable role"),
    ("role", "empty", "", "non-grantable role"),
]

PASSWORD = "a-long-unusual-passphrase-42"


def rows():
    return (
        ProviderInvitation.objects.count(),
        OutboundEmail.objects.count(),
        User.objects.count(),
        InvitationEvent.objects.count(),
    )


def test_corpus__has_at_least_thirty_cases_across_the_three_paths():
    per_path = {
        "admin add form": len(ADDRESSES) + 1,  # + the non-grantable role below
        "invite_provider": len(ADDRESSES) + len(COMMAND_ROLES),
        "accept form": len(ACCEPT_FORM),
    }
    categories: Counter[str] = Counter()
    categories.update(2 * [a[0] for a in ADDRESSES])  # each address goes to the admin form and the command
    categories.update(f[0] for f in ACCEPT_FORM)
    categories.update(r[0] for r in COMMAND_ROLES)
    categories["role"] += 1  # the admin form's non-grantable role
    print("bad-input corpus per path:", per_path, "per category:", dict(categories))
    assert sum(per_path.values()) == sum(categories.values()) >= 30
    assert all(count >= 10 for count in per_path.values())


def address_cases():
    return [
        pytest.param(address, expected, id=f"{category}:{case_id}")
        for category, case_id, address, expected in ADDRESSES
    ]


@pytest.fixture
def inviter(admin_user, client):
    client.force_login(admin_user)
    return admin_user


@pytest.mark.parametrize(("address", "expected"), address_cases())
def test_admin_add_form__refuses_bad_address_and_stores_nothing(client, inviter, provider_role, address, expected):
    before = rows()
    response = client.post("/admin/accounts/providerinvitation/add/", {"email": address, "role": provider_role.pk})
    assert response.status_code == 200  # the form again, with its error
    errors = response.context["adminform"].form.errors
    assert expected in " ".join(errors["email"]), errors
    assert rows() == before


@pytest.mark.parametrize(("address", "expected"), address_cases())
def test_invite_provider__refuses_bad_address_and_stores_nothing(provider_role, address, expected):
    before = rows()
    with pytest.raises(CommandError) as refused:
        call_command("invite_provider", address)
    assert expected in str(refused.value)
    assert rows() == before


@pytest.mark.parametrize(("role", "expected"), [pytest.param(r, e, id=f"{c}:{i}") for c, i, r, e in COMMAND_ROLES])
def test_invite_provider__refuses_a_role_that_cannot_be_granted(provider_role, role, expected):
    Role.objects.create(name="Administrator")
    before = rows()
    with pytest.raises(CommandError) as refused:
        call_command("invite_provider", "doctor@example.com", "--role", role)
    assert expected in str(refused.value)
    assert "Provider" in str(refused.value)  # says what can be chosen
    assert rows() == before


def test_admin_add_form__refuses_a_role_outside_the_grantable_setting(client, inviter, provider_role):
    administrator = Role.objects.create(name="Administrator")
    before = rows()
    response = client.post(
        "/admin/accounts/providerinvitation/add/", {"email": "doctor@example.com", "role": administrator.pk}
    )
    assert "Select a valid choice" in " ".join(response.context["adminform"].form.errors["role"])
    assert rows() == before


@pytest.fixture
def accept_session(client, provider_role, admin_user):
    invitation = invitation_create(email="provider@example.com", role=provider_role, invited_by=admin_user)
    client.get(f"/invitations/accept/{invitation.token}/")
    return invitation


@pytest.mark.parametrize(
    ("overrides", "field", "expected"),
    [pytest.param(o, f, e, id=f"{c}:{i}") for c, i, o, f, e in ACCEPT_FORM],
)
def test_accept_form__refuses_bad_input_and_stores_nothing(client, accept_session, overrides, field, expected):
    data = {"full_name": "Dr. Ada Provider", "password1": PASSWORD, "password2": PASSWORD, **overrides}
    data = {key: value for key, value in data.items() if value is not None}
    before = rows()

    response = client.post("/invitations/accept/", data)

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert expected in " ".join(errors.get(field, [])), errors
    assert rows() == before
    accept_session.refresh_from_db()
    assert accept_session.status == ProviderInvitation.Status.PENDING
    assert client.post("/invitations/accept/", {**data, **_good()}).status_code == 302  # still usable after


def _good():
    return {"full_name": "Dr. Ada Provider", "password1": PASSWORD, "password2": PASSWORD}


# --- what is accepted: IDN domains, sent in ASCII -----------------------------------------------------


@pytest.mark.parametrize(
    ("address", "stored"),
    [
        ("Dr.Ada@Bücher.Example", "dr.ada@xn--bcher-kva.example"),
        ("ada@münchen.de", "ada@xn--mnchen-3ya.de"),
        ("ada@例え.jp", "ada@xn--r8jz45g.jp"),
        ("ada@straße.de", "ada@xn--strae-oqa.de"),  # IDNA 2008: not strasse.de, someone else's domain
        ("ada@BÜCHER.de", "ada@xn--bcher-kva.de"),  # upper case mapped (UTS #46) before encoding
        ("  ADA+clinic@Example.ORG  ", "ada+clinic@example.org"),
        ("o'brien@example.ie", "o'brien@example.ie"),
    ],
)
def test_good_addresses__are_normalised(address, stored):
    assert normalize_invitation_email(address) == stored


def test_idn_domain__is_sent_to_the_smtp_server_in_ascii_form(provider_role, smtp_server):
    call_command("invite_provider", "Dr.Ada@Bücher.Example")
    call_command("dispatch_outbox", "--once")
    (message,) = smtp_server.messages
    assert message.rcpt_tos == ["dr.ada@xn--bcher-kva.example"]
    assert message.message["To"] == "dr.ada@xn--bcher-kva.example"
    assert ProviderInvitation.objects.get().email == "dr.ada@xn--bcher-kva.example"
