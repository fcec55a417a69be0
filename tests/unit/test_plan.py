"""The reconcile planner: diff() and its kernel simulation apply_ops()."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lvsadmin.ipvs.model import Destination, Service, Table, Timeouts
from lvsadmin.ipvs.plan import (
    AddDest,
    AddService,
    DeleteDest,
    DeleteService,
    Drain,
    DrainDest,
    EditDest,
    EditService,
    PlanError,
    apply_ops,
    canonical,
    dest_key,
    diff,
    service_config,
    service_key,
    update_drain_times,
)

# --- strategies: small address pools, so that desired and actual tables overlap -------------------

V4 = ["198.18.0.1", "198.18.0.2", "198.18.0.3"]
V6 = ["2001:db8::1", "2001:db8::2"]
RS4 = ["198.19.0.1", "198.19.0.2", "198.19.0.3", "198.19.0.4"]
RS6 = ["2001:db8:1::1", "2001:db8:1::2"]


@st.composite
def destinations(draw, family: int):
    forward = draw(st.sampled_from(["masq", "route", "tunnel"]))
    tun_type = draw(st.sampled_from(["ipip", "gue", "gre"]))
    upper = draw(st.sampled_from([0, 10, 100]))
    return Destination(
        address=draw(st.sampled_from(RS4 if family == 4 else RS6)),
        port=draw(st.sampled_from([80, 8080])),
        forward=forward,
        weight=draw(st.integers(0, 5)),
        upper_threshold=upper,
        lower_threshold=draw(st.integers(0, upper)),
        tun_type=tun_type,
        tun_port=draw(st.sampled_from([0, 6080])) if tun_type == "gue" else 0,
        tun_csum=draw(st.sampled_from(["nocsum", "csum", "remcsum"] if tun_type == "gue" else ["nocsum", "csum"])),
        active_conns=draw(st.sampled_from([0, 0, 3])),
        inactive_conns=draw(st.sampled_from([0, 0, 2])),
    )


@st.composite
def services(draw):
    protocol = draw(st.sampled_from(["tcp", "udp", "sctp", "fwmark"]))
    family = draw(st.sampled_from([4, 6]))
    persistent = draw(st.booleans())
    scheduler = draw(st.sampled_from(["wlc", "rr", "sh", "mh"]))
    svc = Service(
        protocol=protocol,
        address="" if protocol == "fwmark" else draw(st.sampled_from(V4 if family == 4 else V6)),
        port=0 if protocol == "fwmark" else draw(st.sampled_from([80, 443])),
        fwmark=draw(st.sampled_from([1, 2])) if protocol == "fwmark" else 0,
        fwmark_family=family if protocol == "fwmark" else 4,
        scheduler=scheduler,
        persistent=persistent,
        timeout=draw(st.sampled_from([60, 360])) if persistent else 0,
        netmask=(draw(st.sampled_from([64, 128])) if family == 6 else draw(st.sampled_from([0xFFFFFFFF, 0xFFFFFF00])))
        if persistent
        else (128 if family == 6 else 0xFFFFFFFF),
        pe_name="",
        one_packet=protocol in ("udp", "fwmark") and draw(st.booleans()),
        sched_flags=draw(st.integers(0, 3)) if scheduler in ("sh", "mh") else 0,
    )
    seen = set()
    for d in draw(st.lists(destinations(family), max_size=5)):
        if dest_key(d) not in seen:
            seen.add(dest_key(d))
            svc.destinations.append(d)
    return svc


@st.composite
def tables(draw):
    out, seen = [], set()
    for svc in draw(st.lists(services(), max_size=6)):
        if service_key(svc) not in seen:
            seen.add(service_key(svc))
            out.append(svc)
    return Table(services=out)


def idle(table: Table) -> Table:
    """The same table with no connections anywhere: every removal goes through at once."""
    out = apply_ops(table, [])
    for svc in out.services:
        for d in svc.destinations:
            d.active_conns = d.inactive_conns = 0
    return out


PROPERTY = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)


# --- properties --------------------------------------------------------------------------------------


@PROPERTY
@given(tables(), tables())
def test_applying_the_diff_gives_desired_and_leaves_unowned_alone(desired, actual):
    actual = idle(actual)
    result = apply_ops(actual, diff(desired, actual))
    wanted = canonical(desired)
    got = canonical(result)
    before = canonical(actual)
    for key, value in wanted.items():
        assert got[key] == value
    for key, value in before.items():
        if key not in wanted:
            assert got[key] == value  # not ours: untouched
    assert set(got) == set(wanted) | set(before)


@PROPERTY
@given(tables(), tables())
def test_owning_the_whole_table_makes_it_exactly_desired(desired, actual):
    actual = idle(actual)
    result = apply_ops(actual, diff(desired, actual, owned=True))
    assert canonical(result) == canonical(desired)


@PROPERTY
@given(tables(), tables())
def test_a_second_diff_finds_nothing(desired, actual):
    actual = idle(actual)
    once = apply_ops(actual, diff(desired, actual, owned=True))
    assert diff(desired, once, owned=True) == []
    assert diff(desired, desired, owned=True) == []


@PROPERTY
@given(tables(), tables())
def test_operations_come_in_a_safe_order(desired, actual):
    phase = {"add_service": 0, "edit_service": 0, "add_dest": 1, "edit_dest": 1, "drain_dest": 2, "delete_dest": 3,
             "delete_service": 4}
    ops = diff(desired, actual, owned=True)
    phases = [phase[op.kind] for op in ops]
    assert phases == sorted(phases)
    # apply_ops raises on anything the kernel would refuse (adding twice, editing what is not there ...)
    apply_ops(actual, ops)


@PROPERTY
@given(tables(), tables())
def test_tcp_real_servers_with_connections_are_drained_first(desired, actual):
    ops = diff(desired, actual, owned=True)
    for op in ops:
        if op.kind == "delete_dest":
            d = op.dest
            assert op.service.protocol in ("udp", "sctp") or d.active_conns + d.inactive_conns == 0
        if op.kind == "drain_dest":
            assert op.dest.weight == 0 and op.old.weight != 0
            assert op.service.protocol not in ("udp", "sctp")


@PROPERTY
@given(tables(), st.data())
def test_a_change_to_one_object_yields_one_operation(table, data):
    table = idle(table)
    assume_services = [s for s in table.services]
    if not assume_services:
        return
    svc = data.draw(st.sampled_from(assume_services))
    changed = apply_ops(table, [])
    target = next(s for s in changed.services if service_key(s) == service_key(svc))
    choice = data.draw(st.sampled_from(["scheduler", "dest-weight", "add-dest", "drop-dest", "drop-service"]))
    if choice == "scheduler":
        target.scheduler = "lc" if target.scheduler != "lc" else "rr"
        target.sched_flags = 0
        want = EditService
    elif choice == "dest-weight" and target.destinations:
        target.destinations[0].weight += 7
        want = EditDest
    elif choice == "add-dest":
        new = Destination("198.19.9.9" if target.family == 4 else "2001:db8:9::9", 9999)
        target.destinations.append(new)
        want = AddDest
    elif choice == "drop-dest" and target.destinations:
        target.destinations.pop()
        want = DeleteDest  # idle: no connections, so no drain
    else:
        changed.services.remove(target)
        ops = diff(changed, table, owned=True)
        assert [type(op) for op in ops] == [DeleteService]
        return
    ops = diff(changed, table)
    assert [type(op) for op in ops] == [want]


# --- normalisation ------------------------------------------------------------------------------------


def test_address_spelling_hashed_and_defaults_do_not_count():
    desired = Table([Service("tcp", "2001:DB8:0:0::1", 80, destinations=[Destination("2001:db8:0::0:2", 80)])])
    actual = Table([Service("tcp", "2001:db8::1", 80, netmask=128, destinations=[Destination("2001:db8::2", 80)])])
    assert diff(desired, actual) == []


def test_netmask_and_timeout_count_only_when_persistent():
    a = Service("tcp", "198.18.0.1", 80, netmask=0xFFFFFF00, timeout=50)
    b = Service("tcp", "198.18.0.1", 80)
    assert diff(Table([a]), Table([b])) == []
    a.persistent = b.persistent = True
    b.timeout = 50
    assert [op.kind for op in diff(Table([a]), Table([b]))] == ["edit_service"]
    # an IPv6 persistent service with the model's default (IPv4 host) mask means prefix 128
    v6 = Service("tcp", "2001:db8::1", 80, persistent=True, timeout=360)
    kernel = Service("tcp", "2001:db8::1", 80, persistent=True, timeout=360, netmask=128)
    assert diff(Table([v6]), Table([kernel])) == []


def test_tunnel_fields_count_only_when_tunnelling():
    svc = Service("tcp", "198.18.0.1", 80)
    want = replace(svc, destinations=[Destination("198.19.0.1", 80, tun_type="gue", tun_port=5, tun_csum="csum")])
    have = replace(svc, destinations=[Destination("198.19.0.1", 80)])
    assert diff(Table([want]), Table([have])) == []
    want.destinations[0].forward = have.destinations[0].forward = "tunnel"
    assert [op.kind for op in diff(Table([want]), Table([have]))] == ["edit_dest"]
    # the tunnel port counts only for gue
    want.destinations[0] = Destination("198.19.0.1", 80, forward="tunnel", tun_type="ipip", tun_port=5)
    have.destinations[0] = Destination("198.19.0.1", 80, forward="tunnel", tun_type="ipip", tun_port=0)
    assert diff(Table([want]), Table([have])) == []


def test_live_data_does_not_count():
    d1 = Destination("198.19.0.1", 80, active_conns=5, inactive_conns=3, persistent_conns=1)
    d2 = Destination("198.19.0.1", 80)
    assert diff(Table([Service("udp", "198.18.0.1", 53, destinations=[d1])]),
                Table([Service("udp", "198.18.0.1", 53, destinations=[d2])])) == []


# --- ownership ------------------------------------------------------------------------------------------


def test_unowned_services_are_left_alone_unless_owned():
    mine = Service("tcp", "198.18.0.1", 80)
    theirs = Service("tcp", "198.18.0.2", 80, destinations=[Destination("198.19.0.1", 80)])
    actual = Table([mine, theirs])
    desired = Table([mine])
    assert diff(desired, actual) == []
    assert diff(desired, actual, owned=False) == []
    assert [str(op) for op in diff(desired, actual, owned=True)] == ["delete service TCP 198.18.0.2:80"]
    assert [op.kind for op in diff(desired, actual, owned={service_key(theirs)})] == ["delete_service"]
    assert [op.kind for op in diff(desired, actual, owned=[theirs])] == ["delete_service"]
    assert diff(desired, actual, owned={("tcp", "198.18.0.9", 80)}) == []
    assert [op.kind for op in diff(desired, actual, owned=lambda s: s.address == "198.18.0.2")] == ["delete_service"]


# --- draining ---------------------------------------------------------------------------------------------


def _one(protocol: str, **dest) -> tuple[Table, Table, tuple]:
    svc = Service(protocol, "198.18.0.1", 80)
    actual = Table([replace(svc, destinations=[Destination("198.19.0.1", 80, **dest)])])
    key = (service_key(svc), ("198.19.0.1", 80))
    return Table([svc]), actual, key


def test_tcp_server_with_connections_drains_then_waits_then_goes():
    desired, actual, key = _one("tcp", weight=4, active_conns=2, inactive_conns=1)
    ops = diff(desired, actual)
    assert [type(op) for op in ops] == [DrainDest]
    assert ops[0].dest.weight == 0 and ops[0].old.weight == 4
    drained = apply_ops(actual, ops)
    assert drained.services[0].destinations[0].weight == 0
    assert drained.services[0].destinations[0].active_conns == 2  # live data kept
    # weight 0, connections left, drain not timed out: nothing to do yet
    assert diff(desired, drained, drain=Drain({key: 100.0}, timeout=60, now=150.0)) == []
    # a drain not yet recorded starts now: nothing to do
    assert diff(desired, drained, drain=Drain({}, timeout=60, now=150.0)) == []
    # the deadline passed: delete
    assert [type(op) for op in diff(desired, drained, drain=Drain({key: 100.0}, timeout=60, now=160.0))] == [DeleteDest]
    # connections ended: delete, whatever the deadline
    idle_table = idle(drained)
    assert [type(op) for op in diff(desired, idle_table, drain=Drain({key: 100.0}, timeout=60, now=101.0))] == [
        DeleteDest]


def test_tcp_server_without_connections_goes_at_once():
    desired, actual, _key = _one("tcp", weight=4)
    assert [type(op) for op in diff(desired, actual)] == [DeleteDest]


@pytest.mark.parametrize("protocol", ["udp", "sctp"])
def test_udp_and_sctp_servers_go_at_once(protocol):
    desired, actual, _key = _one(protocol, weight=4, active_conns=9, inactive_conns=9)
    assert [type(op) for op in diff(desired, actual)] == [DeleteDest]


def test_fwmark_servers_drain_like_tcp():
    svc = Service("fwmark", fwmark=5)
    actual = Table([replace(svc, destinations=[Destination("198.19.0.1", 80, active_conns=1)])])
    assert [type(op) for op in diff(Table([svc]), actual)] == [DrainDest]


def test_a_drained_server_that_is_wanted_again_gets_its_weight_back():
    desired, actual, key = _one("tcp", weight=0, active_conns=2)
    desired.services[0].destinations.append(Destination("198.19.0.1", 80, weight=3))
    assert [type(op) for op in diff(desired, actual)] == [EditDest]
    assert update_drain_times({key: 5.0}, desired, actual, now=10.0) == {}


def test_update_drain_times_keeps_old_starts_and_adds_new_ones():
    desired, actual, key = _one("tcp", weight=0, active_conns=2)
    assert update_drain_times({}, desired, actual, now=10.0) == {key: 10.0}
    assert update_drain_times({key: 5.0, ("x",): 1.0}, desired, actual, now=10.0) == {key: 5.0}


# --- the simulation refuses what the kernel refuses ----------------------------------------------------------


def test_apply_ops_refuses_impossible_operations():
    svc = Service("tcp", "198.18.0.1", 80)
    d = Destination("198.19.0.1", 80)
    with pytest.raises(PlanError, match="already exists"):
        apply_ops(Table([svc]), [AddService(svc)])
    with pytest.raises(PlanError, match="no such service"):
        apply_ops(Table(), [AddDest(svc, d)])
    with pytest.raises(PlanError, match="no such destination"):
        apply_ops(Table([svc]), [DeleteDest(svc, d)])
    with pytest.raises(PlanError, match="no such service"):
        apply_ops(Table(), [DeleteService(svc)])


def test_apply_ops_does_not_touch_its_input():
    svc = Service("tcp", "198.18.0.1", 80, destinations=[Destination("198.19.0.1", 80)])
    table = Table([svc])
    apply_ops(table, [DrainDest(svc, replace(svc.destinations[0], weight=0)), DeleteService(svc)])
    assert table.services == [svc] and svc.destinations[0].weight == 1


def test_operations_print_like_a_plan():
    svc = Service("tcp", "2001:db8::1", 80)
    ops = diff(Table([replace(svc, destinations=[Destination("2001:db8::2", 80, weight=2)])]), Table())
    assert [str(op) for op in ops] == ["add service TCP [2001:db8::1]:80",
                                       "add dest TCP [2001:db8::1]:80 -> [2001:db8::2]:80 weight 2"]
    assert repr(ops[0]) == "<add service TCP [2001:db8::1]:80>"


# --- the same properties on the shared strategies (valid tables, as ipvsadm and the kernel take them) ---------


@st.composite
def edited(draw, table: Table) -> Table:
    """A desired table made from `table` by random edits: dropped, changed and new services and servers."""
    from tests.strategies import destinations as shared_destinations
    from tests.strategies import services as shared_services

    out = []
    for svc in apply_ops(table, []).services:
        action = draw(st.sampled_from(["keep", "keep", "drop", "settings", "servers"]))
        if action == "drop":
            continue
        if action == "settings":
            svc.scheduler = draw(st.sampled_from(["rr", "wlc", "lc"]))
            svc.sched_flags = 0
            svc.persistent = draw(st.booleans())
            svc.timeout = 300 if svc.persistent else 0
        if action == "servers":
            kept = []
            for d in svc.destinations:
                change = draw(st.sampled_from(["keep", "drop", "weight", "forward"]))
                if change == "drop":
                    continue
                if change == "weight":
                    d.weight = draw(st.integers(0, 65535))
                if change == "forward" and svc.protocol == "fwmark":
                    d.forward = draw(st.sampled_from(["masq", "route"]))
                kept.append(d)
            svc.destinations = kept
            new = draw(shared_destinations(svc))
            if all(dest_key(new) != dest_key(d) for d in kept):
                svc.destinations.append(new)
        out.append(svc)
    extra = draw(shared_services())
    if all(service_key(extra) != service_key(s) for s in out):
        out.append(extra)
    return Table(services=out)


@PROPERTY
@given(st.data())
def test_shared_strategies_diff_then_apply_gives_desired(data):
    from tests.strategies import tables as shared_tables

    actual = idle(data.draw(shared_tables(max_services=5, max_destinations=4)))
    desired = data.draw(edited(actual))
    for owned in (None, True):
        result = apply_ops(actual, diff(desired, actual, owned=owned))
        got, wanted = canonical(result), canonical(desired)
        assert {k: got[k] for k in wanted} == wanted
        if owned:
            assert got == wanted
        else:
            before = canonical(actual)
            assert {k: v for k, v in got.items() if k not in wanted} == {
                k: v for k, v in before.items() if k not in wanted}
        assert diff(desired, result, owned=owned) == []


# --- operations as ipvsadm command lines ----------------------------------------------------------------------

EXAMPLES = [
    (AddService(Service("tcp", "10.0.0.1", 80, scheduler="wrr")), "-A -t 10.0.0.1:80 -s wrr"),
    (EditService(Service("udp", "2001:db8::1", 53, scheduler="sh", persistent=True, timeout=600, netmask=64,
                         one_packet=True, sched_flags=3)),
     "-E -u [2001:db8::1]:53 -s sh -p 600 -M 64 -o -b sh-fallback,sh-port"),
    (AddService(Service("tcp", "10.0.0.1", 0, scheduler="rr", persistent=True, timeout=300, netmask=0xFFFFFF00,
                        pe_name="sip")),
     "-A -t 10.0.0.1:0 -s rr -p 300 -M 255.255.255.0 --pe sip"),
    (DeleteService(Service("fwmark", fwmark=7, fwmark_family=6)), "-D -f 7 -6"),
    (AddDest(Service("sctp", "10.0.0.1", 80), Destination("10.1.0.1", 80, "masq", 3, 100, 10)),
     "-a --sctp-service 10.0.0.1:80 -r 10.1.0.1:80 -m -w 3 -x 100 -y 10"),
    (EditDest(Service("tcp", "10.0.0.1", 443), Destination("10.1.0.2", 443, "tunnel", 2, tun_type="gue",
                                                         tun_port=6080, tun_csum="remcsum")),
     "-e -t 10.0.0.1:443 -r 10.1.0.2:443 -i -w 2 --tun-type gue --tun-port 6080 --tun-remcsum"),
    (DrainDest(Service("tcp", "10.0.0.1", 80), Destination("10.1.0.3", 8080, "masq", 0)),
     "-e -t 10.0.0.1:80 -r 10.1.0.3:8080 -m -w 0  # drain"),
    (DeleteDest(Service("tcp", "10.0.0.1", 80), Destination("2001:db8::3", 80)),
     "-d -t 10.0.0.1:80 -r [2001:db8::3]:80"),
]


@pytest.mark.parametrize(("op", "line"), EXAMPLES, ids=[op.kind for op, _ in EXAMPLES])
def test_an_operation_prints_as_the_ipvsadm_command_that_does_it(op, line):
    from lvsadmin.agent import planning
    from lvsadmin.ipvs.plan import command_line

    assert command_line(op) == line
    assert planning.describe is command_line  # the agent's reports and the plan page print the same lines
    assert command_line(planning.SetTimeouts(Timeouts(900, 120, 300))) == "--set 900 120 300"


_COMMAND_KINDS = {AddService: "add-service", EditService: "edit-service", DeleteService: "delete-service",
                  AddDest: "add-server", EditDest: "edit-server", DrainDest: "edit-server", DeleteDest: "delete-server"}


@PROPERTY
@given(st.data())
def test_an_operation_prints_as_ipvsadm_save_spells_it_and_reads_back_the_same(data):
    from lvsadmin.ipvs.plan import command_line
    from lvsadmin.ipvs.rules import Command, format_command, parse_command
    from tests.strategies import destinations as shared_destinations
    from tests.strategies import services as shared_services

    svc = data.draw(shared_services())
    dest = data.draw(shared_destinations(svc))
    for op in (AddService(svc), EditService(svc), DeleteService(svc), AddDest(svc, dest), EditDest(svc, dest),
               DrainDest(svc, replace(dest, weight=0)), DeleteDest(svc, dest)):
        line = command_line(op)
        cmd = Command(_COMMAND_KINDS[type(op)], service=op.service, destination=getattr(op, "dest", None))
        assert line == format_command(cmd) + ("  # drain" if op.kind == "drain_dest" else "")
        again = parse_command(line.removesuffix("  # drain"), resolver=lambda *a, **k: None)
        assert again.kind == cmd.kind and again.service.key == svc.key
        if op.kind in ("add_service", "edit_service"):
            assert service_config(again.service) == service_config(svc)
        if op.kind in ("add_dest", "edit_dest", "drain_dest"):
            assert again.destination.config() == op.dest.config()
