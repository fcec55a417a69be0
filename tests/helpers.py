"""Helpers of the tests: users in a role, a signed-in client, HTMX headers, the version an edit form was loaded at,
every URL of the project and a real URL for each route.

Plain functions, imported by name. The fixtures built on them (users in each role, their clients, the cluster
`web`, one object of each kind) are in tests/conftest.py.
"""

from __future__ import annotations

import re

from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

PASSWORD = "correct horse battery"


def make_user(username: str, role: str | None):
    from django.contrib.auth import get_user_model

    from lvsadmin.audit.log import Actor
    from lvsadmin.core import users

    if role is None:
        return get_user_model().objects.create_user(username=username, password=PASSWORD)
    return users.create_user(Actor.system("test"), username=username, password=PASSWORD, role=role)


def client_for(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def htmx(target: str | None = None) -> dict:
    """Headers of an HTMX request targeting `#target`."""
    headers = {"HTTP_HX_REQUEST": "true"}
    if target:
        headers["HTTP_HX_TARGET"] = target
    return headers


def version_in(html: str) -> str:
    """The version an edit form was loaded at (its hidden `version` field), to post back with the form."""
    return re.search(r'name="version" value="([0-9a-f]*)"', html).group(1)


def form_version(client, url: str) -> str:
    return version_in(client.get(url).content.decode())


def walk(patterns=None, prefix=""):
    """(route, name, callback) of every URL of the panel's pages (the REST API, under api/, answers with problem
    details and tokens instead of sign-in redirects: tests/unit/test_api_access.py walks it)."""
    for p in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(p, URLResolver) and str(p.pattern) == "api/":
            continue
        if isinstance(p, URLResolver):
            yield from walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p.name, p.callback


def concrete(route: str, objects: dict) -> str:
    """A real URL for a route: its converters filled with existing objects."""
    url = "/" + route
    url = url.replace("<slug:name>", objects["balancer_name"] if url.startswith("/balancers/")
                      else objects["cluster_name"])
    if "<int:pk>" in url:
        key = {"/services/": "service", "/servers/": "server", "/users/": "user",
               "/backups/": "backup", "/tokens/": "token"}[url[: url.index("/", 1) + 1]]
        url = url.replace("<int:pk>", str(objects[key]))
    assert "<" not in url, f"no object for {route}"
    return url


def from_panel(message: dict, task: str, queue: str) -> dict:
    """The body of a message the panel sent to the agent of `queue` (lvs.<name>), checked as that agent would."""
    from lvsadmin import signing
    from lvsadmin.core import trust

    public = trust.signer().public
    return signing.open_envelope(message, {signing.fingerprint(public): public}, task=task,
                                 to=queue.removeprefix("lvs.")).body
