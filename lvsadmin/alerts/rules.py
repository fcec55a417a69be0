"""The alert rules: each reads the database as it is now and returns what fires, by key.

A key is a tuple naming one thing wrong — `("server_down", "web", "tcp|10.0.0.1|80", "10.2.0.1|80")` — stable for
as long as that thing stays wrong, so that incidents.evaluate opens one incident per key, whatever the summary
says meanwhile. Each rule reads the same definition the pages show (a balancer's status, the backups missed since
its newest backup, the balancers' live health states), never one of its own. Every rule costs a few queries,
whatever the size of the audit log or the health event table: evaluation runs every ALERT_EVALUATE_SECONDS.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from lvsadmin.audit.models import ChainHead, ChangeRecord
from lvsadmin.audit.witness import all_witnesses
from lvsadmin.backups.selectors import missed_by_balancer
from lvsadmin.core.models import Balancer, offline_cutoff
from lvsadmin.ipvs.model import dest_label
from lvsadmin.monitoring.models import BalancerHealth
from lvsadmin.monitoring.services import server_label, service_labels


@dataclass(frozen=True)
class Firing:
    key: tuple[str, ...]
    summary: str

    @property
    def rule(self) -> str:
        return self.key[0]

    @property
    def cluster(self) -> str:
        return self.key[1]


# rule → what the pages call it (the channel form's filter, the incident list's filter)
RULES = {
    "balancer_offline": "Balancer offline",
    "drift": "Drift",
    "apply_error": "Apply error",
    "backup_missed": "Backup missed",
    "audit_chain": "Audit chain broken",
    "server_down": "Real server down",
    "below_quorum": "Service below quorum",
}
_STATUS_RULES = {Balancer.Status.OFFLINE: "balancer_offline", Balancer.Status.DRIFT: "drift",
                 Balancer.Status.ERROR: "apply_error"}
_STATUS_WORDS = {"balancer_offline": "is offline", "drift": "has drifted", "apply_error": "failed to apply"}


def balancer_status() -> list[Firing]:
    """Balancers whose status (as the control worker keeps it) is offline, drift or error."""
    rows = Balancer.objects.filter(status__in=list(_STATUS_RULES)).values_list(
        "name", "cluster__name", "status", "status_detail")
    out = []
    for name, cluster, status, detail in rows:
        rule = _STATUS_RULES[status]
        text = f"Balancer {name} ({cluster}) {_STATUS_WORDS[rule]}" + (f": {detail}" if detail else "")
        out.append(Firing((rule, cluster, name), text[:300]))
    return out


def backups_missed() -> list[Firing]:
    """Balancers with scheduled backups missed since their newest backup (the dashboard's warning)."""
    out = []
    for row in missed_by_balancer(shown=10_000):
        balancer, count, latest = row["balancer"], row["count"], row["latest"]
        text = (f"Balancer {balancer.name} missed {count} scheduled backup{'s' if count != 1 else ''} since its "
                f"newest; the latest due {latest.due_at:%Y-%m-%d %H:%M} UTC: {latest.reason}")
        out.append(Firing(("backup_missed", balancer.cluster.name, balancer.name), text[:300]))
    return out


def chain_fault() -> str:
    """Why the audit chain is broken, from its head and its witnesses only (not a verification of every record,
    which `manage.py verify_audit` and the audit page do): "" when nothing is seen wrong."""
    head = ChainHead.objects.filter(id=1).first()
    if head is None:
        return "the chain head is missing"
    if head.mac != head.compute_mac():
        return "the chain head was not written with the audit key (forged or rolled back)"
    if head.restarted:
        return "the chain head was deleted and the chain started again"
    if head.count and not ChangeRecord.objects.filter(hash=head.hash).exists():
        return "the newest record the chain head names is missing"
    seen = all_witnesses()
    beyond = [w for w in seen if w.sequence > head.count]
    if beyond:
        w = max(beyond, key=lambda w: w.sequence)
        return f"the chain was truncated: {w.name} saw record {w.sequence}, the chain ends at {head.count}"
    hashes = {w.hash for w in seen}
    kept = set(ChangeRecord.objects.filter(hash__in=hashes).values_list("hash", flat=True)) if hashes else set()
    for w in seen:
        if w.hash not in kept:
            return f"history was rewritten: {w.name} saw record {w.sequence}, which is no longer in the chain"
    return ""


def audit_chain() -> list[Firing]:
    fault = chain_fault()
    return [Firing(("audit_chain", ""), f"Audit chain broken: {fault}")] if fault else []


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _health_rows() -> list[tuple[str, int, str, dict]]:
    """(balancer, cluster id, cluster name, state) of the live health states of balancers still reporting: one
    that stopped is the balancer_offline rule's."""
    rows = (BalancerHealth.objects.filter(updated_at__gte=offline_cutoff())
            .select_related("balancer__cluster").order_by("balancer__name"))
    return [(r.balancer.name, r.balancer.cluster_id, r.balancer.cluster.name, _dict(r.state)) for r in rows]


def health() -> list[Firing]:
    """Real servers down on some balancer, and services below quorum on some balancer (one key each, naming
    every balancer that sees it)."""
    down: dict[tuple, list[str]] = defaultdict(list)
    lost: dict[tuple, list[str]] = defaultdict(list)
    clusters: dict[str, int] = {}
    for name, cluster_id, cluster, state in _health_rows():
        clusters[cluster] = cluster_id
        for service, entries in _dict(state.get("servers")).items():
            for server, entry in _dict(entries).items():
                if _dict(entry).get("state") == "down":
                    down[("server_down", cluster, str(service), str(server))].append(name)
        for service, status in _dict(state.get("services")).items():
            if _dict(status).get("quorum") == "lost":
                lost[("below_quorum", cluster, str(service))].append(name)
    labels = {cluster: service_labels(cluster_id) for cluster, cluster_id in clusters.items()
              if any(k[1] == cluster for k in list(down) + list(lost))}
    out = []
    for key, names in down.items():
        service = labels[key[1]].get(key[2], key[2])
        server = server_label(key[3]) or key[3]
        address, _, port = server.rpartition(":")
        what = dest_label(service, address.strip("[]"), int(port)) if port.isdigit() else f"{service} → {server}"
        out.append(Firing(key, f"Real server {what} ({key[1]}) is down on {', '.join(names)}"[:300]))
    for key, names in lost.items():
        service = labels[key[1]].get(key[2], key[2])
        out.append(Firing(key, f"Service {service} ({key[1]}) is below its quorum on {', '.join(names)}"[:300]))
    return out


EVERY_RULE = (balancer_status, backups_missed, audit_chain, health)


def firing() -> dict[tuple, Firing]:
    """Every key firing now, over every rule."""
    return {f.key: f for rule in EVERY_RULE for f in rule()}
