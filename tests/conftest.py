"""Fixtures shared by the tiers: an actor, the cluster `web`, users in each role and their clients, one object of
each kind. Plain helpers (make_user, client_for, htmx, version_in, form_version) are in tests/helpers.py."""

import pytest

from lvsadmin.audit.log import Actor
from tests.helpers import client_for, make_user


@pytest.fixture
def actor():
    return Actor(username="alice", user_id=None, request_id="req-test")


@pytest.fixture
def cluster(db, actor):
    from lvsadmin.core import services

    return services.create_cluster(actor, name="web")


@pytest.fixture
def viewer(db):
    return make_user("vera", "viewer")


@pytest.fixture
def operator(db):
    return make_user("otto", "operator")


@pytest.fixture
def admin(db):
    return make_user("ada", "admin")


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
    from lvsadmin.core import services

    lb = services.create_balancer(actor, cluster, name="lb1", address="198.51.100.1")
    http = services.create_service(actor, cluster, protocol="tcp", address="10.0.0.1", port=80, scheduler="wrr",
                                   name="http")
    dns = services.create_service(actor, cluster, protocol="udp", address="10.0.0.53", port=53, scheduler="rr")
    rs1 = services.create_real_server(actor, http, address="192.0.2.11", port=80, weight=10)
    rs2 = services.create_real_server(actor, http, address="192.0.2.12", port=80, weight=20)
    rs3 = services.create_real_server(actor, dns, address="192.0.2.53", port=53)
    cluster.refresh_from_db()
    return {"cluster": cluster, "lb": lb, "http": http, "dns": dns, "rs1": rs1, "rs2": rs2, "rs3": rs3}


@pytest.fixture
def objects(web, viewer):
    """One object of each kind a URL names (the URL walks of test_web_access and the hostile tier fill routes
    with them)."""
    return {"cluster_name": web["cluster"].name, "balancer_name": web["lb"].name, "service": web["http"].pk,
            "server": web["rs1"].pk, "user": viewer.pk, "backup": _backup_of(web["lb"]).pk,
            "token": _token_of(viewer).pk}


def _token_of(user):
    from lvsadmin.api.tokens import create_token

    return create_token(Actor.system("test"), user, name="walked", scopes=["read"])[0]


def _backup_of(balancer):
    from lvsadmin.agent.capture import backup_payload
    from lvsadmin.backups.services import store_backup
    from lvsadmin.core.selectors import desired_table

    payload = backup_payload(balancer.name, desired_table(balancer.cluster), "manual")
    return store_backup(Actor.system("test"), balancer, text=payload["text"], document=payload["document"],
                        trigger="manual")
