from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import password_reset
from accounts import views as account_views
from outbox import views as outbox_views

urlpatterns = [
    path("", account_views.home, name="home"),
    path("invitations/accept/", account_views.accept, name="invitation_accept"),
    path("invitations/accept/<str:token>/", account_views.accept_link, name="invitation_accept_link"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password_reset/", password_reset.password_reset, name="password_reset"),
    path("accounts/password_reset/done/", password_reset.password_reset_done, name="password_reset_done"),
    path("accounts/reset/<uidb64>/<token>/", password_reset.password_reset_confirm, name="password_reset_confirm"),
    path("accounts/reset/done/", password_reset.password_reset_complete, name="password_reset_complete"),
    path("admin/", admin.site.urls),
    path("healthz", outbox_views.healthz, name="healthz"),
]

admin.site.site_header = "Medical Document Parser administration"
admin.site.site_title = "Medical Document Parser"
