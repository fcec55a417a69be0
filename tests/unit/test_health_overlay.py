"""What the kernel should hold given the servers' health (lvsadmin.health.overlay.effective_table)."""

from __future__ import annotations

import copy
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lvsadmin.health.overlay import ServiceStatus, effective_table
from lvsadmin.health.spec import Check, Policy, Result, ServiceHealth, server_text
from lvsadmin.health.state import ServerState
from lvsadmin.ipvs.model import Destination, Service, Table, key_text
from tests.strategies import tables

CHECK = Check(fall=1, rise=1)
OK = Result(ok=True, reason="HTTP 200")
FAIL = Result(ok=False, reason="HTTP 503")


def service(*weights: int, vip: str = "10.0.0.1") -> Service:
    return Service(protocol="tcp", address=vip, port=80,
                   destinations=[Destination(address=f"192.0.2.{i}", port=80, weight=w)
                                 for i, w in enumerate(weights, start=1)])


def up() -> ServerState:
    return ServerState(CHECK, now=0.0)


def down(since: float = 1.0) -> ServerState:
    state = up()
    state.record(FAIL, since)
    return state


def came_back(at: float) -> ServerState:
    state = down(at - 1)
    state.record(OK, at)
    return state


def dynamic(weight: int) -> ServerState:
    state = up()
    state.record(Result(ok=True, reason=f"exit {weight + 2} → weight {weight}", weight=weight), 1.0)
    return state


class Servers:
    """ServerStates by (service text, server number), as the agent's state_of would find them."""

    def __init__(self, svc: Service, *states: ServerState | None):
        self.text = key_text(svc.key)
        self.states = {(self.text, server_text(d.address, d.port)): s for d, s in zip(svc.destinations, states)}

    def __call__(self, service: str, dest: Destination) -> ServerState | None:
        return self.states.get((service, server_text(dest.address, dest.port)))


def weights(table: Table, index: int = 0) -> list[tuple[str, int]]:
    return [(d.address, d.weight) for d in table.services[index].destinations]


def run(svc: Service, policy: Policy, *states, quorum=None, now: float = 100.0, others=(), previous=None):
    desired = Table(services=[svc, *others])
    servers = Servers(svc, *states)
    health = {servers.text: ServiceHealth(check=CHECK, policy=policy)}
    return desired, effective_table(desired, health, servers, quorum or {}, now, previous=previous)


def test_a_down_server_is_inhibited_at_weight_0_and_the_desired_table_is_left_as_it_was():
    other = service(5, vip="10.0.0.2")
    svc = service(3, 4)
    before = copy.deepcopy(Table(services=[svc, other]))
    desired, overlay = run(svc, Policy(), up(), down(), others=[other])
    assert weights(overlay.table) == [("192.0.2.1", 3), ("192.0.2.2", 0)]
    assert desired == before and svc.destinations[1].weight == 4
    assert overlay.table.services[1] is other  # a service without health is the same object
    assert overlay.table.services[0].destinations[0] is svc.destinations[0]
    text = key_text(svc.key)
    assert overlay.held == {(text, "192.0.2.2|80")}
    assert overlay.weights == {(text, "192.0.2.1|80"): 3, (text, "192.0.2.2|80"): 0}
    assert overlay.services == {text: ServiceStatus(quorum=None, fail_open=False, sorry=False)}


def test_a_down_server_of_a_remove_policy_leaves_the_table():
    _, overlay = run(service(3, 4, 5), Policy(on_failure="remove"), up(), down(), up())
    assert weights(overlay.table) == [("192.0.2.1", 3), ("192.0.2.3", 5)]
    assert len(overlay.held) == 1


def test_a_server_with_no_check_or_not_probed_yet_keeps_its_desired_weight():
    svc = service(3, 4, 5)
    servers = Servers(svc, None, None, down())
    text = servers.text
    health = {text: ServiceHealth(check=CHECK, overrides={"192.0.2.1|80": None})}
    desired = Table(services=[svc])
    overlay = effective_table(desired, health, servers, {}, 0.0)
    assert weights(overlay.table) == [("192.0.2.1", 3), ("192.0.2.2", 4), ("192.0.2.3", 0)]
    assert set(overlay.weights) == {(text, "192.0.2.2|80"), (text, "192.0.2.3|80")}  # only watched servers


def test_with_every_server_up_and_none_ramping_the_desired_table_itself_comes_back():
    desired, overlay = run(service(3, 4), Policy(slow_start=60, quorum=5), up(), came_back(at=10.0), now=100.0)
    assert overlay.table is desired
    assert overlay.held == set() and not overlay.ramping and overlay.events == []


def test_no_health_at_all_returns_the_desired_table_itself():
    desired = Table(services=[service(3)])
    assert effective_table(desired, {}, lambda s, d: down(), {}, 0.0).table is desired


def test_a_misc_dynamic_weight_replaces_the_desired_weight_even_above_it_and_0_keeps_the_server_up():
    _, overlay = run(service(3, 4, 5), Policy(quorum=10), dynamic(50), dynamic(0), up())
    assert weights(overlay.table) == [("192.0.2.1", 50), ("192.0.2.2", 0), ("192.0.2.3", 5)]
    assert overlay.quorum == {key_text(service().key): True}  # 50 + 0 + 5 healthy


def test_a_server_that_came_back_ramps_up_over_slow_start_from_weight_1():
    svc = service(100, 100, 1)
    _, overlay = run(svc, Policy(slow_start=60), came_back(at=100.0), came_back(at=70.0), came_back(at=99.0),
                     now=100.0)
    assert weights(overlay.table) == [("192.0.2.1", 2), ("192.0.2.2", 50), ("192.0.2.3", 1)]
    assert overlay.ramping
    text = key_text(svc.key)
    assert overlay.held == {(text, "192.0.2.1|80"), (text, "192.0.2.2|80")}
    _, later = run(svc, Policy(slow_start=60), came_back(at=100.0), came_back(at=70.0), came_back(at=99.0),
                   now=160.0)
    assert weights(later.table) == [("192.0.2.1", 100), ("192.0.2.2", 100), ("192.0.2.3", 1)]
    assert not later.ramping


def test_a_draining_server_is_left_at_weight_0_in_the_table_whatever_its_health():
    svc = service(0, 0, 0, 4)
    desired, overlay = run(svc, Policy(on_failure="remove", slow_start=60), down(), dynamic(9), came_back(99.0),
                           up())
    assert overlay.table is desired
    assert overlay.held == set()


def test_fail_open_keeps_in_the_servers_that_failed_last_beyond_the_share_allowed_down():
    svc = service(1, 2, 3, 4, 0)
    # The 5th server drains: not counted. 4 in rotation, half may go down: the two that failed first.
    _, overlay = run(svc, Policy(max_down_share=0.5), down(since=3.0), down(since=1.0), down(since=2.0), up(),
                     down(since=0.5))
    assert weights(overlay.table) == [("192.0.2.1", 1), ("192.0.2.2", 0), ("192.0.2.3", 0), ("192.0.2.4", 4),
                                      ("192.0.2.5", 0)]
    text = key_text(svc.key)
    assert overlay.services[text].fail_open
    assert overlay.events == [(text, "ok", "fail-open", "fail-open: 3 of 4 servers failing, 1 kept in")]
    assert (text, "192.0.2.1|80") not in overlay.held


def test_fail_open_breaks_ties_by_server_and_is_reported_once_when_it_starts_and_once_when_it_ends():
    svc = service(1, 1, 1)
    policy = Policy(on_failure="remove", max_down_share=0.34)
    _, first = run(svc, policy, down(5.0), down(5.0), down(5.0))
    assert weights(first.table) == [("192.0.2.2", 1), ("192.0.2.3", 1)]
    assert first.events[0][3] == "fail-open: 3 of 3 servers failing, 2 kept in"
    _, again = run(svc, policy, down(5.0), down(5.0), up(), previous=first.services)
    assert again.events == [] and weights(again.table) == [("192.0.2.2", 1), ("192.0.2.3", 1)]
    _, ended = run(svc, policy, down(5.0), up(), up(), previous=again.services)
    assert ended.events == [(key_text(svc.key), "fail-open", "ok", "fail-open ended")]
    assert not ended.services[key_text(svc.key)].fail_open


def test_quorum_is_lost_below_quorum_minus_hysteresis_and_the_sorry_server_serves_alone_as_in_keepalived():
    svc = service(10, 10, 10)
    text = key_text(svc.key)
    policy = Policy(quorum=25, hysteresis=5, sorry_server="198.51.100.9:8080", sorry_forward="masq")
    _, one_down = run(svc, policy, up(), up(), down())
    assert one_down.quorum == {text: True} and one_down.events == []  # 20 is not below 25 - 5
    _, two_down = run(svc, policy, up(), down(), down(), quorum=one_down.quorum)
    assert two_down.quorum == {text: False}
    assert two_down.events == [(text, "ok", "lost", "quorum lost")]
    assert two_down.services[text] == ServiceStatus(quorum="lost", fail_open=False, sorry=True)
    # The server still up is inhibited too (the policy's inhibit): the sorry server serves alone.
    assert two_down.table.services[0].destinations == [
        Destination("192.0.2.1", 80, weight=0), Destination("192.0.2.2", 80, weight=0),
        Destination("192.0.2.3", 80, weight=0), Destination("198.51.100.9", 8080, forward="masq", weight=1)]
    assert (text, "192.0.2.1|80") in two_down.held
    _, removed = run(svc, replace(policy, on_failure="remove"), up(), down(), down(), quorum=one_down.quorum)
    assert removed.table.services[0].destinations == [Destination("198.51.100.9", 8080, forward="masq", weight=1)]


def test_quorum_is_regained_only_at_quorum_plus_hysteresis_and_the_sorry_server_then_leaves():
    svc = service(10, 10, 10)
    text = key_text(svc.key)
    policy = Policy(quorum=25, hysteresis=5, sorry_server="198.51.100.9:8080")
    _, still = run(svc, policy, up(), up(), down(), quorum={text: False})
    assert still.quorum == {text: False} and still.events == []  # 20 is below 25 + 5
    assert len(still.table.services[0].destinations) == 4
    desired, back = run(svc, policy, up(), up(), up(), quorum=still.quorum)
    assert back.quorum == {text: True}
    assert back.events == [(text, "lost", "ok", "quorum regained")]
    assert back.table is desired and not back.services[text].sorry


def test_quorum_counts_a_ramping_server_at_its_ramped_weight_and_unwatched_servers_as_up():
    svc = service(10, 10, 10)
    policy = Policy(quorum=21, slow_start=100)
    _, overlay = run(svc, policy, None, came_back(at=50.0), down(), now=100.0)
    assert weights(overlay.table) == [("192.0.2.1", 10), ("192.0.2.2", 5), ("192.0.2.3", 0)]
    assert overlay.services[key_text(svc.key)].quorum == "lost"  # 10 + 5 < 21
    assert not overlay.services[key_text(svc.key)].sorry  # no sorry server set


def test_an_ipv6_sorry_server_is_read_from_brackets_and_one_of_another_family_is_not_put_in():
    svc = Service(protocol="tcp", address="2001:db8::1", port=443,
                  destinations=[Destination(address="2001:db8:1::1", port=443, weight=5)])
    policy = Policy(quorum=5, sorry_server="[2001:DB8::99]:8443")
    _, overlay = run(svc, policy, down())
    assert overlay.table.services[0].destinations[-1] == Destination("2001:db8::99", 8443, weight=1)
    _, other = run(svc, Policy(quorum=5, sorry_server="198.51.100.9:80"), down())
    assert [d.address for d in other.table.services[0].destinations] == ["2001:db8:1::1"]


# --- properties -------------------------------------------------------------------------------------------------

KINDS = ("unwatched", "unprobed", "up", "down", "ramping", "dynamic")
NOW = 100.0


@st.composite
def scenarios(draw):
    table = draw(tables(max_services=4, max_destinations=5, thresholds=False))
    health, states, dynamic_of = {}, {}, {}
    for svc in table.services:
        if not draw(st.booleans()):
            continue
        text = key_text(svc.key)
        overrides = {}
        for dest in svc.destinations:
            kind = draw(st.sampled_from(KINDS))
            server = server_text(dest.address, dest.port)
            if kind == "unwatched":
                overrides[server] = None
            elif kind == "up":
                states[(text, server)] = up()
            elif kind == "ramping":
                states[(text, server)] = came_back(at=NOW - 5)
            elif kind == "down":
                states[(text, server)] = down(since=draw(st.floats(0, 10)))
            elif kind == "dynamic":
                dynamic_of[(text, server)] = draw(st.integers(0, 300))
                states[(text, server)] = dynamic(dynamic_of[(text, server)])
        policy = Policy(on_failure=draw(st.sampled_from(("inhibit", "remove"))), quorum=draw(st.integers(0, 50)),
                        hysteresis=draw(st.integers(0, 5)), sorry_server=draw(st.sampled_from(("", "198.51.100.9:80"))),
                        max_down_share=draw(st.sampled_from((0.0, 0.3, 0.5, 1.0))),
                        slow_start=draw(st.sampled_from((0, 60))))
        health[text] = ServiceHealth(check=CHECK, policy=policy, overrides=overrides)
    return table, health, states, dynamic_of


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_overlay_never_edits_desired_never_raises_a_weight_and_leaves_services_without_health_alone(scenario):
    desired, health, states, dynamic_of = scenario
    before = copy.deepcopy(desired)
    overlay = effective_table(desired, health, lambda s, d: states.get((s, server_text(d.address, d.port))),
                              {}, NOW)
    assert desired == before
    assert [s.key for s in overlay.table.services] == [s.key for s in desired.services]
    for wanted, got in zip(desired.services, overlay.table.services):
        text = key_text(wanted.key)
        if text not in health:
            assert got is wanted
            continue
        by_key = {d.key: d for d in got.destinations}
        kept = [d.key for d in got.destinations if wanted.destination(*d.key) is not None]
        assert kept == [d.key for d in wanted.destinations if d.key in by_key]  # the order is kept
        for dest in wanted.destinations:
            server = (text, server_text(dest.address, dest.port))
            weight = by_key[dest.key].weight if dest.key in by_key else None
            assert (server in overlay.held) == (weight is None or weight < dest.weight)
            if dest.weight == 0:
                assert weight == 0
            elif weight is not None and server not in dynamic_of:
                assert weight <= dest.weight
            if weight is not None:
                assert by_key[dest.key].config()[2:] == dest.config()[2:]  # only the weight moves
        extra = [d for d in got.destinations if wanted.destination(*d.key) is None]
        assert extra == ([] if not overlay.services[text].sorry or wanted.destination("198.51.100.9", 80)
                         else [Destination("198.51.100.9", 80, weight=1)])


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_with_every_server_up_and_no_ramp_the_overlay_is_the_desired_table_itself(scenario):
    desired, health, states, _ = scenario
    everyone_up = {key: up() for key in states}
    overlay = effective_table(desired, health, lambda s, d: everyone_up.get((s, server_text(d.address, d.port))),
                              {}, NOW)
    if all(s.quorum != "lost" for s in overlay.services.values()):
        assert overlay.table is desired
        assert overlay.held == set() and not overlay.ramping
