"""Sign in, sign out, change password; each audited. A user with a second factor gives its code next
(views/two_factor.py) before they are signed in."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from lvsadmin.audit.log import Actor
from lvsadmin.core import two_factor, users

from .. import events
from ..roles import SIGNED_IN, policy, public
from ..two_factor import begin_code_step


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form):
        user = form.get_user()
        if two_factor.enabled(user):
            # The password was right; the session is signed in only once a code from the second factor is too.
            return begin_code_step(self.request, user, self.get_success_url())
        response = super().form_valid(form)
        events.login(self.request, user)
        return response

    def form_invalid(self, form):
        # Only the failure that locks is audited: anyone can fail to sign in, and the log must not be theirs to
        # grow. axes counts every failure (failures_since_start is set on a counted one, None while locked).
        request = self.request
        if getattr(request, "axes_locked_out", False) and getattr(request, "axes_failures_since_start", None):
            events.login_failed(request, form.data.get("username", ""),
                                reason=f"locked out after {request.axes_failures_since_start} failures")
        response = super().form_invalid(form)
        response.status_code = 422
        return response


def locked_out(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: the lock-out page, saying how long the lock still lasts."""
    lock = users.lockout_for(users.axes_username(request, credentials), getattr(request, "axes_ip_address", None))
    remaining = users.remaining_text(lock.remaining if lock else users.cool_off())
    return render(request, settings.AXES_LOCKOUT_TEMPLATE, {"remaining": remaining},
                  status=settings.AXES_HTTP_RESPONSE_CODE)


class LogoutView(auth_views.LogoutView):
    def post(self, request, *args, **kwargs):
        if request.user.is_authenticated:
            events.logout(request, request.user)
        return super().post(request, *args, **kwargs)


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "registration/password_change.html"

    def form_valid(self, form):
        user = form.user
        users.change_password(Actor.from_request(self.request), user, form.cleaned_data["new_password1"])
        update_session_auth_hash(self.request, user)
        messages.success(self.request, "Your password was changed.")
        return HttpResponseRedirect(reverse("dashboard"))

    def form_invalid(self, form):
        response = super().form_invalid(form)
        response.status_code = 422
        return response


login = public(LoginView.as_view())
logout = public(LogoutView.as_view())
password_change = policy(read=SIGNED_IN, write=SIGNED_IN)(PasswordChangeView.as_view())
