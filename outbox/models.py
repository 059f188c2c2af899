"""The transactional outbox: one row per email to send, and one row per SMTP try."""

from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now


class OutboundEmail(models.Model):
    """An email committed for delivery; the dispatcher moves it to a final state."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SENT, Status.FAILED, Status.CANCELLED)

    from_email = models.CharField(max_length=320)
    recipients = models.JSONField(help_text="List of recipient addresses.")
    subject = models.CharField(max_length=998)
    body_text = models.TextField()
    body_html = models.TextField(blank=True)
    headers = models.JSONField(default=dict, blank=True)
    message_id = models.CharField(max_length=255, unique=True, help_text="Fixed at enqueue; the same on every try.")
    dedupe_key = models.CharField(max_length=200, null=True, blank=True, unique=True)

    related_content_type = models.ForeignKey(ContentType, null=True, blank=True, on_delete=models.SET_NULL)
    related_object_id = models.CharField(max_length=64, blank=True)
    related_object = GenericForeignKey("related_content_type", "related_object_id")

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="SMTP tries made so far.")
    reschedules = models.PositiveIntegerField(default=0, help_text="Times put back with a backoff delay.")
    next_attempt_at = models.DateTimeField(db_default=Now())
    claimed_by = models.CharField(max_length=128, blank=True, help_text="The claim that holds this row while sending.")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    refused_recipients = models.JSONField(
        default=dict, blank=True, help_text="Recipients the server refused while accepting the others."
    )

    created_at = models.DateTimeField(db_default=Now())
    queued_at = models.DateTimeField(db_default=Now(), help_text="Start of the age limit; reset on requeue.")
    updated_at = models.DateTimeField(db_default=Now())
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "outbound email"
        indexes = [
            # Only unfinished rows are indexed, so claiming costs the same however much history is kept.
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="outbox_due_pending_idx"),
            models.Index(fields=["lease_expires_at"], condition=Q(status="sending"), name="outbox_lease_sending_idx"),
            models.Index(fields=["related_content_type", "related_object_id"], name="outbox_related_idx"),
            models.Index(fields=["status", "created_at"], name="outbox_status_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "sending", "sent", "failed", "cancelled"]),
                name="outbox_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="sending") | Q(lease_expires_at__isnull=False),
                name="outbox_sending_has_lease",
            ),
        ]

    def __str__(self) -> str:
        return f"OutboundEmail #{self.pk} ({self.status})"


class DeliveryAttempt(models.Model):
    """One SMTP try of an outbound email, kept for the operators."""

    class Outcome(models.TextChoices):
        SENT = "sent", "Accepted by the server"
        TRANSIENT = "transient", "Transient failure"
        PERMANENT = "permanent", "Permanent failure"
        CONFIGURATION = "configuration", "Configuration fault"
        UNKNOWN = "unknown", "Outcome unknown (connection lost after DATA)"

    email = models.ForeignKey(OutboundEmail, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField(db_default=Now())
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    reply = models.TextField(blank=True)
    refused_recipients = models.JSONField(default=dict, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["attempted_at", "id"]

    def __str__(self) -> str:
        return f"{self.outcome} at {self.attempted_at:%Y-%m-%d %H:%M:%S}"
