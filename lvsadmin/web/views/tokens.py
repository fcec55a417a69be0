"""API tokens, for every user with a role: one's own tokens (name, scopes, expiry, allowed addresses, last use),
a new one (its text shown once, on the page that made it), revoking one; for admins, every user's tokens, any of
which they may revoke. The writes are lvsadmin.api.tokens'."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone

from lvsadmin.api import tokens
from lvsadmin.api.models import ApiToken

from ..forms import bind_errors
from ..pages import redirect, render_page
from ..roles import ADMIN, VIEWER, policy, role_of
from .common import actor

MAX_DAYS = 3650


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="To tell your tokens apart, e.g. ci-deploy")
    scopes = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, choices=(),
                                       help_text="read: GET · write: services and real servers · apply: plan and "
                                                 "apply · admin: clusters, balancers, users")
    expires_in_days = forms.IntegerField(required=False, min_value=1, max_value=MAX_DAYS, label="Expires in (days)",
                                         help_text=f"1..{MAX_DAYS}; empty: never")
    allowed_networks = forms.CharField(required=False, max_length=2000, label="Allowed addresses",
                                       widget=forms.Textarea(attrs={"rows": 2}),
                                       help_text="Addresses or networks, comma-separated; empty: any address")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["scopes"].choices = [(s, s) for s in tokens.scopes_for_role(role_of(user))]


@policy(read=VIEWER, write=VIEWER)
def token_list(request):
    form = TokenForm(request.POST or None, user=request.user, initial={"scopes": ["read"]})
    made = None
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        days = data.get("expires_in_days")
        try:
            made = tokens.create_token(actor(request), request.user, name=data["name"], scopes=data["scopes"],
                                       expires=timezone.now() + timedelta(days=days) if days else None,
                                       allowed_networks=data.get("allowed_networks") or "")
        except ValidationError as exc:
            bind_errors(form, exc)
        else:
            form = TokenForm(user=request.user, initial={"scopes": ["read"]})
    if form.is_bound and form.errors:
        status = 422
    mine = ApiToken.objects.filter(user=request.user).order_by("-created", "-id")
    return render_page(request, "web/tokens.html", {
        "tokens": mine, "form": form, "made": made and made[0], "secret": made and made[1], "nav": "tokens",
        "api_url": request.build_absolute_uri("/api/v1/")}, status=status)


class RevokeForm(forms.Form):
    token = forms.IntegerField(min_value=1, max_value=2**63 - 1)


@policy(read=VIEWER, write=VIEWER)
def token_revoke(request):
    """POST (the Revoke buttons of the list): revoke one of one's own tokens."""
    form = RevokeForm(request.POST or None)
    if request.method == "POST":
        if not form.is_valid():
            return HttpResponseBadRequest("token: the id of one of your tokens")
        token = get_object_or_404(ApiToken, pk=form.cleaned_data["token"], user=request.user)
        tokens.revoke_token(actor(request), token)
        messages.success(request, f"Revoked the token {token.name}: it is refused from now on.")
    return redirect(request, reverse("tokens"))


# --- every user's tokens, for admins -----------------------------------------------------------------

PER_PAGE = 50


class TokenSearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=100, label="Search", help_text="Name, user or token id")
    page = forms.IntegerField(required=False, min_value=1, max_value=2**31 - 1)


@policy(read=ADMIN)
def token_admin(request):
    """Every user's tokens: name, user, scopes, last use (time and address), expiry; search and pages."""
    form = TokenSearchForm(request.GET)
    valid = form.is_valid()
    found = ApiToken.objects.select_related("user").order_by("user__username", "-created", "-id")
    q = form.cleaned_data.get("q", "").strip() if valid else ""
    if q:
        found = found.filter(Q(name__icontains=q) | Q(user__username__icontains=q) | Q(key_id__icontains=q))
    page = Paginator(found, PER_PAGE).get_page(form.cleaned_data.get("page") if valid else 1)
    return render_page(request, "web/tokens_admin.html", {"form": form, "page_obj": page, "q": q, "nav": "users"},
                       fragments=("tokens",), status=200 if valid else 422)


@policy(read=ADMIN, write=ADMIN)
def token_admin_revoke(request, pk):
    """GET: ask, naming the token and its user; POST: revoke it (audited as the admin's)."""
    token = get_object_or_404(ApiToken.objects.select_related("user"), pk=pk)
    if request.method == "POST":
        tokens.revoke_token(actor(request), token)
        messages.success(request, f"Revoked {token.user}'s token {token.name}: it is refused from now on.")
        return redirect(request, reverse("tokens_admin"))
    return render_page(request, "web/token_revoke.html", {"token": token, "nav": "users"})
