from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from .forms import InvitationCreateForm
from .models import InvitationEvent, ProviderInvitation, Role, User
from .services import InvitationError, invitation_create, invitation_resend, invitation_revoke


class UserCreationForm(AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):  # type: ignore[name-defined]
        model = User
        fields = ("email",)


class UserEditForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):  # type: ignore[name-defined]
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserEditForm
    add_form = UserCreationForm
    ordering = ("email",)
    list_display = ("email", "full_name", "role", "is_staff", "is_active")
    list_filter = ("role", "is_staff", "is_superuser", "is_active")
    search_fields = ("email", "full_name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("full_name", "role")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    list_display = ("name", "description")
    search_fields = ("name",)


class InvitationEventInline(admin.TabularInline):
    model = InvitationEvent
    extra = 0
    can_delete = False
    fields = readonly_fields = ("at", "action", "actor_label", "detail")
    ordering = ("at", "id")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ProviderInvitation)
class ProviderInvitationAdmin(admin.ModelAdmin):
    """Invitations are added here and changed only through the resend and revoke actions."""

    list_display = ("email", "role", "status", "email_status", "invited_by_label", "created_at", "expires_at")
    list_filter = ("status", "email_sent", ("email_failed_at", admin.EmptyFieldListFilter), "role")
    search_fields = ("email",)
    ordering = ("-created_at",)
    list_select_related = ("role", "invited_by")
    actions = ("resend", "revoke")
    inlines = (InvitationEventInline,)
    readonly_fields = (
        "email",
        "role",
        "status",
        "invited_by",
        "invited_by_email",
        "created_at",
        "expires_at",
        "accepted_at",
        "accepted_user",
        "email_sent",
        "email_sent_at",
        "email_failed_at",
        "email_error",
        "send_count",
        "last_sent_requested_at",
    )

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> type[ModelForm]:
        if obj is None:
            kwargs["form"] = InvitationCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else ()

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else ("email", "role")

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.inlines if obj is not None else ()

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # view only: state changes go through the actions, and accepted ones never change

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="invited by")
    def invited_by_label(self, obj: ProviderInvitation) -> str:
        return str(obj.invited_by) if obj.invited_by else (obj.invited_by_email or "-")

    @admin.display(description="email status")
    def email_status(self, obj: ProviderInvitation) -> str:
        if obj.email_error:
            return f"FAILED: {obj.email_error[:300]}"
        if obj.email_sent:
            return f"sent {obj.email_sent_at:%Y-%m-%d %H:%M}" if obj.email_sent_at else "sent"
        return "queued" if obj.status == ProviderInvitation.Status.PENDING else "not sent"

    def save_model(self, request: HttpRequest, obj: ProviderInvitation, form: Any, change: bool) -> None:
        if change:
            return  # invitations are changed through their actions only
        try:
            created = invitation_create(email=obj.email, role=obj.role, invited_by=request.user)  # type: ignore[arg-type]
        except InvitationError as error:  # lost a race with another inviter since the form was checked
            self.message_user(request, error.message, messages.ERROR)
            obj.pk = None
            return
        obj.pk = created.pk
        obj.__dict__.update({k: v for k, v in created.__dict__.items() if k not in ("_state", "token")})
        obj._state.adding = False

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        if obj.pk is None:
            return None
        return super().log_addition(request, obj, message)

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: Any = None) -> HttpResponse:
        if obj.pk is None:
            return HttpResponseRedirect(reverse("admin:accounts_providerinvitation_changelist"))
        return super().response_add(request, obj, post_url_continue)

    @admin.action(description="Resend selected invitations (new link)", permissions=["add"])
    def resend(self, request: HttpRequest, queryset: QuerySet[ProviderInvitation]) -> None:
        self._apply(request, queryset, invitation_resend, "Resent")

    @admin.action(description="Revoke selected invitations", permissions=["add"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ProviderInvitation]) -> None:
        self._apply(request, queryset, invitation_revoke, "Revoked")

    def _apply(self, request: HttpRequest, queryset: QuerySet[ProviderInvitation], action: Any, verb: str) -> None:
        done = 0
        for invitation in queryset:
            try:
                action(invitation=invitation, actor=request.user)
                done += 1
            except InvitationError as error:
                self.message_user(request, f"{invitation.email}: {error.message}", messages.ERROR)
        if done:
            self.message_user(request, f"{verb} {done} invitation(s).", messages.SUCCESS)


@admin.register(InvitationEvent)
class InvitationEventAdmin(admin.ModelAdmin):
    """The audit trail, read only: nobody adds, edits or deletes a line of it."""

    list_display = ("at", "invitation", "action", "actor_label", "detail")
    list_filter = ("action", ("at", admin.DateFieldListFilter))
    search_fields = ("=invitation__id", "actor_label")
    list_select_related = ("invitation",)
    ordering = ("-at", "-id")
    fields = readonly_fields = ("at", "invitation", "action", "actor", "actor_label", "detail")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
