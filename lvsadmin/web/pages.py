"""Rendering helpers: one URL serves a page and its HTMX fragments (template partials).

A response chosen by the HTMX headers says so (`Vary: HX-Request`, and `HX-Target` where the target picks the
fragment), so that no cache hands the fragment to a page load or the page to an HTMX swap.
"""

from __future__ import annotations

from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.cache import patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect


def fragment_name(request, fragments: tuple[str, ...]) -> str | None:
    """The partial an HTMX request asks for: the id of the element it targets, when it is one of ours."""
    htmx = getattr(request, "htmx", None)
    if not htmx or htmx.boosted or htmx.history_restore_request:
        return None
    target = htmx.target or ""
    return target if target in fragments else None


def render_page(request, template: str, context: dict, *, fragments: tuple[str, ...] = (), status: int = 200,
                fragment: str | None = None):
    """The whole page, or (for an HTMX request targeting `#name`) only `template#name`. `fragment`: the one the
    view already chose with `fragment_name` (pass its `fragments` too: they name what the response varies by)."""
    name = fragment or fragment_name(request, fragments)
    response = TemplateResponse(request, f"{template}#{name}" if name else template, context, status=status)
    patch_vary_headers(response, ("HX-Request", "HX-Target") if fragments or fragment else ("HX-Request",))
    return response


def redirect(request, url: str):
    """After a successful POST: a normal redirect, or for HTMX a client-side one (a full page load)."""
    response = HttpResponseClientRedirect(url) if getattr(request, "htmx", False) else HttpResponseRedirect(url)
    patch_vary_headers(response, ("HX-Request",))
    return response


def query_without(request, *names: str) -> str:
    """The current query string without some parameters (to build sort and page links)."""
    params = request.GET.copy()
    for name in names:
        params.pop(name, None)
    return params.urlencode()
