"""The operators' view of the outbox: find a message, see what happened to it, requeue or cancel it.

Lists stay fast on millions of rows: no unbounded COUNT, no per-row queries, bodies not loaded
for the list. Bodies are shown with every link masked (they hold live invitation links), and
HTML only inside a sandboxed frame whose policy forbids scripts and remote loads.
"""

from __future__ import annotations

import re
from typing import Any

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString

from . import services
from .models import DeliveryAttempt, OutboundEmail

#: A link's scheme and host stay visible (they tell where it pointed); the rest may be a credential.
_LINK = re.compile(r"""\b(https?://[^/\s"'<>]+)(/[^\s"'<>]*)""", re.IGNORECASE)
MASK = "/[link hidden]"

_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")

#: The HTML preview may style itself and show inline images, and may load nothing and run nothing.
PREVIEW_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; form-action 'none'"


def mask_links(text: str) -> str:
    """Replace the path and query of every http(s) link with a marker."""
    return _LINK.sub(lambda m: m[1] + MASK if m[2] not in ("", "/") else m[0], text)


class CappedCountPaginator(Paginator):
    """Count at most `cap` rows: an exact COUNT(*) over millions of rows on every page view is not worth it.

    Lists longer than the cap show the cap as their size and their first cap/per-page pages;
    filters and search narrow them down.
    """

    cap = 10_000

    @cached_property
    def count(self) -> int:
        object_list: Any = self.object_list
        return int(object_list.order_by().values("pk")[: self.cap].count())


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
    list_filter = (
        "status",
        ("created_at", admin.DateFieldListFilter),
        ("sent_at", admin.DateFieldListFilter),
    )
    search_fields = ("message_id", "recipients")  # see get_search_results
    search_help_text = "A recipient address (or part of one), or a Message-ID with or without its angle brackets."
    ordering = ("-id",)
    paginator = CappedCountPaginator
    show_full_result_count = False  # no second COUNT(*) of the whole table
    list_per_page = 50
    actions = ("requeue", "cancel")
    inlines = (DeliveryAttemptInline,)
    _summary = ("status", "message_id", "from_email", "recipients", "subject", "headers", "dedupe_key")
    _delivery = (
        "attempts",
        "reschedules",
        "next_attempt_at",
        "last_error",
        "refused_recipients",
        "claimed_by",
        "lease_expires_at",
        "created_at",
        "queued_at",
        "updated_at",
        "sent_at",
    )
    _previews = ("text_preview", "html_preview")
    fieldsets = (
        (None, {"fields": _summary}),
        ("Delivery", {"fields": _delivery}),
        ("Content (links masked)", {"fields": _previews}),
    )
    readonly_fields = _summary + _delivery + _previews

    @admin.display(description="recipients")
    def recipient_list(self, obj: OutboundEmail) -> str:
        return ", ".join(obj.recipients) if isinstance(obj.recipients, list) else str(obj.recipients)

    @admin.display(description="text body")
    def text_preview(self, obj: OutboundEmail) -> SafeString:
        return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', mask_links(obj.body_text))

    @admin.display(description="HTML body")
    def html_preview(self, obj: OutboundEmail) -> SafeString | str:
        if not obj.body_html:
            return "(none)"
        document = f'<meta http-equiv="Content-Security-Policy" content="{PREVIEW_CSP}">{mask_links(obj.body_html)}'
        # format_html escapes the document into the attribute; the empty sandbox forbids scripts,
        # forms, plugins, popups and same-origin access.
        return format_html(
            '<iframe sandbox="" referrerpolicy="no-referrer" srcdoc="{}" title="HTML body (preview)" '
            'style="width: 100%; min-height: 24em; border: 1px solid var(--hairline-color, #ccc)"></iframe>',
            document,
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutboundEmail]:
        queryset = super().get_queryset(request)
        match = request.resolver_match
        if match is not None and match.url_name and match.url_name.endswith("_changelist"):
            queryset = queryset.defer("body_text", "body_html", "headers", "refused_recipients")
        return queryset

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[OutboundEmail], search_term: str
    ) -> tuple[QuerySet[OutboundEmail], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        # A Message-ID is unique and indexed: look it up alone, since an OR with the recipient
        # scan below would make every search read the whole table.
        by_message_id = queryset.filter(message_id__in={term, f"<{term.strip('<>')}>"})
        if by_message_id.exists():
            return by_message_id, False
        if _ADDRESS.fullmatch(term):
            if connection.vendor == "postgresql":
                # JSON containment reads the table about twice as fast as a text match.
                return queryset.filter(Q(recipients__contains=[term]) | Q(recipients__contains=[term.lower()])), False
            return queryset.filter(recipients__icontains=f'"{term}"'), False  # a whole element of the list
        return queryset.filter(recipients__icontains=term), False

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
