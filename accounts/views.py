"""The provider's pages: accept an invitation, and a signed-in landing page.

The link's GET validates the token, keeps only the invitation's id (and the token's digest,
so a link replaced by a resend stops working) in the session and redirects to the token-free
form, in the manner of Django's PasswordResetConfirmView: the token never reaches a page's
Referer, a 4xx log line or the browser history twice. GET writes no invitation, user or
audit row, so a mail scanner that fetches the link does not use it up.
"""

import logging
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
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods

from .forms import AcceptInvitationForm
from .services import (
    InvalidInvitationLink,
    invitation_accept,
    invitation_check,
    invitation_for_token,
    invitation_refuse_accept,
)

logger = logging.getLogger(__name__)

SESSION_INVITATION = "_invitation_id"
SESSION_DIGEST = "_invitation_digest"
SESSION_REFUSAL = "_invitation_refusal"
REFUSAL_STATUS = {
    "unknown": 404,
    "malformed": 404,
    "replaced": 410,
    "expired": 410,
    "revoked": 410,
    "used": 410,
    "account_exists": 410,
    "role_withdrawn": 410,
}


def private_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Keep a credential-bearing page out of caches, referrers and search engines; reachable signed out."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response.setdefault("Referrer-Policy", "no-referrer")
        response["X-Robots-Tag"] = "noindex, nofollow"
        return response

    return login_not_required(never_cache(wrapped))


@private_page
@require_GET
@sensitive_variables("token")
def accept_link(request: HttpRequest, token: str) -> HttpResponse:
    """Validate the link's token and move to the token-free form. Changes no invitation."""
    try:
        invitation = invitation_for_token(token)
    except InvalidInvitationLink as refusal:
        logger.info("invitation link refused (%s)", refusal.code)
        # Whoever is signed in stays signed in: a bad link must not be a way to sign people out.
        request.session[SESSION_INVITATION] = None
        request.session[SESSION_DIGEST] = None
        request.session[SESSION_REFUSAL] = refusal.code
        return redirect("invitation_accept")
    if request.user.is_authenticated:
        logout(request)  # another person's session must not carry over into the new account
    else:
        # A fresh key: a session key planted in this browser beforehand (session fixation) must not
        # end up holding the invitation, or whoever planted it could submit the form first.
        request.session.cycle_key()
    request.session[SESSION_INVITATION] = invitation.pk
    request.session[SESSION_DIGEST] = invitation.token_digest
    request.session[SESSION_REFUSAL] = None
    return redirect("invitation_accept")


@private_page
@sensitive_post_parameters("password1", "password2")
@csrf_protect
@require_http_methods(["GET", "POST"])
def accept(request: HttpRequest) -> HttpResponse:
    """Show the sign-up form for the invitation kept in the session, and accept it on POST."""
    invitation_id = request.session.get(SESSION_INVITATION)
    digest = request.session.get(SESSION_DIGEST)
    if invitation_id is None:
        return _refused(request, request.session.get(SESSION_REFUSAL) or "unknown")
    if request.user.is_authenticated:
        logout(request)
        request.session[SESSION_INVITATION], request.session[SESSION_DIGEST] = invitation_id, digest
    try:
        invitation = invitation_check(invitation_id=invitation_id, token_digest=digest)
    except InvalidInvitationLink as refusal:
        if request.method == "POST":
            refusal = invitation_refuse_accept(invitation_id=invitation_id, token_digest=digest) or refusal
        return _refused(request, refusal.code)

    form = AcceptInvitationForm(request.POST if request.method == "POST" else None, invitation=invitation)
    if request.method == "POST" and form.is_valid():
        try:
            user = invitation_accept(
                invitation_id=invitation.pk,
                full_name=form.cleaned_data["full_name"],
                password=form.cleaned_data["password1"],
                token_digest=digest,
            )
        except InvalidInvitationLink as refusal:
            return _refused(request, refusal.code)
        for key in (SESSION_INVITATION, SESSION_DIGEST, SESSION_REFUSAL):
            request.session.pop(key, None)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")  # cycles the session key
        return redirect("home")
    response = render(request, "accounts/accept.html", {"form": form, "invitation": invitation})
    # The page holding the form is the one exception to "no-referrer": under that policy browsers send
    # `Origin: null` with the form's POST (Fetch standard), which Django's CSRF origin check refuses.
    # Its URL holds no token (the link redirected here), and same-origin sends no Referer elsewhere.
    response["Referrer-Policy"] = "same-origin"
    return response


def _refused(request: HttpRequest, code: str) -> HttpResponse:
    context = {"reason": code, "support_email": settings.INVITATION_SUPPORT_EMAIL}
    return render(request, "accounts/invitation_refused.html", context, status=REFUSAL_STATUS.get(code, 404))


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/home.html")
