"""Roles and the server-side access check every view goes through.

Three roles, as auth groups (created by the web app's data migration):

- viewer: reads everything;
- operator: also edits the desired state, applies, takes backups, drains;
- admin: also users, clusters, balancers and schedules. Superusers count as admin.

Each view declares the role it needs to read (GET/HEAD) and the role it needs for unsafe methods
(POST/PUT/PATCH/DELETE) with `@policy(...)`. The URL-walking test reads these declarations, so a view
without one is a failing test, not a hole.
"""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponseNotAllowed
from django.shortcuts import render, resolve_url
from django.utils.http import urlencode
from django_htmx.http import HttpResponseClientRedirect

from lvsadmin.core.users import ROLES, stored_role

from . import events

VIEWER, OPERATOR, ADMIN = ROLES
SIGNED_IN = "signed_in"  # any active signed-in user, with or without a role (e.g. to change one's password)
RANK = {None: 0, SIGNED_IN: 0, VIEWER: 1, OPERATOR: 2, ADMIN: 3}
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def role_of(user) -> str | None:
    """The highest role the user holds, or None (anonymous, inactive or no group)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    cached = getattr(user, "_lvs_role", False)
    if cached is False:
        cached = user._lvs_role = stored_role(user)
    return cached


def has_role(user, role: str | None) -> bool:
    return RANK[role_of(user)] >= RANK[role]


class Can:
    """What the signed-in user may do, for templates: `{% if can.operate %}`."""

    def __init__(self, user):
        self.role = role_of(user)
        rank = RANK[self.role]
        self.view = rank >= RANK[VIEWER]
        self.operate = rank >= RANK[OPERATOR]
        self.administer = rank >= RANK[ADMIN]


def policy(read: str = VIEWER, write: str | None = None, methods: tuple[str, ...] | None = None):
    """Guard a view: `read` role to use it at all, `write` role for POST (None: read-only). Forms only POST:
    PUT, PATCH and DELETE are refused (405) unless `methods` lists them.

    Anonymous users are sent to the login page (HTMX: a client redirect). A signed-in user without the
    role gets a 403 page, and the refusal is audited (action `denied`).
    """
    allowed = tuple(methods) if methods else (SAFE_METHODS + (("POST",) if write else ()))

    def decorator(view):
        @wraps(view)
        def guarded(request, *args, **kwargs):
            if not request.user.is_authenticated:
                if getattr(request, "htmx", False):
                    return HttpResponseClientRedirect(
                        f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': request.path})}")
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, read):
                return _deny(request, read)
            if request.method not in allowed:
                return HttpResponseNotAllowed([m for m in allowed if m != "OPTIONS"])
            if request.method not in SAFE_METHODS and not has_role(request.user, write):
                return _deny(request, write)
            return view(request, *args, **kwargs)

        guarded.lvs_policy = {"read": read, "write": write, "methods": allowed}
        return guarded

    return decorator


def _deny(request, needed: str | None):
    events.denied(request, needed)
    return render(request, "403.html", {"needed": needed}, status=403)


def public(view):
    """Mark a view as open to anonymous users (sign in, sign out): the URL-walking test expects the mark."""
    view.lvs_policy = {"public": True}
    return view
