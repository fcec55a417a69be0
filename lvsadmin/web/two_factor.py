"""Two-factor sign-in, enforced: a signed-in user who must use a second factor (lvsadmin.core.two_factor.required)
and whose session was not verified with one gets nothing but the pages to set one up and to sign out.

Without an authenticator they are sent to set one up, before anything else. With one (set up in another session
since this one signed in), the session is ended: signing in again asks for the code. Sessions verified by a
device keep working until that device is removed (django-otp's middleware checks it at every request).

Also the code step's state: after a right password, a user with an authenticator is not signed in yet; the
session remembers who, for TWO_FACTOR_CODE_SECONDS, until views/two_factor.login_code checks their code.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth import get_user_model, logout
from django.shortcuts import resolve_url
from django.urls import Resolver404, resolve, reverse

from lvsadmin.core import two_factor

from .pages import redirect

# What a user who still needs a second factor may open: setting it up, and leaving.
OPEN_WHILE_UNVERIFIED = {"two_factor", "logout", "login", "login_code"}


class TwoFactorRequiredMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if (user is not None and user.is_authenticated and not user.is_verified() and two_factor.required(user)
                and not self._open(request)):
            if two_factor.enabled(user):
                logout(request)
                return redirect(request, resolve_url(settings.LOGIN_URL))
            return redirect(request, reverse("two_factor"))
        return self.get_response(request)

    @staticmethod
    def _open(request) -> bool:
        if request.path_info.startswith("/" + settings.STATIC_URL.lstrip("/")):
            return True
        try:
            return resolve(request.path_info).url_name in OPEN_WHILE_UNVERIFIED
        except Resolver404:
            return True  # a 404 gives nothing away


# --- the code step of signing in: the password was right, the code is still to come ------------------------------

PENDING = "lvsadmin_two_factor_pending"


def begin_code_step(request, user, next_url: str):
    """Remember (in the session, not yet signed in) whose password was right, and ask for their code."""
    request.session.cycle_key()
    request.session[PENDING] = {"user": user.pk, "backend": user.backend, "next": next_url,
                                "until": time.time() + settings.TWO_FACTOR_CODE_SECONDS}
    return redirect(request, reverse("login_code"))


def pending_user(request):
    """(user, backend, next URL) of a code step under way and not expired, else None."""
    pending = request.session.get(PENDING)
    if not isinstance(pending, dict) or pending.get("until", 0) < time.time():
        return None
    user = get_user_model().objects.filter(pk=pending.get("user"), is_active=True).first()
    return (user, pending["backend"], pending["next"]) if user is not None else None


def end_code_step(request) -> None:
    request.session.pop(PENDING, None)
