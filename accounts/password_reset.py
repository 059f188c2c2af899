"""The provider's password reset: Django's auth views, with the email sent through the outbox.

The reset link is built from BASE_URL, not from the request's Host header, so a forged Host
cannot point the link somewhere else; the email is queued in one transaction like every other
email and the dispatcher delivers it.
"""

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordResetForm, SetPasswordForm
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse

from outbox.services import enqueue_email

logger = logging.getLogger(__name__)


class OutboxPasswordResetForm(PasswordResetForm):
    """Django's reset request form, queueing the email in the outbox instead of sending it inline."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["email"].label = "Email address"  # as on the sign-in page

    def send_mail(
        self,
        subject_template_name: str,
        email_template_name: str,
        context: dict[str, Any],
        from_email: str | None,
        to_email: str,
        html_email_template_name: str | None = None,
    ) -> None:
        """Queue the reset email; the dispatcher sends it once this transaction commits."""
        path = reverse("password_reset_confirm", kwargs={"uidb64": context["uid"], "token": context["token"]})
        context = {**context, "reset_url": f"{settings.BASE_URL}{path}"}
        subject = "".join(render_to_string(subject_template_name, context).splitlines())
        html_body = render_to_string(html_email_template_name, context) if html_email_template_name else ""
        with transaction.atomic():
            email = enqueue_email(
                to=[to_email],
                subject=subject,
                body=render_to_string(email_template_name, context),
                html_body=html_body,
                from_email=from_email,
                related_object=context["user"],
            )
        logger.info("password reset: email %s queued for user %s", email.pk, context["user"].pk)


class ResetSetPasswordForm(SetPasswordForm):
    """Django's new-password form, with validation errors shown next to the password they are about."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["new_password2"].label = "Confirm new password"

    def clean(self) -> dict[str, Any]:
        self.validate_passwords("new_password1", "new_password2")
        self.validate_password_for_user(self.user, "new_password1")
        return self.cleaned_data


password_reset = auth_views.PasswordResetView.as_view(
    form_class=OutboxPasswordResetForm,
    subject_template_name="registration/password_reset_subject.txt",
    email_template_name="registration/password_reset_email.txt",
    html_email_template_name="registration/password_reset_email.html",
)
password_reset_done = auth_views.PasswordResetDoneView.as_view()
password_reset_confirm = auth_views.PasswordResetConfirmView.as_view(form_class=ResetSetPasswordForm)
password_reset_complete = auth_views.PasswordResetCompleteView.as_view()
