"""What a token may do: each view names the scope it needs to read and the scope it needs to write.

The token must hold the scope and its user's current role must still allow it (tokens.allowed): a viewer's
token never writes, and a token made with `read` only never writes, whoever its user is.
"""

from __future__ import annotations

from rest_framework import permissions

from . import tokens
from .models import ApiToken


class TokenScope(permissions.BasePermission):
    """`read_scope` for GET/HEAD/OPTIONS, `write_scope` for the rest (views set both; None: not allowed)."""

    def has_permission(self, request, view):
        token = request.auth
        if not isinstance(token, ApiToken):
            return False
        if request.method not in view.allowed_methods:
            return True  # the view answers 405, which tells more than a 403 would
        unsafe = request.method not in permissions.SAFE_METHODS
        scope = getattr(view, "write_scope", None) if unsafe else getattr(view, "read_scope", "read")
        if scope is None:
            return False
        if not tokens.allowed(token, scope):
            role = tokens.role_of(token.user)
            may = ", ".join(tokens.scopes_for_role(role)) or "none"
            self.message = (f"this needs the scope {scope!r}: the token has {', '.join(token.scopes) or 'none'}"
                            f" and its user's role ({role or 'none'}) allows {may}")
            return False
        return True


class SignedInOrToken(permissions.BasePermission):
    """The schema and the docs: a signed-in user of the panel with a role, or a token with `read`."""

    def has_permission(self, request, view):
        if isinstance(request.auth, ApiToken):
            return tokens.allowed(request.auth, "read")
        return tokens.role_of(request.user) is not None
