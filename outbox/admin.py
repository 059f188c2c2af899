from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from . import services
from .models import DeliveryAttempt, OutboundEmail


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "attempted_at",
        "outcome",
        "smtp_code",
        "reply",
        "refused_recipients",
        "duration_ms",
        "worker",
    )

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(OutboundEmail)
class OutboundEmailAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "recipient_list", "subject", "attempts", "next_attempt_at", "created_at", "sent_at")
    list_filter = ("status", ("created_at", admin.DateFieldListFilter))
    search_fields = ("=message_id", "recipients")
    ordering = ("-id",)
    show_full_result_count = False  # COUNT(*) over a million rows on every page is not worth it
    list_per_page = 50
    actions = ("requeue", "cancel")
    inlines = (DeliveryAttemptInline,)
    readonly_fields = [
        f.name
        for f in OutboundEmail._meta.get_fields()
        if f.concrete and f.name not in ("id", "related_content_type", "related_object_id")
    ]
    exclude = ("related_content_type", "related_object_id")

    @admin.display(description="recipients")
    def recipient_list(self, obj: OutboundEmail) -> str:
        return ", ".join(obj.recipients) if isinstance(obj.recipients, list) else str(obj.recipients)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description="Requeue selected failed emails", permissions=["change"])
    def requeue(self, request: HttpRequest, queryset: QuerySet[OutboundEmail]) -> None:
        count = services.requeue_failed(queryset)
        self.message_user(
            request, f"Requeued {count} failed email(s).", messages.SUCCESS if count else messages.WARNING
        )

    @admin.action(description="Cancel selected pending emails", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[OutboundEmail]) -> None:
        count = services.cancel_pending(queryset)
        self.message_user(
            request, f"Cancelled {count} pending email(s).", messages.SUCCESS if count else messages.WARNING
        )
