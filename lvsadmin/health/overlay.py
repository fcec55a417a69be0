"""What the kernel should hold given the servers' health: effective weight = desired weight × health × ramp.

Health is an overlay on the desired table, never an edit of it: the agent computes this after every transition
(and about every second while a server ramps up) and converges the kernel to the result, so a reconcile keeps
inhibited servers inhibited and nothing of it is drift. The rules are keepalived's, PyBal's and HAProxy's:

- a server with no check, or not probed yet, keeps its desired weight;
- a down server gets weight 0 and stays in the table with its connections (`inhibit`, keepalived's
  inhibit_on_failure), or leaves the table (`remove`);
- an up server with a MISC dynamic weight gets that weight (keepalived's misc_dynamic);
- a server that came back ramps from weight 1 to its weight over `slow_start` seconds (HAProxy's slowstart);
- a desired weight of 0 (draining, or set so) is left alone: health never raises it, nor cuts a drain short;
- fail-open (PyBal's depool threshold): never more than max_down_share of a service's servers down: the ones
  that failed first stay down, the later ones are kept in at their weight;
- quorum (keepalived): when the healthy weight falls below quorum − hysteresis the sorry server joins the table
  and serves alone (the real servers still up are inhibited or removed as failed ones are), until the healthy
  weight is back at quorum + hysteresis.

It runs over tables of 1,000 services × 10 servers: one pass, and only the services it changes are copied
(shallowly); the others, and `desired` itself when nothing changes, are returned as the same objects, which the
agent's fast paths (and its cache of the desired table) rely on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from lvsadmin.health.spec import Policy, ServiceHealth, server_text
from lvsadmin.health.state import DOWN, ServerState
from lvsadmin.health.validate import sorry_server_error
from lvsadmin.ipvs.model import FORWARDS, Destination, Service, Table, key_text

OK = "ok"
LOST = "lost"
FAIL_OPEN = "fail-open"


@dataclass
class ServiceStatus:
    quorum: str | None  # "ok" | "lost" | None (no quorum set)
    fail_open: bool  # more servers fail than max_down_share lets down: some failing ones are kept in
    sorry: bool  # the sorry server is in the table


@dataclass
class Overlay:
    table: Table  # what the kernel should hold; `desired` itself when health changes nothing
    services: dict[str, ServiceStatus] = field(default_factory=dict)  # by service key text, services with health
    weights: dict[tuple[str, str], int] = field(default_factory=dict)  # (service, server text) → effective weight
    held: set[tuple[str, str]] = field(default_factory=set)  # kept below the desired weight, or out of the table
    quorum: dict[str, bool] = field(default_factory=dict)  # True: quorum held; feed it back next time (hysteresis)
    ramping: bool = False  # a server is still ramping up: compute again in about a second
    # Service-wide transitions: (service text, from, to, reason), e.g. ("tcp|10.0.0.1|80", "ok", "lost",
    # "quorum lost") or (…, "ok", "fail-open", "fail-open: 3 of 4 servers failing, 1 kept in").
    events: list[tuple[str, str, str, str]] = field(default_factory=list)


StateOf = Callable[[str, Destination], "ServerState | None"]


def effective_table(desired: Table, health: dict[str, ServiceHealth], state_of: StateOf, quorum: dict[str, bool],
                    now: float, *, previous: dict[str, ServiceStatus] | None = None) -> Overlay:
    """The table the kernel should hold now.

    state_of(service text, destination) gives the ServerState of a destination that has a check (None: not probed
    yet); quorum is the last call's Overlay.quorum (a service not in it starts with its quorum held); previous, the
    last call's Overlay.services, lets fail-open be reported once when it starts and once when it ends.
    """
    overlay = Overlay(table=desired)
    if not health:
        return overlay
    services, changed = [], False
    for svc in desired.services:
        text = key_text(svc.key)
        service_health = health.get(text)
        if service_health is None:
            services.append(svc)
            continue
        before = previous.get(text) if previous is not None else None
        new = _service(svc, text, service_health, state_of, quorum.get(text, True), before, now, overlay)
        changed = changed or new is not svc
        services.append(new)
    if changed:
        overlay.table = replace(desired, services=services)
    return overlay


@dataclass(slots=True)
class _Server:
    """One destination's verdict while a service is worked out."""

    dest: Destination
    text: str
    watched: bool  # it has a check
    state: ServerState | None  # None: no check, or not probed yet
    weight: int  # its effective weight (when not removed)
    up: bool  # counts towards quorum
    removed: bool = False  # out of the table (on_failure "remove")


def _service(svc: Service, text: str, health: ServiceHealth, state_of: StateOf, had_quorum: bool,
             before: ServiceStatus | None, now: float, overlay: Overlay) -> Service:
    """One service with health: its servers' effective weights, fail-open, quorum; `svc` itself if unchanged."""
    policy = health.policy
    servers = [_server(dest, text, health, state_of, policy, now, overlay) for dest in svc.destinations]
    fail_open = _fail_open(servers, policy)
    status = ServiceStatus(quorum=None, fail_open=fail_open is not None, sorry=False)
    _report_fail_open(text, fail_open, before, overlay)
    sorry = None
    if policy.quorum > 0:
        has_quorum = _quorum(servers, policy, had_quorum, text, overlay)
        status.quorum = OK if has_quorum else LOST
        sorry = None if has_quorum else _sorry_server(policy, svc.family)
    if sorry is not None:
        _sorry_alone(servers, sorry, policy)
    destinations, changed = [], False
    for server in servers:
        if server.watched:
            overlay.weights[(text, server.text)] = 0 if server.removed else server.weight
        if server.removed or server.weight < server.dest.weight:
            overlay.held.add((text, server.text))
        if server.removed:
            changed = True
        elif server.weight != server.dest.weight:
            destinations.append(replace(server.dest, weight=server.weight))
            changed = True
        else:
            destinations.append(server.dest)
    if sorry is not None:
        status.sorry = True
        if not any(d.key == sorry.key for d in destinations):  # a real server that is also the sorry one
            destinations.append(sorry)
            changed = True
    overlay.services[text] = status
    return replace(svc, destinations=destinations) if changed else svc


def _server(dest: Destination, service: str, health: ServiceHealth, state_of: StateOf, policy: Policy,
            now: float, overlay: Overlay) -> _Server:
    text = server_text(dest.address, dest.port)
    check = health.check_for(dest.address, dest.port)
    watched = check is not None
    state = state_of(service, dest) if watched else None
    if state is None or dest.weight == 0:
        # Unwatched, not probed yet, or out of rotation by configuration (a drain ends on its own schedule).
        return _Server(dest, text, watched, state, dest.weight, up=state is None or state.state != DOWN)
    if state.state == DOWN:
        return _Server(dest, text, watched, state, 0, up=False, removed=policy.on_failure == "remove")
    weight = dest.weight if state.dynamic_weight is None else state.dynamic_weight
    ramp = state.ramp(now, policy.slow_start)
    if ramp < 1.0 and weight > 0:
        overlay.ramping = True
        weight = max(1, round(weight * ramp))
    return _Server(dest, text, watched, state, weight, up=True)


def _fail_open(servers: list[_Server], policy: Policy) -> str | None:
    """Keep failing servers in at their desired weight beyond max_down_share of the watched servers in rotation
    (PyBal: a checker that sees most of a pool fail more likely has a problem of its own). Those that failed
    first stay down: a server's weight moves only when it has to. None when nothing is kept in, else the text
    that says so."""
    watched = [s for s in servers if s.watched and s.dest.weight > 0]
    failing = [s for s in watched if s.state is not None and s.state.state == DOWN]
    share = min(1.0, max(0.0, policy.max_down_share))
    allowed = math.floor(share * len(watched) + 1e-9)  # 0.29 × 100 is 28.999…, and means 29
    if len(failing) <= allowed:
        return None
    failing.sort(key=lambda s: (s.state.since, s.text))
    for server in failing[allowed:]:
        server.weight, server.removed = server.dest.weight, False
    return f"fail-open: {len(failing)} of {len(watched)} servers failing, {len(failing) - allowed} kept in"


def _report_fail_open(text: str, reason: str | None, before: ServiceStatus | None, overlay: Overlay) -> None:
    """A service-wide event when fail-open starts or ends (against the last call's status)."""
    was = before is not None and before.fail_open
    if reason is not None and not was:
        overlay.events.append((text, OK, FAIL_OPEN, reason))
    elif reason is None and was:
        overlay.events.append((text, FAIL_OPEN, OK, "fail-open ended"))


def _quorum(servers: list[_Server], policy: Policy, had: bool, text: str, overlay: Overlay) -> bool:
    """keepalived's quorum with hysteresis: lost below quorum − h, regained at quorum + h, else as it was."""
    healthy = sum(s.weight for s in servers if s.up and not s.removed)
    if had and healthy < policy.quorum - policy.hysteresis:
        held = False
        overlay.events.append((text, OK, LOST, "quorum lost"))
    elif not had and healthy >= policy.quorum + policy.hysteresis:
        held = True
        overlay.events.append((text, LOST, OK, "quorum regained"))
    else:
        held = had
    overlay.quorum[text] = held
    return held


def _sorry_alone(servers: list[_Server], sorry: Destination, policy: Policy) -> None:
    """keepalived: while quorum is lost the sorry server serves alone; the real servers still up leave the pool
    the way failed ones do (inhibit: weight 0, remove: out of the table) and come back with the quorum."""
    for server in servers:
        if server.removed or server.dest.key == sorry.key:
            continue
        if policy.on_failure == "remove":
            server.removed = True
        else:
            server.weight = 0


def _sorry_server(policy: Policy, family: int) -> Destination | None:
    """The sorry server as a destination (weight 1); None when there is none, or it is not a valid ADDRESS:PORT of
    the service's family (the panel refuses those; an agent does not put into its kernel what it would refuse)."""
    if not policy.sorry_server:
        return None
    problem, text = sorry_server_error(policy.sorry_server, family)
    if problem is not None:
        return None
    address, _, port = text.rpartition(":")
    forward = policy.sorry_forward if policy.sorry_forward in FORWARDS else "route"
    return Destination(address=address.strip("[]"), port=int(port), forward=forward, weight=1)
