from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views as account_views
from outbox import views as outbox_views

urlpatterns = [
    path("", account_views.home, name="home"),
    path("invitations/accept/", account_views.accept, name="invitation_accept"),
    path("invitations/accept/<str:token>/", account_views.accept_link, name="invitation_accept_link"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("healthz", outbox_views.healthz, name="healthz"),
]

admin.site.site_header = "Medical Document Parser administration"
admin.site.site_title = "Medical Document Parser"
