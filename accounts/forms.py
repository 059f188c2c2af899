from typing import Any

from django import forms
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError

from .models import ProviderInvitation, Role, User
from .services import InvitationError, check_invitable, grantable_roles, normalize_invitation_email


class InvitationCreateForm(forms.ModelForm):
    """The admin's add form: an address and a role, checked before anything is written."""

    email = forms.CharField(max_length=320, help_text="The provider's work email address.")
    role = forms.ModelChoiceField(queryset=Role.objects.none())

    class Meta:
        model = ProviderInvitation
        fields = ("email", "role")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].queryset = grantable_roles()

    def clean_email(self) -> str:
        email = normalize_invitation_email(self.cleaned_data["email"])
        try:
            check_invitable(email)
        except InvitationError as error:
            raise ValidationError(error.message, code=error.code) from None
        return email


class AcceptInvitationForm(forms.Form):
    """The provider's sign-up form; the address and role come from the invitation."""

    full_name = forms.CharField(max_length=150, label="Full name", strip=True)
    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="Confirm password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args: Any, invitation: ProviderInvitation, **kwargs: Any) -> None:
        self.invitation = invitation
        super().__init__(*args, **kwargs)

    def clean_full_name(self) -> str:
        name = self.cleaned_data["full_name"]
        if any(ch in name for ch in "\r\n\x00"):
            raise ValidationError("A name cannot contain line breaks.", code="invalid")
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
