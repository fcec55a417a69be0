"""Sessions end after SESSION_COOKIE_AGE idle seconds, and automatic refreshes are not activity; and the
Permissions-Policy header.

The dashboard and the counters refresh themselves every few seconds; with SESSION_SAVE_EVERY_REQUEST each
refresh would push the expiry forward and an unattended tab would stay signed in for ever (and write the
session row every five seconds). Requests marked `X-Poll` by the polling elements leave the session alone.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware
from django.utils.cache import patch_vary_headers

POLL_HEADER = "X-Poll"


class IdleSessionMiddleware(SessionMiddleware):
    def process_response(self, request, response):
        session = getattr(request, "session", None)
        if session is not None and request.headers.get(POLL_HEADER) and not session.modified:
            patch_vary_headers(response, ("Cookie",))
            return response
        return super().process_response(request, response)


class PermissionsPolicyMiddleware:
    """Sends settings.PERMISSIONS_POLICY: the browser features (camera, geolocation …) no page may use."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response
