"""Health as the pages show it, read from the balancers' live states (BalancerHealth): one query per page part.

Each balancer checks its real servers as it reaches them, so two balancers may disagree about one server (up on
lb1, down on lb2): a server's health is the list of what each balancer says, and the pages say when they differ.
A state whose balancer stopped reporting is still shown, marked stale.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.utils.dateparse import parse_datetime

from lvsadmin.core.models import offline_cutoff
from lvsadmin.health.spec import server_text
from lvsadmin.ipvs.model import dest_label

from .models import BalancerHealth


@dataclass
class OnBalancer:
    """One real server's health on one balancer."""

    balancer: str
    state: str  # up | down (what the checker says)
    badge: str  # up | down | held | ramping 40% | down, kept in
    tone: str  # ok | warn | bad (the badge's colour)
    reason: str = ""
    latency_ms: int | None = None
    since: datetime | None = None
    weight: int | None = None
    stale: bool = False


@dataclass
class ServerView:
    on: list[OnBalancer] = field(default_factory=list)

    @property
    def disagree(self) -> bool:
        return len({o.state for o in self.on}) > 1

    @property
    def summary(self) -> str:
        """`up on lb1 · down on lb2` when the balancers disagree, else the one state."""
        if not self.disagree:
            return self.on[0].state if self.on else ""
        return " · ".join(f"{o.state} on {o.balancer}" for o in self.on)


@dataclass
class ServiceView:
    down: int = 0  # its real servers down on at least one balancer
    below_quorum: list[str] = field(default_factory=list)  # balancers on which it lost its quorum
    fail_open: list[str] = field(default_factory=list)
    sorry: list[str] = field(default_factory=list)


@dataclass
class Fleet:
    """The dashboard's totals, and per cluster."""

    servers_down: int = 0
    below_quorum: int = 0
    by_cluster: dict[int, ServiceView] = field(default_factory=dict)
    stalled: list[str] = field(default_factory=list)  # balancers whose checker stalled


def _rows(**filters) -> list[tuple[str, int, int, dict, bool]]:
    """(balancer name, balancer id, cluster id, state, stale) of the balancers' live health states."""
    cutoff = offline_cutoff()
    rows = BalancerHealth.objects.filter(**filters).select_related("balancer").order_by("balancer__name")
    return [(r.balancer.name, r.balancer_id, r.balancer.cluster_id, r.state if isinstance(r.state, dict) else {},
             r.updated_at < cutoff) for r in rows]


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def on_balancer(name: str, entry: dict, desired_weight: int, stale: bool) -> OnBalancer:
    """A badge of a server's health on one balancer, from its ServerHealth (protocol)."""
    state = "down" if entry.get("state") == "down" else "up" if entry.get("state") == "up" else "unknown"
    weight, held = _int(entry.get("weight")), bool(entry.get("held"))
    if state == "down":
        badge, tone = ("down", "bad") if held or weight in (None, 0) else ("down, kept in", "warn")
    elif state == "up" and held and weight and desired_weight and weight < desired_weight:
        badge, tone = f"ramping {weight * 100 // desired_weight}%", "warn"
    elif state == "up" and held:
        badge, tone = "held", "warn"
    else:
        badge, tone = state, "ok" if state == "up" else "off"
    latency = entry.get("latency")
    since = parse_datetime(entry["since"]) if isinstance(entry.get("since"), str) else None
    return OnBalancer(name, state, badge, tone, reason=str(entry.get("reason") or "")[:200],
                      latency_ms=round(latency * 1000) if isinstance(latency, int | float) else None,
                      since=since, weight=weight, stale=stale)


def server_health(cluster_id: int, service, servers) -> dict[int, ServerView]:
    """The health of each given real server of `service` (pk → ServerView), for the servers some balancer checks."""
    out: dict[int, ServerView] = {}
    for name, _bid, _cid, state, stale in _rows(balancer__cluster_id=cluster_id):
        entries = _dict(_dict(state.get("servers")).get(service.key_text))
        for rs in servers:
            entry = entries.get(server_text(rs.address, rs.port))
            if isinstance(entry, dict):
                out.setdefault(rs.pk, ServerView()).on.append(on_balancer(name, entry, rs.weight, stale))
    return out


def _tally(view: ServiceView, name: str, status: dict) -> None:
    if status.get("quorum") == "lost":
        view.below_quorum.append(name)
    if status.get("fail_open"):
        view.fail_open.append(name)
    if status.get("sorry"):
        view.sorry.append(name)


def service_health(cluster_id: int, services) -> dict[int, ServiceView]:
    """Per service (pk → ServiceView): servers down on any balancer, and where quorum is lost, fail-open, sorry."""
    by_key = {svc.key_text: svc.pk for svc in services}
    out = {pk: ServiceView() for pk in by_key.values()}
    down: dict[int, set] = defaultdict(set)
    for name, _bid, _cid, state, _stale in _rows(balancer__cluster_id=cluster_id):
        for key, entries in _dict(state.get("servers")).items():
            if key in by_key:
                down[by_key[key]].update(s for s, e in _dict(entries).items() if _dict(e).get("state") == "down")
        for key, status in _dict(state.get("services")).items():
            if key in by_key:
                _tally(out[by_key[key]], name, _dict(status))
    for pk, servers in down.items():
        out[pk].down = len(servers)
    return out


def fleet_health() -> Fleet:
    """Servers down and services below quorum, over every cluster; the balancers whose checker stalled."""
    fleet = Fleet()
    down: dict[int, set] = defaultdict(set)
    lost: dict[int, set] = defaultdict(set)
    for name, _bid, cluster_id, state, stale in _rows():
        for key, entries in _dict(state.get("servers")).items():
            down[cluster_id].update((key, s) for s, e in _dict(entries).items() if _dict(e).get("state") == "down")
        lost[cluster_id].update(k for k, s in _dict(state.get("services")).items() if _dict(s).get("quorum") == "lost")
        if _dict(state.get("checker")).get("stalled") and not stale:
            fleet.stalled.append(name)
    for cluster_id in set(down) | set(lost):
        fleet.by_cluster[cluster_id] = ServiceView(down=len(down[cluster_id]),
                                                   below_quorum=sorted(lost[cluster_id]))
    fleet.servers_down = sum(v.down for v in fleet.by_cluster.values())
    fleet.below_quorum = sum(len(v.below_quorum) for v in fleet.by_cluster.values())
    return fleet


def checker(balancer) -> dict | None:
    """The balancer's checker as its heartbeat describes it ({running, stalled, probes, last_round}), or None."""
    row = BalancerHealth.objects.filter(balancer=balancer).only("state").first()
    return _dict(_dict(row.state).get("checker")) if row is not None else None


def held_by_health(cluster_id: int, services) -> dict[int, dict[str, str]]:
    """Per balancer (pk), the real servers its health holds below their weight or out of the table, by the label
    the plan names them with (`TCP 10.0.0.1:80 → 192.0.2.11:80`), with the last result."""
    labels = {svc.key_text: svc.label for svc in services}
    out: dict[int, dict[str, str]] = {}
    for _name, balancer_id, _cid, state, _stale in _rows(balancer__cluster_id=cluster_id):
        for key, entries in _dict(state.get("servers")).items():
            for server, entry in _dict(entries).items():
                address, _, port = str(server).rpartition("|")
                if _dict(entry).get("held") and key in labels and port.isdigit():
                    label = dest_label(labels[key], address, int(port))
                    out.setdefault(balancer_id, {})[label] = str(_dict(entry).get("reason") or "")[:200]
    return out
