from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra_fields: object) -> "User":
        if not email:
            raise ValueError("Users need an email address.")
        user = self.model(email=self.normalize_email(email).strip().lower(), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra_fields: object) -> "User":
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email: str, password: str | None = None, **extra_fields: object) -> "User":
        extra_fields["is_staff"] = True
        extra_fields["is_superuser"] = True
        return self._create_user(email, password, **extra_fields)

    def get_by_natural_key(self, username: str | None) -> "User":
        return self.get(email__iexact=(username or "").strip())


class Role(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.name


class User(AbstractBaseUser, PermissionsMixin):
    """A person who signs in with an email address."""

    email = models.EmailField("email address", max_length=254, unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    role = models.ForeignKey(Role, null=True, blank=True, on_delete=models.PROTECT, related_name="users")
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique")]

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return self.full_name or self.email

    def get_short_name(self) -> str:
        return self.full_name.split(" ")[0] if self.full_name else self.email


class InvitationEditRefused(Exception):
    """An accepted invitation is a record of who joined with what role; it is never edited or deleted."""


class ProviderInvitationQuerySet(models.QuerySet["ProviderInvitation"]):
    """Bulk writes refuse accepted rows too; on PostgreSQL a trigger backs this up for raw SQL."""

    def delete(self) -> tuple[int, dict[str, int]]:
        if self.filter(status=ProviderInvitation.Status.ACCEPTED).exists():
            raise InvitationEditRefused("Accepted invitations are never deleted.")
        return super().delete()

    def update(self, **kwargs: Any) -> int:
        if self.filter(status=ProviderInvitation.Status.ACCEPTED).exists():
            raise InvitationEditRefused("Accepted invitations are never edited.")
        return super().update(**kwargs)

    def update_unaccepted(self, **kwargs: Any) -> int:
        """Update the rows that are not accepted and leave accepted ones as they are, in one statement.

        `update()` above looks for accepted rows first (one more query) to refuse them; here the
        WHERE clause leaves them out, so there is nothing to look for.
        """
        unaccepted = self.exclude(status=ProviderInvitation.Status.ACCEPTED)
        return super(ProviderInvitationQuerySet, unaccepted).update(**kwargs)


class ProviderInvitation(models.Model):
    """An invitation to create an account with a role; the token itself is never stored."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"

    email = models.EmailField(max_length=254)
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="invitations")
    # SET_NULL, never CASCADE: deleting an inviter keeps their invitations; `invited_by_email` keeps who it was.
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    invited_by_email = models.EmailField(max_length=254, blank=True, editable=False)
    token_digest = models.CharField(max_length=64, unique=True, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    email_sent = models.BooleanField(default=False)
    email_sent_at = models.DateTimeField(null=True, blank=True)
    email_failed_at = models.DateTimeField(null=True, blank=True)
    email_error = models.TextField(blank=True, help_text="Why the latest email could not be delivered.")
    send_count = models.PositiveIntegerField(default=0, help_text="Emails requested for this invitation.")
    last_sent_requested_at = models.DateTimeField(null=True, blank=True)
    # Not a field: the raw token, set on the instance that invitation_create/resend return (never stored).
    token: str

    objects = ProviderInvitationQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                Lower("email"), condition=Q(status="pending"), name="accounts_one_pending_invitation_per_email"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "accepted", "revoked", "expired"]),
                name="accounts_invitation_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="accepted") | Q(accepted_at__isnull=False),
                name="accounts_accepted_invitation_has_time",
            ),
        ]
        indexes = [models.Index(Lower("email"), name="accounts_invitation_email_ci")]

    def __str__(self) -> str:
        return f"Invitation #{self.pk} ({self.status})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if getattr(self, "_loaded_status", None) == self.Status.ACCEPTED:
            raise InvitationEditRefused("Accepted invitations are never edited.")
        super().save(*args, **kwargs)
        self._loaded_status = self.status

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        if self.status == self.Status.ACCEPTED or getattr(self, "_loaded_status", None) == self.Status.ACCEPTED:
            raise InvitationEditRefused("Accepted invitations are never deleted.")
        return super().delete(*args, **kwargs)

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> "ProviderInvitation":
        instance = super().from_db(db, field_names, values)
        instance._loaded_status = instance.__dict__.get("status")  # type: ignore[assignment]
        return instance

    @property
    def is_expired(self) -> bool:
        return self.status == self.Status.EXPIRED or (
            self.status == self.Status.PENDING and self.expires_at <= timezone.now()
        )

    def resend_invitation(self) -> "ProviderInvitation":
        """Issue a fresh link and queue a new email (the seed's method, over the service)."""
        from .services import invitation_resend

        return invitation_resend(invitation=self, actor=None)


class InvitationEvent(models.Model):
    """One line of an invitation's audit trail: what happened, who did it, when. Never the token."""

    class Action(models.TextChoices):
        CREATED = "created", "Created"
        EMAIL_SENT = "email_sent", "Email sent"
        EMAIL_FAILED = "email_failed", "Email failed"
        RESENT = "resent", "Resent"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"
        ACCEPTED = "accepted", "Accepted"
        ACCEPT_REFUSED = "accept_refused", "Accept refused"

    invitation = models.ForeignKey(ProviderInvitation, on_delete=models.PROTECT, related_name="events")
    action = models.CharField(max_length=20, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(
        max_length=254, blank=True, help_text="Who acted, kept when the account is deleted; blank for the system."
    )
    detail = models.TextField(blank=True, help_text="Reason or outcome, e.g. why an accept was refused.")
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["invitation", "action", "at"], name="accounts_event_inv_action_at")]

    def __str__(self) -> str:
        return f"{self.get_action_display()} (invitation #{self.invitation_id})"
