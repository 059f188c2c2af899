from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from .forms import InvitationCreateForm
from .models import ProviderInvitation, Role, User
from .services import InvitationError, invitation_create, invitation_resend, invitation_revoke


class UserCreationForm(AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("email",)


class UserEditForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):
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


@admin.register(ProviderInvitation)
class ProviderInvitationAdmin(admin.ModelAdmin):
    list_display = ("email", "role", "status", "email_status", "invited_by", "created_at", "expires_at")
    list_filter = ("status", "email_sent", "role")
    search_fields = ("email",)
    ordering = ("-created_at",)
    list_select_related = ("role", "invited_by")
    actions = ("resend", "revoke")
    readonly_fields = (
        "email",
        "role",
        "status",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "accepted_user",
        "email_sent",
        "email_sent_at",
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

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="email")
    def email_status(self, obj: ProviderInvitation) -> str:
        if obj.email_sent:
            return f"sent {obj.email_sent_at:%Y-%m-%d %H:%M}" if obj.email_sent_at else "sent"
        return "queued"

    def save_model(self, request: HttpRequest, obj: ProviderInvitation, form: Any, change: bool) -> None:
        if change:
            return  # invitations are changed through their actions only
        created = invitation_create(email=obj.email, role=obj.role, invited_by=request.user)
        obj.pk = created.pk
        obj.__dict__.update({k: v for k, v in created.__dict__.items() if k != "_state"})
        obj._state.adding = False

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
