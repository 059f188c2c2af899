"""The provider's pages: accept an invitation, and a signed-in landing page.

The link's GET validates the token, keeps only the invitation's id in the session and
redirects to the token-free form, in the manner of Django's PasswordResetConfirmView:
the token never reaches a page's Referer, a 4xx log line or the browser history twice.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_not_required, login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods

from .forms import AcceptInvitationForm
from .services import InvalidInvitationLink, invitation_accept, invitation_check, invitation_for_token

SESSION_INVITATION = "_invitation_id"
SESSION_REFUSAL = "_invitation_refusal"
REFUSAL_STATUS = {"unknown": 404, "malformed": 404, "expired": 410, "revoked": 410, "used": 410}


def private_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Keep a credential-bearing page out of caches, referrers and search engines."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Referrer-Policy"] = "no-referrer"
        response["X-Robots-Tag"] = "noindex, nofollow"
        return response

    return login_not_required(never_cache(wrapped))


def _sign_out_keeping(request: HttpRequest, **keep: Any) -> None:
    """Sign out whoever is signed in on this browser, keeping the invitation's place."""
    logout(request)
    for key, value in keep.items():
        request.session[key] = value


@private_page
@require_GET
def accept_link(request: HttpRequest, token: str) -> HttpResponse:
    """Validate the link's token and move to the token-free form. Changes no invitation."""
    try:
        invitation = invitation_for_token(token)
    except InvalidInvitationLink as refusal:
        state = {SESSION_INVITATION: None, SESSION_REFUSAL: refusal.code}
    else:
        state = {SESSION_INVITATION: invitation.pk, SESSION_REFUSAL: None}
    if request.user.is_authenticated:
        _sign_out_keeping(request, **state)
    else:
        request.session.update(state)
    return redirect("invitation_accept")


@private_page
@sensitive_post_parameters("password1", "password2")
@csrf_protect
@require_http_methods(["GET", "POST"])
def accept(request: HttpRequest) -> HttpResponse:
    """Show the sign-up form for the invitation kept in the session, and accept it on POST."""
    invitation_id = request.session.get(SESSION_INVITATION)
    if invitation_id is None:
        return _refused(request, request.session.get(SESSION_REFUSAL) or "unknown")
    if request.user.is_authenticated:
        _sign_out_keeping(request, **{SESSION_INVITATION: invitation_id})
    try:
        invitation = invitation_check(invitation_id=invitation_id)
    except InvalidInvitationLink as refusal:
        return _refused(request, refusal.code)

    form = AcceptInvitationForm(request.POST or None, invitation=invitation)
    if request.method == "POST" and form.is_valid():
        try:
            user = invitation_accept(
                invitation_id=invitation.pk,
                full_name=form.cleaned_data["full_name"],
                password=form.cleaned_data["password1"],
            )
        except InvalidInvitationLink as refusal:
            return _refused(request, refusal.code)
        request.session.pop(SESSION_INVITATION, None)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")  # new session key
        return redirect("home")
    return render(request, "accounts/accept.html", {"form": form, "invitation": invitation})


def _refused(request: HttpRequest, code: str) -> HttpResponse:
    context = {"reason": code, "support_email": settings.INVITATION_SUPPORT_EMAIL}
    return render(request, "accounts/invitation_refused.html", context, status=REFUSAL_STATUS.get(code, 404))


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/home.html")
