"""Security events of the web panel, written to the audit chain explicitly: login, login_failed, logout, denied."""

from __future__ import annotations

from lvsadmin.audit.log import Actor, record
from lvsadmin.core.users import sign_in_name


def _client(request) -> dict:
    return {
        "address": request.META.get("REMOTE_ADDR", ""),
        "user_agent": sign_in_name(request.META.get("HTTP_USER_AGENT", ""))[:200],
    }


def login(request, user, **details) -> None:
    """`details`: how they signed in (second_factor …); the backend that checked the password is always said."""
    actor = Actor.for_user(user, getattr(request, "request_id", None))
    directory = str(getattr(user, "backend", "")).startswith("lvsadmin.core.directory.")
    details.setdefault("backend", "ldap" if directory else "local")
    record(actor, "login", user, object_type="user", object_repr=user.get_username(),
           after=dict(_client(request), **details))


def login_failed(request, username: str, reason: str = "bad credentials") -> None:
    name = sign_in_name(username)  # as typed, so no NUL (PostgreSQL) and no longer than a user name
    actor = Actor(username=name or "anonymous", request_id=getattr(request, "request_id", "") or "")
    if not actor.request_id:
        actor = Actor(username=actor.username)
    record(actor, "login_failed", object_type="user", object_repr=name, after=dict(_client(request), reason=reason))


def logout(request, user) -> None:
    actor = Actor.for_user(user, getattr(request, "request_id", None))
    record(actor, "logout", user, object_type="user", object_repr=user.get_username(), after=_client(request))


def denied(request, needed: str | None) -> None:
    """A signed-in user asked for something their role does not allow."""
    actor = Actor.from_request(request)
    record(actor, "denied", object_type="url", object_repr=f"{request.method} {request.path}"[:255],
           after=dict(_client(request), method=request.method, path=request.path[:500], needed=needed))
