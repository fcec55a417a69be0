"""Fixtures of the web tests: users in each role, signed-in clients, a small cluster.

Test modules import them with `from tests.unit.conftest_web import *  # noqa: F403` (they are not in the
shared tests/conftest.py, which the lead owns).
"""

from __future__ import annotations

import pytest
from django.test import Client

from lvsadmin.audit.log import Actor
from lvsadmin.core import services, users

PASSWORD = "correct horse battery"


def make_user(username: str, role: str | None):
    from django.contrib.auth import get_user_model

    if role is None:
        return get_user_model().objects.create_user(username=username, password=PASSWORD)
    return users.create_user(Actor.system("test"), username=username, password=PASSWORD, role=role)


@pytest.fixture
def viewer(db):
    return make_user("vera", "viewer")


@pytest.fixture
def operator(db):
    return make_user("otto", "operator")


@pytest.fixture
def admin(db):
    return make_user("ada", "admin")


def client_for(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def viewer_client(viewer):
    return client_for(viewer)


@pytest.fixture
def operator_client(operator):
    return client_for(operator)


@pytest.fixture
def group_admin_client(admin):
    return client_for(admin)


@pytest.fixture
def web(db, actor, cluster):
    """The cluster `web` with a balancer, two services and three real servers."""
    lb = services.create_balancer(actor, cluster, name="lb1", address="198.51.100.1")
    http = services.create_service(actor, cluster, protocol="tcp", address="10.0.0.1", port=80, scheduler="wrr",
                                   name="http")
    dns = services.create_service(actor, cluster, protocol="udp", address="10.0.0.53", port=53, scheduler="rr")
    rs1 = services.create_real_server(actor, http, address="192.0.2.11", port=80, weight=10)
    rs2 = services.create_real_server(actor, http, address="192.0.2.12", port=80, weight=20)
    rs3 = services.create_real_server(actor, dns, address="192.0.2.53", port=53)
    cluster.refresh_from_db()
    return {"cluster": cluster, "lb": lb, "http": http, "dns": dns, "rs1": rs1, "rs2": rs2, "rs3": rs3}


def htmx(target: str | None = None) -> dict:
    """Headers of an HTMX request targeting `#target`."""
    headers = {"HTTP_HX_REQUEST": "true"}
    if target:
        headers["HTTP_HX_TARGET"] = target
    return headers


def version_in(html: str) -> str:
    """The version an edit form was loaded at (its hidden `version` field), to post back with the form."""
    import re

    return re.search(r'name="version" value="([0-9a-f]*)"', html).group(1)


def form_version(client, url: str) -> str:
    return version_in(client.get(url).content.decode())
