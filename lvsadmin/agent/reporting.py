"""The report of one reconcile (a protocol.Report), as the agent (lvsadmin.agent.core.Agent) sends it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from lvsadmin.protocol import Report

from . import planning

MAX_REPORTED_OPERATIONS = 2000


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def build_report(agent, snapshot: dict, trigger: str, outcome: str, started: str, t0: float, *, plan=None,
                 applied: int = 0, errors=(), drift=(), remaining=(), durations=None, info=None,
                 table: dict | None = None, table_digest: str | None = None, extra=(),
                 needs_snapshot: bool = False) -> dict:
    """The report of one reconcile (a protocol.Report). `table_digest`: the control side's digest of
    `table`, when known; a table the control side already holds (its `reported_digest`) is not sent again."""
    operations = plan.operations if plan else []
    ops = [planning.describe(op) for op in operations[:MAX_REPORTED_OPERATIONS]] + list(extra)
    if table is not None and table_digest and snapshot.get("reported_digest") == table_digest:
        table = None  # unchanged since the last report: the control side keeps what it has
    durations = dict(durations or {})
    durations["total"] = time.monotonic() - t0
    return Report(
        balancer=agent.name,
        cluster=snapshot.get("cluster"),
        revision=int(snapshot.get("revision") or 0),
        trigger=trigger,
        outcome=outcome,
        operations=ops,
        operations_total=len(operations) + len(extra),
        applied=applied,
        errors=list(errors),
        drift=list(drift),
        unowned=plan.unowned if plan else [],
        pending_drains=[f"{svc} -> {dest}" for svc, dests in (plan.drains if plan else {}).items()
                        for dest in dests],
        remaining=list(remaining),
        durations={k: round(v, 4) for k, v in durations.items()},
        started=started,
        finished=now_iso(),
        applied_revision=agent.state.applied_revision,
        lineage=agent.state.lineage,
        applied_digest=str((agent.state.snapshot or {}).get("digest") or ""),
        audit_head=agent.state.audit_head,
        facts=agent.facts(info),
        table=table,  # the kernel's table after this reconcile (configuration only), when read and new
        table_digest=table_digest if table is None else None,  # when not sent: the one it still is
        needs_snapshot=needs_snapshot,
    ).to_dict()
