"""Health checks through the whole loop, with real Redis, the control worker and two agent workers: the agents
check real HTTP servers on loopback (and a MISC command on each balancer), act on their own (fake) kernels,
and the panel records the transitions as health events, shows each balancer's view, and keeps the desired state
and the audit log untouched."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lvsadmin.audit.log import Actor

from .harness import AGENT_KEYS, wait_for

pytestmark = pytest.mark.integration

ACTOR = Actor(username="alice", request_id="req-health")
VIP = "10.1.0.9"
A, B = "127.0.0.2", "127.0.0.3"
TIMING = {"interval": 1, "timeout": 0.5, "fall": 2, "rise": 1}


class Ok(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


class Backend:
    """An HTTP real server on a loopback address; stop() makes its port refuse connections."""

    def __init__(self, address: str, port: int = 0):
        self.httpd = ThreadingHTTPServer((address, port), Ok)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def checked(stack, tmp_path_factory):
    """Cluster `hc` with balancers hc1 and hc2 (agents running), TCP VIP:80 → A and B (HTTP on loopback) checked
    by HTTP; A's own check is a MISC command that fails on a balancer whose flag file exists."""
    from lvsadmin.core import services
    from lvsadmin.core.services import health

    flags = tmp_path_factory.mktemp("flags")
    backend_a = Backend(A)
    backend_b = Backend(B, backend_a.port)
    port = backend_a.port
    for name in ("hc1", "hc2"):
        stack.agent(name)
    cluster = services.create_cluster(ACTOR, name="hc")
    for name in ("hc1", "hc2"):
        services.create_balancer(ACTOR, cluster, name=name, public_key=AGENT_KEYS.get(name, ""))
    svc = services.create_service(ACTOR, cluster, protocol="tcp", address=VIP, port=80, scheduler="wrr")
    rs_a = services.create_real_server(ACTOR, svc, address=A, port=port, forward="masq", weight=10)
    services.create_real_server(ACTOR, svc, address=B, port=port, forward="masq", weight=10)
    health.set_service_check(ACTOR, svc, {"kind": "http", "path": "/health", **TIMING},
                             expected_version=health.check_version(svc))
    misc = f"sh -c 'test ! -e {flags}/down-$LVSADMIN_BALANCER'"  # the command runs on each balancer
    health.set_server_check(ACTOR, rs_a, {"kind": "misc", "command": misc, **TIMING},
                            expected_version=health.override_version(rs_a))
    cluster.refresh_from_db()
    revision = services.apply_cluster(ACTOR, cluster, reviewed_revision=cluster.desired_revision)
    from .test_loop import wait_applied

    for name in ("hc1", "hc2"):
        wait_applied(name, revision)
    yield {"cluster": cluster, "service": svc, "port": port, "flags": flags, "b": backend_b, "revision": revision}
    backend_a.stop()


def weights(stack, name: str) -> dict:
    svc = stack.agents[name].kernel.table().by_key().get(("tcp", VIP, 80))
    return {d.address: d.weight for d in svc.destinations} if svc else {}


def test_a_stopped_server_is_inhibited_by_every_agent_and_the_panel_records_why(stack, checked):
    from lvsadmin.audit.models import ChangeRecord
    from lvsadmin.core.models import Balancer, RealServer
    from lvsadmin.monitoring.models import BalancerHealth, HealthEvent

    audit_before = ChangeRecord.objects.count()
    checked["b"].stop()
    for name in ("hc1", "hc2"):
        wait_for(lambda n=name: weights(stack, n).get(B) == 0, 20, message=f"{name} to inhibit {B}")
    events = wait_for(lambda: len(HealthEvent.objects.filter(server__startswith=B, to_state="down")) == 2 and list(
        HealthEvent.objects.filter(server__startswith=B, to_state="down")), 20, message="two health events")
    assert {e.balancer_name for e in events} == {"hc1", "hc2"}
    assert all(e.from_state == "up" and "refused" in e.reason for e in events), [e.reason for e in events]
    state = wait_for(lambda: (h := BalancerHealth.objects.filter(balancer__name="hc1").first()) and h.state.get(
        "servers", {}).get(f"tcp|{VIP}|80", {}).get(f"{B}|{checked['port']}", {}).get("state") == "down" and h,
        20, message="hc1's heartbeat to carry the health state")
    assert state.state["servers"][f"tcp|{VIP}|80"][f"{B}|{checked['port']}"]["held"] is True
    # The desired state is untouched, nothing is drift, no one's change was audited.
    assert RealServer.objects.get(address=B).weight == 10
    assert {b.status for b in Balancer.objects.filter(cluster=checked["cluster"])} == {"in_sync"}
    assert ChangeRecord.objects.count() == audit_before


def test_balancers_that_disagree_about_a_server_are_both_shown(stack, checked):
    from django.contrib.auth import get_user_model
    from django.test import Client

    (checked["flags"] / "down-hc2").touch()
    wait_for(lambda: weights(stack, "hc2").get(A) == 0, 20, message="hc2 to take A down")
    assert weights(stack, "hc1").get(A) == 10
    from lvsadmin.monitoring.models import BalancerHealth

    def seen_by_hc2():
        state = BalancerHealth.objects.get(balancer__name="hc2").state
        server = state.get("servers", {}).get(f"tcp|{VIP}|80", {}).get(f"{A}|{checked['port']}", {})
        assert server.get("state") == "down", state
        return True

    wait_for(seen_by_hc2, 20, message="hc2's heartbeat")
    # No test transaction here: it would hold SQLite's write lock the control worker needs.
    user = get_user_model().objects.create_superuser("health-admin", password="a long password 123")
    client = Client()
    client.force_login(user)
    page = client.get(f"/services/{checked['service'].pk}/").content.decode()
    assert "up on hc1" in page and "down on hc2" in page, page[:3000]
    (checked["flags"] / "down-hc2").unlink()
    wait_for(lambda: weights(stack, "hc2").get(A) == 10, 20, message="hc2 to bring A back")
