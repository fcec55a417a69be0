"""Rotating an agent's key on a real balancer (README "Trust between the panel and its balancers"): in the IPVS
guest, beside the running agent, `python -m lvsadmin.agent.rekey` (what `scripts/run-agent --rekey` runs) with the
agent's environment; then an edit still reaches the kernel and its report is believed, signed by the new key alone.

The loop is kernel_loop's: Redis and the control worker on the host, the agent in the guest.
"""

from __future__ import annotations

import shlex
import sys

import pytest

from tests.integration.harness import panel_public_key, wait_for
from tests.kernel.kernel_loop import ACTOR, AGENT_KEY, NAME, SLOW, STATE, balancer, cluster, running, wait_applied

pytestmark = pytest.mark.kernel

VIP = "10.30.0.1"


@pytest.fixture(scope="module")
def loop(ipvs_guest, tmp_path_factory, django_db_blocker):
    with running(ipvs_guest, tmp_path_factory.mktemp("rekey-loop"), django_db_blocker) as lp:
        yield lp


def apply() -> int:
    from lvsadmin.core import services

    c = cluster()
    return services.apply_cluster(ACTOR, c, reviewed_revision=c.desired_revision)


def guest_key_fingerprint(loop) -> str:
    """The fingerprint of the key the agent keeps in its key file, in the guest."""
    code = f"from lvsadmin import signing; print(signing.fingerprint(signing.load_private_key({AGENT_KEY!r})))"
    return loop.vm.ipvs_guest.python(code).stdout.strip()


def test_a_rotated_agent_key_signs_the_next_apply_with_no_security_event(loop):
    from django.utils import timezone

    from lvsadmin.core import services
    from lvsadmin.core.models import SecurityEvent

    svc = services.create_service(ACTOR, cluster(), protocol="tcp", address=VIP, port=80, scheduler="rr")
    services.create_real_server(ACTOR, svc, address="10.30.1.1", port=80, forward="masq")
    wait_applied(apply())
    old = balancer().key_fingerprint
    assert old and guest_key_fingerprint(loop) == old
    started = timezone.now()

    # On the balancer, with the agent's environment (its key and state file as the running agent has them).
    env = {"LVSADMIN_BALANCER": NAME, "LVSADMIN_BROKER_URL": f"redis://{loop.broker_host}:{loop.redis.port}/0",
           "LVSADMIN_AGENT_STATE": STATE, "LVSADMIN_PANEL_PUBLIC_KEY": panel_public_key()}
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    said = loop.sh(f"export {exports}; {shlex.quote(sys.executable)} -m lvsadmin.agent.rekey", timeout=SLOW)
    assert f"{NAME}: sent the new key" in said and f"signed by the current key {old}" in said

    # The panel holds the new key, the agent signs with it and keeps it as its key file; the old key's grace ends.
    new = wait_for(lambda: (b := balancer()).key_fingerprint != old and b.key_fingerprint, 120, interval=0.5,
                   message="the panel to hold the new key")
    wait_for(lambda: guest_key_fingerprint(loop) == new, 120, interval=1, message="the agent to keep the new key")
    wait_for(lambda: not (until := balancer().previous_key_until) or until < timezone.now(), 120, interval=0.5,
             message="the old key's grace to end")

    # An edit after the rotation: in the real kernel, and the agent's report (new key only) believed.
    services.create_real_server(ACTOR, svc, address="10.30.1.2", port=80, forward="masq", weight=3)
    revision = apply()
    b = wait_applied(revision)
    assert f"-a -t {VIP}:80 -r 10.30.1.2:80 -m -w 3" in loop.save().splitlines()
    wait_for(lambda: balancer().status == "in_sync", 30, interval=0.5, message="in sync after the rotation")
    assert b.key_fingerprint == new == guest_key_fingerprint(loop) and not b.key_revoked
    assert not SecurityEvent.objects.filter(last_seen__gte=started).exists(), list(
        SecurityEvent.objects.values_list("source", "reason", "claimed", "detail"))
    assert "now signs with its new key" in loop.agent_log()
