"""The panel's /metrics for Prometheus (lvsadmin.monitoring.metrics): a machine's request, not a user's.

Not behind the sign-in (a scraper has no session and sends no CSRF token) and never anonymous: it carries the
bearer token METRICS_TOKEN (compared in constant time) and/or comes from METRICS_ALLOWED_NETWORKS; with both
configured it needs both. With neither, /metrics is off: 404, as if it did not exist.
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import Http404, HttpResponse
from django.views.decorators.http import require_safe

from lvsadmin.monitoring.metrics import exposition

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)  # checked by settings at start


def _from_allowed_network(request) -> bool:
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in _networks(tuple(settings.METRICS_ALLOWED_NETWORKS)))


def _has_token(request) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), settings.METRICS_TOKEN.encode())


@require_safe
def metrics(request):
    if not settings.METRICS_TOKEN and not settings.METRICS_ALLOWED_NETWORKS:
        raise Http404("/metrics is off: set METRICS_TOKEN or METRICS_ALLOWED_NETWORKS")
    if settings.METRICS_ALLOWED_NETWORKS and not _from_allowed_network(request):
        return HttpResponse("Not from a network allowed to scrape (METRICS_ALLOWED_NETWORKS).\n", status=403,
                            content_type="text/plain; charset=utf-8")
    if settings.METRICS_TOKEN and not _has_token(request):
        response = HttpResponse("A bearer token is needed (Authorization: Bearer …).\n", status=401,
                                content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="lvsadmin metrics"'
        return response
    body, content_type = exposition(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)


# Open without signing in (the URL walks read this mark): the checks above are the scraper's credential. GET and
# HEAD only, so no form, no session and no CSRF token is involved.
metrics.lvs_policy = {"public": True, "methods": ("GET", "HEAD")}
