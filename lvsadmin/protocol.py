"""The agent <-> control contract: task and queue names, and the messages' shapes. No Django, no Celery.

Both sides import this module (the agent has no database and imports nothing of the control side). On the wire
every message is one plain JSON dict, the only argument of its task, so that a newer panel and an older agent
(or the reverse) understand each other. A receiver reads a message with `from_dict`, which takes what a peer of
any version may send (a key missing, None, the wrong type) without raising, and a sender writes one with
`to_dict`.

To an agent (queue `lvs.<balancer>`):
- `RECONCILE_TASK(Snapshot)`: the desired table of a cluster at a revision, addressed to one balancer.
- `RECONVERGE_TASK(ReconvergeRequest)`: converge again to what it holds (a resync without the table).
- `BACKUP_REQUEST_TASK(BackupRequest)`: send the kernel table back for a backup.
To the control side (queue `control`):
- `REPORT_TASK(Report)`: what one reconcile did; `HEARTBEAT_TASK(Heartbeat)`: alive, facts, drift, counters;
  `BACKUP_RESULT_TASK(BackupResult)`: the table a backup request asked for; `SECURITY_EVENT_TASK(SecurityReport)`:
  a message the agent refused; `HEALTH_TASK(HealthReport)`: health transitions, batched within a second;
  `REKEY_TASK`: the agent's new public key, signed by its current one (answered with
  `REKEYED_TASK` on the agent's queue once the panel holds the new key).

Every message travels signed (lvsadmin.signing): in an envelope signed by the panel's key and addressed to one
balancer, or by the key of the balancer it comes from. The bodies below are what the envelopes carry.

The audit chain's head: every message to an agent carries "audit_head": {"sequence": record count, "hash":
newest record's hash}; the agent keeps the newest it was sent as a witness (lvsadmin.audit.witness) and every
message back carries it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import TypedDict

# --- task and queue names ------------------------------------------------------------------------------------

RECONCILE_TASK = "lvsadmin.agent.reconcile"
RECONVERGE_TASK = "lvsadmin.agent.reconverge"
BACKUP_REQUEST_TASK = "lvsadmin.agent.backup"
REPORT_TASK = "lvsadmin.core.record_report"
HEARTBEAT_TASK = "lvsadmin.core.record_heartbeat"
BACKUP_RESULT_TASK = "lvsadmin.backups.record_backup"
SECURITY_EVENT_TASK = "lvsadmin.core.record_security_event"
HEALTH_TASK = "lvsadmin.core.record_health"
# An agent rotating its own key: {"balancer", "public_key": the new one}, signed by its current key (to control);
# the panel's confirmation {"balancer", "fingerprint": of the new key}, signed by the panel (to the agent).
REKEY_TASK = "lvsadmin.core.rekey"
REKEYED_TASK = "lvsadmin.agent.rekeyed"

CONTROL_QUEUE = "control"


def agent_queue(balancer: str) -> str:
    """The queue the agent of `balancer` consumes (and nothing else does)."""
    return f"lvs.{balancer}"


# --- the audit chain's head ----------------------------------------------------------------------------------

_HASH = re.compile(r"[0-9a-f]{64}")


def parse_head(head) -> tuple[int, str] | None:
    """(sequence, hash) of a head; None for anything else (a message from an older version, or garbage)."""
    if not isinstance(head, dict):
        return None
    sequence, hash_ = head.get("sequence"), head.get("hash")
    if isinstance(sequence, bool) or not isinstance(sequence, int) or not 0 <= sequence < 2**63:
        return None
    if not isinstance(hash_, str) or not _HASH.fullmatch(hash_):
        return None
    return sequence, hash_


def newest(kept: dict | None, offered) -> dict | None:
    """The newer of two heads (the higher sequence); `kept` when `offered` is not a head or is not newer."""
    parsed = parse_head(offered)
    if parsed is None or (parse_head(kept) or (-1, ""))[0] >= parsed[0]:
        return kept
    return {"sequence": parsed[0], "hash": parsed[1]}


# --- reading a peer's values ---------------------------------------------------------------------------------


def _list(value) -> list:
    return list(value or [])


def _int_or_zero(value) -> int:
    """For a count no decision hangs on: garbage reads as 0 (revisions and applied counts are read strictly)."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _dict_or_none(value) -> dict | None:
    return value if isinstance(value, dict) else None


def _str_or_none(value) -> str | None:
    return value if isinstance(value, str) else None


# --- to an agent -----------------------------------------------------------------------------------------------


class SyncSettings(TypedDict):
    """The balancer's connection-sync daemon as its agent runs it (lvsadmin.agent.daemons)."""

    role: str
    interface: str
    id: int | None


class Snapshot(TypedDict, total=False):
    """The desired table of a cluster at a revision (`RECONCILE_TASK`).

    A dict, not a class: the agent keeps it as it came (in its state file, without the `DELIVERY_KEYS`) and
    sends the same dict to itself again when it reconverges or follows drains up.
    """

    cluster: str
    revision: int
    # ISO 8601 time the panel created this revision (Cluster.revision_changed_at; None before the cluster's first
    # change): the agent's network-programming latency runs from it to the moment its kernel holds the revision.
    revision_time: str | None
    lineage: str  # the cluster's lineage id: another one than the agent holds starts its revisions over
    owns_whole_table: bool
    drain_timeout: int
    table: dict  # lvsadmin.ipvs.codec.table_to_dict (absent when `delta` stands for it)
    digest: str  # codec.table_digest of `table` (with a delta: of the table the delta makes)
    # Instead of `table`, to an agent whose last report said it holds revision `base_revision` of this lineage with
    # a table of digest `base_digest` (and that it takes deltas, facts["deltas"]): what changed since, as
    # lvsadmin.ipvs.delta describes it: {"base_revision", "base_digest", "services": {key text: service dict, or
    # None: removed}, "timeouts" (only when changed), "order" (only when the order changed otherwise than by
    # appending)}. The agent builds the table from its own and checks `digest`; any doubt (another base, a
    # mismatch) and it answers with a report asking for the snapshot (needs_snapshot). An agent from before deltas
    # finds no table and reports the snapshot malformed, changing nothing: the control side sends deltas only to
    # agents whose facts say DELTAS.
    delta: dict
    sync: SyncSettings
    health: dict  # {service key text: lvsadmin.health.spec.ServiceHealth.to_dict()}, services with checks only
    # This delivery only:
    balancer: str
    trigger: str  # apply | resync | startup | drain | …
    reported_digest: str  # the digest of the table the control side last got from this balancer
    audit_head: dict


DELIVERY_KEYS = ("balancer", "trigger", "reported_digest", "audit_head")

# The agent's facts (reports, heartbeats) say it takes a Snapshot's "delta" with {DELTAS: DELTA_VERSION}.
DELTAS = "deltas"
DELTA_VERSION = 1



def shallow_dict(message) -> dict:
    """A message's fields as a dict, sharing their values: they are plain JSON data already, and
    dataclasses.asdict's deep copy of a report holding a whole table cost about a second in the VM."""
    return {f.name: getattr(message, f.name) for f in fields(message)}

@dataclass
class ReconvergeRequest:
    """Converge again to the snapshot last applied (`RECONVERGE_TASK`). With `revision`: the one the agent must
    hold (one that lacks it answers with a report asking for the snapshot), and `reported_digest`."""

    balancer: str = ""
    cluster: str | None = None
    trigger: str = ""
    sync: SyncSettings | None = None
    audit_head: dict | None = None
    revision: int = 0
    reported_digest: str | None = None
    lineage: str = ""

    def to_dict(self) -> dict:
        out = {"balancer": self.balancer, "cluster": self.cluster, "trigger": self.trigger, "lineage": self.lineage}
        if self.sync is not None:
            out["sync"] = self.sync
        out["audit_head"] = self.audit_head
        if self.revision:
            out.update(revision=self.revision, reported_digest=self.reported_digest)
        return out

    @classmethod
    def from_dict(cls, d: dict | None) -> ReconvergeRequest:
        d = d or {}
        return cls(balancer=str(d.get("balancer") or ""), cluster=d.get("cluster"),
                   trigger=str(d.get("trigger") or ""), sync=d.get("sync") if "sync" in d else None,
                   audit_head=d.get("audit_head"), revision=int(d.get("revision") or 0),
                   reported_digest=d.get("reported_digest"), lineage=str(d.get("lineage") or ""))


@dataclass
class BackupRequest:
    """Send the kernel table for a backup (`BACKUP_REQUEST_TASK`)."""

    balancer: str | None = None
    trigger: str = ""
    requested_by: str = ""
    audit_head: dict | None = None

    def to_dict(self) -> dict:
        return shallow_dict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> BackupRequest:
        d = d or {}
        return cls(balancer=d.get("balancer"), trigger=str(d.get("trigger") or ""),
                   requested_by=str(d.get("requested_by") or ""), audit_head=d.get("audit_head"))


# --- to the control side -------------------------------------------------------------------------------------


@dataclass
class Report:
    """What one reconcile did (`REPORT_TASK`).

    outcome: ok | noop | error | stale. operations: ipvsadm-like text (the first MAX_REPORTED_OPERATIONS of
    `operations_total`); errors: [{"op", "error"}]; drift: [{"kind", "text", …}]; unowned: service key texts;
    durations: {dump, plan, apply, verify, total: seconds}; table: the kernel table after the reconcile
    (configuration only) when the control side does not hold it already, else `table_digest` names it;
    needs_snapshot: the agent was asked to reconverge to a revision it does not hold, or sent a delta it cannot
    apply; applied_digest: the digest of the table of the snapshot of `applied_revision` (the base of a delta).
    """

    balancer: str = ""
    cluster: str | None = None
    revision: int = 0
    trigger: str = ""
    outcome: str = ""
    operations: list = field(default_factory=list)
    operations_total: int = 0
    applied: int = 0
    errors: list = field(default_factory=list)
    drift: list = field(default_factory=list)
    unowned: list = field(default_factory=list)
    pending_drains: list = field(default_factory=list)
    remaining: list = field(default_factory=list)
    durations: dict = field(default_factory=dict)
    started: str | None = None
    finished: str | None = None
    applied_revision: int = 0
    audit_head: dict | None = None
    facts: dict | None = None
    table: dict | None = None
    table_digest: str | None = None
    needs_snapshot: bool = False
    lineage: str = ""  # the lineage of the revisions the agent holds (applied_revision's)
    applied_digest: str = ""

    def to_dict(self) -> dict:
        out = shallow_dict(self)
        if not self.needs_snapshot:
            del out["needs_snapshot"]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Report:
        return cls(
            balancer=str(d.get("balancer", "")), cluster=d.get("cluster"), revision=int(d.get("revision") or 0),
            trigger=str(d.get("trigger") or ""), outcome=str(d.get("outcome") or ""),
            operations=_list(d.get("operations")), operations_total=_int_or_zero(d.get("operations_total")),
            applied=int(d.get("applied") or 0), errors=_list(d.get("errors")), drift=_list(d.get("drift")),
            unowned=_list(d.get("unowned")), pending_drains=_list(d.get("pending_drains")),
            remaining=_list(d.get("remaining")), durations=dict(d.get("durations") or {}),
            started=_str_or_none(d.get("started")), finished=_str_or_none(d.get("finished")),
            applied_revision=_int_or_zero(d.get("applied_revision")), audit_head=d.get("audit_head"),
            facts=d.get("facts") or None, table=_dict_or_none(d.get("table")),
            table_digest=d.get("table_digest") or None, needs_snapshot=bool(d.get("needs_snapshot")),
            lineage=str(d.get("lineage") or ""), applied_digest=_str_or_none(d.get("applied_digest")) or "",
        )


@dataclass
class Heartbeat:
    """Alive (`HEARTBEAT_TASK`): facts, drift since the last apply, and the counters that changed.

    samples: {service key text: counters}, only those changed since the previous heartbeat (None: none sent);
    keys: every service key the kernel has, on a full heartbeat or when the set changed (None: not sent).
    health: the checker's whole state (None: this agent checks nothing), as HealthState describes it.
    """

    balancer: str = ""
    cluster: str | None = None
    sent: str | None = None
    startup: bool = False
    busy: bool = False
    applied_revision: int | None = None
    audit_head: dict | None = None
    facts: dict = field(default_factory=dict)
    drift: list = field(default_factory=list)
    samples: dict | None = None
    keys: list | None = None
    lineage: str = ""
    health: dict | None = None

    def to_dict(self) -> dict:
        out = shallow_dict(self)
        for optional in ("samples", "keys", "health"):
            if out[optional] is None:
                del out[optional]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Heartbeat:
        return cls(
            balancer=str(d.get("balancer", "")), cluster=d.get("cluster"), sent=_str_or_none(d.get("sent")),
            startup=bool(d.get("startup")), busy=bool(d.get("busy")), applied_revision=d.get("applied_revision"),
            audit_head=d.get("audit_head"), facts=dict(d.get("facts") or {}), drift=_list(d.get("drift")),
            samples=(d.get("samples") or {}) if "samples" in d else None, keys=d.get("keys"),
            lineage=str(d.get("lineage") or ""), health=_dict_or_none(d.get("health")),
        )


class HealthState(TypedDict, total=False):
    """An agent's checker as its heartbeat carries it.

    checker: {"running": bool, "stalled": bool (the watchdog saw no probe finish for 3 intervals), "probes":
    how many distinct probes run, "last_round": ISO time a probe last finished};
    servers: {service key text: {server text ("address|port"): ServerHealth}};
    services: {service key text: {"quorum": "ok" | "lost" | None, "fail_open": bool (more servers are
    failing than the policy lets down: some are kept in), "sorry": bool (the sorry server is in the table)}}.
    """

    checker: dict
    servers: dict
    services: dict


class ServerHealth(TypedDict, total=False):
    """One real server's health on one balancer: state "up" | "down"; since (ISO time of the last transition);
    reason (the last result: "HTTP 503", "connect refused", "timeout after 2.0 s", "ok"); latency (seconds of
    the last probe, None on a timeout); checked (ISO time of the last probe); weight (the effective weight the
    kernel holds: desired × health × slow-start ramp, or a MISC check's dynamic weight); held (bool: health keeps
    it below its desired weight, or out of the table)."""

    state: str
    since: str
    reason: str
    latency: float | None
    checked: str
    weight: int
    held: bool


@dataclass
class HealthReport:
    """Health transitions an agent saw, sent at once, batched within a second (`HEALTH_TASK`).

    transitions: [{"at": ISO time, "service": key text, "server": server text or "" for a service-wide event,
    "from": state, "to": state, "reason": "HTTP 503" | "connect refused" | "quorum lost" | …}], oldest first.
    """

    balancer: str = ""
    cluster: str | None = None
    transitions: list = field(default_factory=list)
    audit_head: dict | None = None

    def to_dict(self) -> dict:
        return shallow_dict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> HealthReport:
        d = d or {}
        return cls(balancer=str(d.get("balancer") or "")[:100], cluster=_str_or_none(d.get("cluster")),
                   transitions=[t for t in _list(d.get("transitions")) if isinstance(t, dict)],
                   audit_head=d.get("audit_head"))


@dataclass
class BackupResult:
    """The kernel table a backup request asked for (`BACKUP_RESULT_TASK`): `text` in `ipvsadm -S -n` form,
    `document` the lossless JSON (lvsadmin.ipvs.backup.make_document)."""

    balancer: str
    trigger: str
    requested_by: str
    taken_at: str | None
    text: str
    document: str
    audit_head: dict | None = None

    def to_dict(self) -> dict:
        return shallow_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BackupResult:
        """Raises KeyError when a field the backup cannot do without is missing."""
        return cls(balancer=d["balancer"], trigger=d["trigger"], requested_by=str(d.get("requested_by", "?")),
                   taken_at=d.get("taken_at") or None, text=d["text"], document=d["document"],
                   audit_head=d.get("audit_head"))


@dataclass
class SecurityReport:
    """A message an agent refused (`SECURITY_EVENT_TASK`): why (signing.REASONS), for which task, how many
    like it since the last report of that reason."""

    balancer: str = ""
    reason: str = ""
    task: str = ""
    detail: str = ""
    count: int = 1

    def to_dict(self) -> dict:
        return shallow_dict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> SecurityReport:
        d = d or {}
        return cls(balancer=str(d.get("balancer") or "")[:100], reason=str(d.get("reason") or "")[:32],
                   task=str(d.get("task") or "")[:100], detail=str(d.get("detail") or "")[:1000],
                   count=max(1, _int_or_zero(d.get("count"))))
