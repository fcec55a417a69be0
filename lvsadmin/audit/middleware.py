"""The request id that every change record of one request shares.

A client could send any X-Request-ID and so choose what the audit log says (or make two requests look like
one). The header is kept only when a proxy we trust set it (REMOTE_ADDR in TRUSTED_PROXIES) and only as a
UUID; otherwise the request gets a new one. The id is sent back in the response's X-Request-ID.
"""

from __future__ import annotations

import ipaddress
import uuid
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.template.loader import render_to_string

from .log import ChainBroken

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_proxies() -> tuple[Network, ...]:
    """settings.TRUSTED_PROXIES (addresses or networks) parsed; a bad entry is refused, named."""
    return _parse(tuple(getattr(settings, "TRUSTED_PROXIES", ())))


@lru_cache(maxsize=8)
def _parse(entries: tuple[str, ...]) -> tuple[Network, ...]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"TRUSTED_PROXIES: {entry!r} is not an address or a network (e.g. 10.0.0.5, 10.0.0.0/24, ::1)")
    return tuple(networks)


def _from_trusted_proxy(request) -> bool:
    networks = trusted_proxies()
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in networks)


def request_id(request) -> str:
    """The id of this request: a trusted proxy's UUID (as 32 hex digits), else a new one."""
    incoming = request.headers.get("X-Request-ID", "")
    if incoming and len(incoming) <= 64 and _from_trusted_proxy(request):
        try:
            return uuid.UUID(incoming).hex
        except ValueError:
            pass
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        trusted_proxies()  # a bad setting stops the start, not the first request

    def __call__(self, request):
        request.request_id = request_id(request)
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response

    def process_exception(self, request, exception):
        """A write refused because the audit chain cannot be continued is the panel's own fault, not the
        user's: 503 with what to do, not a bare 500 (the service layer rolled the change back)."""
        if isinstance(exception, ChainBroken):
            page = render_to_string("503.html", {"message": str(exception)}, request=request)
            return HttpResponse(page, status=503)
        return None
