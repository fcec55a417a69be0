"""Sign in, sign out, change password; each audited."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.http import HttpResponseRedirect
from django.urls import reverse

from lvsadmin.audit.log import Actor
from lvsadmin.core import services

from .. import events
from ..roles import SIGNED_IN, policy, public


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form):
        response = super().form_valid(form)
        events.login(self.request, form.get_user())
        return response

    def form_invalid(self, form):
        locked = getattr(self.request, "axes_locked_out", False)
        events.login_failed(self.request, form.data.get("username", ""),
                            reason="locked out after repeated failures" if locked else "bad credentials")
        response = super().form_invalid(form)
        response.status_code = 422
        return response


class LogoutView(auth_views.LogoutView):
    def post(self, request, *args, **kwargs):
        if request.user.is_authenticated:
            events.logout(request, request.user)
        return super().post(request, *args, **kwargs)


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "registration/password_change.html"

    def form_valid(self, form):
        user = form.user
        services.change_password(Actor.from_request(self.request), user, form.cleaned_data["new_password1"])
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
