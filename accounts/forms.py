import unicodedata
from typing import Any

from django import forms
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError

from .models import ProviderInvitation, Role, User
from .services import InvitationError, check_invitable, grantable_roles, normalize_invitation_email

MAX_PASSWORD_LENGTH = 1024  # hashing a megabyte-long password on every attempt is a cheap denial of service
MAX_NAME_LENGTH = 150


class InvitationEmailField(forms.CharField):
    """An address checked by the same rules as every other input path (`normalize_invitation_email`)."""

    def to_python(self, value: Any) -> str:
        if value in self.empty_values:
            raise ValidationError("Enter an email address.", code="required")
        return normalize_invitation_email(value)


class InvitationCreateForm(forms.ModelForm):
    """The admin's add form: an address and a role, checked before anything is written."""

    email = InvitationEmailField(strip=False, help_text="The provider's work email address.")
    role = forms.ModelChoiceField(
        queryset=Role.objects.none(), help_text="Only roles that may be granted by invitation."
    )

    class Meta:
        model = ProviderInvitation
        fields = ("email", "role")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].queryset = grantable_roles()  # type: ignore[attr-defined]

    def clean_email(self) -> str:
        email = self.cleaned_data["email"]
        try:
            check_invitable(email)
        except InvitationError as error:
            raise ValidationError(error.message, code=error.code) from None
        return email


# Zero-width joiners are part of some scripts' spelling (Persian) and of emoji sequences.
_JOINERS = "\u200c\u200d"


def _refuse_control_characters(value: str, what: str) -> None:
    # Cf (format) covers bidi overrides, isolates and marks and zero-width spaces, which can make a name
    # shown in the admin read as something else ("Dr \u202emoc.elpmaxe@nimda" shows as "Dr admin@example.com").
    if any(
        ord(ch) < 32
        or ord(ch) == 127
        or ch in "\u2028\u2029\u0085"
        or (unicodedata.category(ch) == "Cf" and ch not in _JOINERS)
        for ch in value
    ):
        raise ValidationError(f"{what} cannot contain line breaks or other control characters.", code="invalid")


class AcceptInvitationForm(forms.Form):
    """The provider's sign-up form; the address and role come from the invitation, never from here."""

    full_name = forms.CharField(max_length=MAX_NAME_LENGTH, label="Full name", strip=True)
    password1 = forms.CharField(
        label="Password",
        strip=False,
        max_length=MAX_PASSWORD_LENGTH,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="Confirm password",
        strip=False,
        max_length=MAX_PASSWORD_LENGTH,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args: Any, invitation: ProviderInvitation, **kwargs: Any) -> None:
        self.invitation = invitation
        super().__init__(*args, **kwargs)

    def clean_full_name(self) -> str:
        name = self.cleaned_data["full_name"]
        _refuse_control_characters(name, "A name")
        return name

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        password1, password2 = cleaned.get("password1"), cleaned.get("password2")
        if password1 and password2 and password1 != password2:
            self.add_error("password2", ValidationError("The two passwords do not match.", code="password_mismatch"))
        elif password1:
            candidate = User(email=self.invitation.email, full_name=cleaned.get("full_name", ""))
            try:
                password_validation.validate_password(password1, candidate)
            except ValidationError as error:
                self.add_error("password1", error)
        return cleaned
