"""Rendering helpers: one URL serves a page and its HTMX fragments (template partials)."""

from __future__ import annotations

from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
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
    """The whole page, or (for an HTMX request targeting `#name`) only `template#name`."""
    name = fragment or fragment_name(request, fragments)
    return TemplateResponse(request, f"{template}#{name}" if name else template, context, status=status)


def redirect(request, url: str):
    """After a successful POST: a normal redirect, or for HTMX a client-side one (a full page load)."""
    if getattr(request, "htmx", False):
        return HttpResponseClientRedirect(url)
    return HttpResponseRedirect(url)


def query_without(request, *names: str) -> str:
    """The current query string without some parameters (to build sort and page links)."""
    params = request.GET.copy()
    for name in names:
        params.pop(name, None)
    return params.urlencode()
