"""Two-factor sign-in pages: the code step after the password, and a user's own set-up (authenticator, recovery
codes, turning it off). The rules and the audited writes are lvsadmin.core.two_factor's.

A wrong code at sign-in counts towards django-axes's lock-out like a wrong password (sent as a failed sign-in of
that user name), and is audited: only someone who knew the password gets that far.
"""

from __future__ import annotations

import django_otp
import qrcode
import qrcode.image.svg
from axes.handlers.proxy import AxesProxyHandler
from django import forms
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe

from lvsadmin.core import two_factor

from .. import events
from ..forms import bind_errors
from ..pages import redirect
from ..roles import SIGNED_IN, policy, public
from ..two_factor import end_code_step, pending_user
from .auth import locked_out
from .common import actor


class CodeForm(forms.Form):
    code = forms.CharField(label="Code", max_length=64, strip=True,
                           widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True,
                                                         "inputmode": "text", "spellcheck": "false"}))


@public
def login_code(request):
    """The second step of signing in: a code from the authenticator, or a recovery code."""
    pending = pending_user(request)
    if pending is None:
        end_code_step(request)
        return redirect(request, reverse("login"))
    user, backend, next_url = pending
    credentials = {"username": user.get_username()}
    if AxesProxyHandler.is_locked(request, credentials):
        end_code_step(request)
        return locked_out(request, credentials=credentials)
    form = CodeForm(request.POST or None)
    wait = two_factor.throttled_for(user) if request.method == "POST" else 0
    if wait > 0:
        # django-otp's own back-off after a wrong code: said as it is, and not counted as another failure
        form.is_valid()
        form.add_error("code", f"Wrong codes in a row: wait {wait} second{'s' if wait > 1 else ''}, then try again.")
    elif request.method == "POST" and form.is_valid():
        device = two_factor.verify(user, form.cleaned_data["code"])
        if device is not None:
            return _signed_in(request, user, backend, device, next_url)
        form.add_error("code", two_factor.WRONG_CODE)
        # Counted by axes like a wrong password; the failure that locks turns this response into the lock-out page.
        user_login_failed.send(sender=__name__, credentials=credentials, request=request)
        reason = "wrong two-factor code"
        if getattr(request, "axes_locked_out", False):
            end_code_step(request)
            reason += f"; locked out after {getattr(request, 'axes_failures_since_start', None) or 'too many'} failures"
        events.login_failed(request, user.get_username(), reason=reason)
    status = 422 if form.is_bound and form.errors else 200
    return render(request, "registration/login_code.html", {"form": form}, status=status)


def _signed_in(request, user, backend: str, device, next_url: str):
    end_code_step(request)
    auth_login(request, user, backend)
    django_otp.login(request, device)
    recovery = two_factor.is_recovery_code(device)
    events.login(request, user, second_factor="recovery code" if recovery else "authenticator")
    if recovery:
        left = two_factor.recovery_codes_left(user)
        messages.warning(request, f"You signed in with a recovery code: it cannot be used again ({left} left). "
                                  "Make new ones on your two-factor page if you are running out.")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        next_url = reverse("dashboard")
    return redirect(request, next_url)


# --- a user's own set-up ------------------------------------------------------------------------------------


def qr_svg(text: str) -> str:
    """`text` as a QR code in inline SVG: the Content-Security-Policy allows no data: image or inline style."""
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2)
    return image.to_string(encoding="unicode")


@policy(read=SIGNED_IN, write=SIGNED_IN)
def two_factor_page(request):
    """GET: whether two-factor sign-in is on. POST `action`: start (a new secret, to confirm), confirm (turns it on
    and shows the recovery codes once), regenerate (new recovery codes), disable; the last two need a code."""
    user = request.user
    action = request.POST.get("action", "") if request.method == "POST" else ""
    form = CodeForm(request.POST if action in ("confirm", "regenerate", "disable") else None)
    context = {"form": form, "enabled": two_factor.enabled(user), "required": two_factor.required(user),
               "codes_left": two_factor.recovery_codes_left(user), "action": action}
    if action == "start":
        return _enrolment(request, context, two_factor.start_enrolment(user))
    if action in ("confirm", "regenerate", "disable") and form.is_valid():
        code = form.cleaned_data["code"]
        try:
            if action == "confirm":
                device, codes = two_factor.confirm_enrolment(actor(request), user, code)
                django_otp.login(request, device)  # this session has now shown the second factor
                return _codes(request, codes, "Two-factor sign-in is on.")
            if action == "regenerate":
                return _codes(request, two_factor.regenerate_recovery_codes(actor(request), user, code),
                              "New recovery codes: the old ones no longer work.")
            two_factor.disable(actor(request), user, code)
            messages.success(request, "Two-factor sign-in is off." + (
                " It is required for your account: set it up again." if context["required"] else ""))
            return redirect(request, reverse("two_factor"))
        except ValidationError as exc:
            bind_errors(form, exc)
    if action == "confirm":
        return _enrolment(request, context, two_factor.authenticator(user, confirmed=False), status=422)
    if action and action not in ("start", "confirm", "regenerate", "disable"):
        context["error"] = "Unknown action: use the page's buttons."
    elif action in ("regenerate", "disable") and not context["enabled"]:
        context["error"] = "Two-factor sign-in is off: there is nothing to change."
    status = 422 if context.get("error") or (form.is_bound and form.errors) else 200
    return render(request, "web/two_factor.html", context, status=status)


def _enrolment(request, context: dict, device, status: int = 200):
    if device is None:  # a confirm with no set-up under way (another tab finished it)
        return redirect(request, reverse("two_factor"))
    secret = two_factor.base32_secret(device)
    context = dict(context, qr=mark_safe(qr_svg(device.config_url)),  # noqa: S308 (our own SVG)
                   secret=" ".join(secret[i:i + 4] for i in range(0, len(secret), 4)))
    return render(request, "web/two_factor_enrol.html", context, status=status)


def _codes(request, codes: list[str], message: str):
    response = render(request, "web/two_factor_codes.html", {"codes": codes, "message": message})
    response["Cache-Control"] = "no-store"  # shown once: not kept by the browser's cache either
    return response
