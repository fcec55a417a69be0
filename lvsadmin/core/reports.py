"""What the agents send back, written down on the control side: reports, heartbeats, resync, offline.

Every function here runs on the control worker (the only process with database access). Writes happen in
one transaction each, with their ChangeRecords written explicitly, like `core.services`:

- `record_report`: one reconcile report. `applied_revision` moves only forward, by a compare-and-swap update
  (`UPDATE … WHERE applied_revision < N`), so a late or duplicated report can never move it back. The kernel
  table the report carries (or names by digest, unchanged) becomes the balancer's ReportedTable, what plans
  compare with. The report is kept as an ApplyReport unless it is a periodic no-op (resync, drain check,
  agent start) that moved, changed, failed and found nothing; one that changed the kernel, moved the
  revision or failed is audited as `apply`, drift the agent found (the kernel differed from what it had
  applied) as `drift`. An agent that lacks the revision it was asked to hold gets the snapshot.
- `record_heartbeat`: the balancer is alive; its kernel facts; the latest counters (ServiceSample upsert);
  drift seen between two reconciles (status `drift`, audited once, until the kernel matches again); a
  restarted agent is resynced at once.
- `resync_cluster` / `resync_all` (periodic): re-send what each balancer should carry, so that lost messages
  heal and drift is repaired: the snapshot to a balancer behind, a short reconverge request to one at the
  revision. Edits no operator applied yet (`requested_revision` behind `desired_revision`) are not pushed:
  the agents re-converge to what they last applied. For a fleet, `resync_all` sends RESYNC_BATCH balancers at a
  time, spread over half the job's interval, and skips offline ones. `mark_offline` (periodic): balancers not
  heard from.

A report that first brings a balancer to the desired revision keeps when that revision was committed
(ApplyReport.committed): the network-programming latency of that apply (core.latency).

The messages' shapes are `lvsadmin.protocol`'s (plain JSON dicts on the wire, read with `from_dict`).
"""

from __future__ import annotations

import logging
from datetime import UTC

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_celery_beat.models import PeriodicTask

from lvsadmin.audit import witness
from lvsadmin.audit.log import Actor, current_head, record
from lvsadmin.ipvs.codec import table_digest
from lvsadmin.monitoring import latency
from lvsadmin.monitoring import samples as traffic
from lvsadmin.monitoring import services as monitoring
from lvsadmin.protocol import RECONVERGE_TASK, Heartbeat, ReconvergeRequest, Report

from . import dispatch, trust
from .models import ApplyReport, Balancer, Cluster, ReportedTable, ServiceSample, SnapshotTable, offline_cutoff
from .schedules import ensure_interval_task

log = logging.getLogger(__name__)

MAX_STORED_OPERATIONS = 2000  # an ApplyReport keeps the first operations of a huge apply, and their count
MAX_DETAIL_ITEMS = 5
RESYNC_BATCH = 10  # balancers resynced together; the batches are spread over half the resync interval
RESYNC_TASK_NAME = "lvsadmin: resync balancers"
# Balancer.facts' count of differences between the kernel and the applied revision, as the last heartbeat or report
# said (/metrics' lvsadmin_balancer_drift_entries).
DRIFT_COUNT = "drift_count"
OFFLINE_TASK_NAME = "lvsadmin: mark offline balancers"


def agent_actor(balancer: Balancer | str, comment: str = "") -> Actor:
    name = balancer.name if isinstance(balancer, Balancer) else balancer
    return Actor.system(f"agent:{name}", comment=comment)


def _when(value, default=None):
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed or default or timezone.now()


def describe_drift(drift: list) -> str:
    """A one-paragraph summary of drift entries for the balancer's status detail."""
    if not drift:
        return ""
    parts = [str(item.get("text") or item) if isinstance(item, dict) else str(item) for item in drift]
    more = f" (+{len(parts) - MAX_DETAIL_ITEMS} more)" if len(parts) > MAX_DETAIL_ITEMS else ""
    return "; ".join(parts[:MAX_DETAIL_ITEMS]) + more


def _describe_errors(errors: list) -> str:
    parts = [str(e.get("error") if isinstance(e, dict) and e.get("error") else e) for e in errors]
    if errors and isinstance(errors[0], dict) and errors[0].get("op"):
        parts[0] = f"{errors[0]['op']}: {parts[0]}"
    more = f" (+{len(parts) - MAX_DETAIL_ITEMS} more)" if len(parts) > MAX_DETAIL_ITEMS else ""
    return "; ".join(parts[:MAX_DETAIL_ITEMS]) + more


AHEAD_PREFIXES = ("its agent holds revision", "ahead of the panel")


def ahead(cluster: Cluster, agent_revision, lineage: str) -> str:
    """Why a balancer whose agent holds `agent_revision` of `lineage` is not this cluster's to drive ("" if it is).

    An agent ahead of the panel (or of another lineage) was driven by another panel, by this one before its
    database was restored, or by a forged snapshot: never "in sync". An admin takes it back (services.take_back).
    """
    if lineage and lineage != cluster.lineage:
        return (f"its agent holds revision {agent_revision} of another lineage ({lineage[:8]}…, this cluster's is "
                f"{cluster.lineage[:8]}…): not this panel's to drive until an admin takes it back")
    if isinstance(agent_revision, int) and agent_revision > cluster.desired_revision:
        return (f"ahead of the panel: its agent applied revision {agent_revision}, the desired state is at "
                f"{cluster.desired_revision} (a panel restored from an older database?): an admin takes it back")
    return ""


def _settled_status(balancer: Balancer, cluster: Cluster) -> tuple[str, str]:
    """in_sync or pending, from the revisions alone."""
    if balancer.applied_revision > cluster.desired_revision:
        return Balancer.Status.ERROR, ahead(cluster, balancer.applied_revision, "")
    if balancer.applied_revision < cluster.desired_revision:
        return (Balancer.Status.PENDING,
                f"revision {balancer.applied_revision} applied, the desired state is at {cluster.desired_revision}")
    return Balancer.Status.IN_SYNC, f"revision {balancer.applied_revision} applied"


def _lock(name: str) -> Balancer | None:
    """The balancer's row, locked, with its cluster as it is now. Only the balancer's row: locking the cluster's
    too (a plain FOR UPDATE over the join) made every report and heartbeat of a fleet wait for the one before, and
    every edit wait for them. The cluster is read in the same statement: its revision and commit time agree."""
    return Balancer.objects.select_for_update(of=("self",)).select_related("cluster").filter(name=name).first()


# --- reconcile reports ---------------------------------------------------------------------------


@transaction.atomic(savepoint=False)  # within the task's transaction: no savepoint (a round trip each)
def record_report(message: dict) -> ApplyReport | None:
    """Write down one agent's reconcile report; returns the stored ApplyReport (None when nothing to keep)."""
    report = Report.from_dict(message)
    balancer = _lock(report.balancer)
    if balancer is None:
        log.warning("report from unknown balancer %r ignored", message.get("balancer"))
        return None
    cluster = balancer.cluster
    now = timezone.now()
    revision, errors, drift, applied = report.revision, report.errors, report.drift, report.applied
    outcome = report.outcome or ApplyReport.Outcome.ERROR
    if report.cluster not in (None, cluster.name):
        # The balancer moved to another cluster since the snapshot was sent: this report is about the old table.
        log.info("report for cluster %s from %s, now in %s: ignored", report.cluster, balancer, cluster)
        outcome = ApplyReport.Outcome.STALE
    elif report.lineage and report.lineage != cluster.lineage and outcome != ApplyReport.Outcome.STALE:
        # About revisions of another lineage (sent before an admin took the balancer back): not this cluster's.
        log.info("report of lineage %s from %s, the cluster's is %s: stale", report.lineage, balancer,
                 cluster.lineage)
        outcome = ApplyReport.Outcome.STALE

    previous = balancer.applied_revision
    moved = False
    committed = None  # when the revision this report brought the balancer to was committed (core.latency)
    if outcome in (ApplyReport.Outcome.OK, ApplyReport.Outcome.NOOP) and not errors:
        # Compare-and-swap: only ever forward, whatever order reports arrive in.
        moved = bool(Balancer.objects.filter(pk=balancer.pk, applied_revision__lt=revision)
                     .update(applied_revision=revision))
        if moved:
            balancer.applied_revision = revision
            if revision == cluster.desired_revision and cluster.revision_changed_at:
                committed = cluster.revision_changed_at

    fields = {"last_seen": now, **_status_after(report, outcome, balancer, cluster, now)}
    if report.facts:
        fields["facts"] = {**(balancer.facts or {}), **report.facts}
    if outcome != ApplyReport.Outcome.STALE:
        # How far the kernel still is from the revision (/metrics' drift count); a stale report says nothing of it.
        fields["facts"] = {**fields.get("facts", balancer.facts or {}), DRIFT_COUNT: len(report.remaining)}
    if report.needs_snapshot:
        fields.update(base_revision=0, base_digest="")  # whatever it holds, it is no base for a delta
    elif report.cluster in (None, cluster.name) and (report.lineage or cluster.lineage) == cluster.lineage:
        # What the agent holds, whatever this report's outcome: the base of the next delta (dispatch.deltas).
        fields.update(base_revision=report.applied_revision, base_digest=report.applied_digest)
    Balancer.objects.filter(pk=balancer.pk).update(**fields)
    if outcome != ApplyReport.Outcome.STALE:
        _keep_reported_table(balancer, cluster, report, now)
    witness.saw(f"balancer {balancer.name}", report.audit_head)
    if report.needs_snapshot:
        # The agent lacks the revision a resync asked it to reconverge to: send it the snapshot itself.
        log.info("%s asks for the snapshot of %s", balancer, cluster)
        transaction.on_commit(lambda: dispatch.send_reconcile(cluster.pk, report.trigger or "resync",
                                                              balancers=[balancer], full=True))

    # Periodic no-op reports (resync, drain checks, restarts) are not kept: they would bury the real ones. What
    # health checks did is not an apply of anyone's change: it goes to the health event log, not the audit chain.
    configured = applied if report.trigger != "health" else 0
    worth_keeping = moved or errors or drift or configured or outcome == ApplyReport.Outcome.ERROR or (
        report.trigger not in ("resync", "drain", "startup", "health"))
    if not worth_keeping:
        return None
    stored = _store_report(balancer, report, outcome, now, committed)
    # The rows every report of the cluster shares (its latency histogram, the audit chain's head) last: their
    # locks are held from here to the commit, and the other reports of a fleet wait for them.
    if committed is not None:
        latency.observe(cluster.pk, (now - committed).total_seconds())
    actor = agent_actor(balancer, comment=f"report {stored.pk}")
    if drift:
        record(actor, "drift", balancer, cluster=cluster, before={"drift": drift[:MAX_DETAIL_ITEMS * 20]},
               after={"revision": revision, "repaired": not errors and not report.remaining,
                      "report": stored.pk, "count": len(drift)})
    if moved or configured or errors:
        record(actor, "apply", balancer, cluster=cluster,
               before={"applied_revision": previous},
               after={"revision": revision, "outcome": stored.outcome, "trigger": stored.trigger,
                      "applied": applied, "errors": len(errors), "report": stored.pk,
                      "operations": [str(op) for op in report.operations[:50]]})
    return stored


def _status_after(report: Report, outcome: str, balancer: Balancer, cluster: Cluster, now) -> dict:
    """The balancer's status and its detail after this report (nothing, for a stale one)."""
    revision, errors, drift = report.revision, report.errors, report.drift
    if outcome == ApplyReport.Outcome.STALE and (why := ahead(cluster, report.applied_revision, report.lineage)):
        return {"status": Balancer.Status.ERROR, "status_detail": why}  # it refused the panel's revision
    if outcome == ApplyReport.Outcome.STALE:
        return {}  # says nothing about the current state
    if errors or outcome == ApplyReport.Outcome.ERROR:
        return {"status": Balancer.Status.ERROR,
                "status_detail": (f"revision {revision}: {len(errors)} error(s): {_describe_errors(errors)}"
                                  if errors else f"revision {revision} failed")}
    if report.remaining:
        return {"status": Balancer.Status.DRIFT,
                "status_detail": (f"revision {revision} applied but the kernel still differs: "
                                  f"{describe_drift(report.remaining)}")}
    status, detail = _settled_status(balancer, cluster)
    if drift:
        detail += f"; drift repaired at {now:%Y-%m-%d %H:%M:%S} UTC: {describe_drift(drift)}"
    if report.pending_drains:
        detail += f"; {len(report.pending_drains)} real server(s) draining"
    if report.unowned:
        detail += f"; {len(report.unowned)} service(s) in the kernel not managed by this cluster"
    return {"status": status, "status_detail": detail}


def _store_report(balancer: Balancer, report: Report, outcome: str, now, committed=None) -> ApplyReport:
    operations = report.operations
    finished = _when(report.finished, now)
    return ApplyReport.objects.create(
        balancer=balancer,
        revision=report.revision,
        outcome=outcome if outcome in ApplyReport.Outcome.values else ApplyReport.Outcome.ERROR,
        trigger=(report.trigger or "apply")[:16],
        operations=operations[:MAX_STORED_OPERATIONS],
        applied=report.applied,
        errors=report.errors[:MAX_STORED_OPERATIONS],
        drift=report.drift[:MAX_STORED_OPERATIONS],
        unowned=report.unowned[:MAX_STORED_OPERATIONS],
        durations={**report.durations, "operations_total": report.operations_total or len(operations),
                   "pending_drains": len(report.pending_drains)},
        started=_when(report.started, now),
        finished=finished,
        received=now,
        committed=committed,
        kernel_latency=(finished - committed).total_seconds() if committed else None,
        report_latency=(now - committed).total_seconds() if committed else None,
    )


def _keep_reported_table(balancer: Balancer, cluster: Cluster, report: Report, now) -> None:
    """The kernel table the agent saw; a report that leaves it out names it by digest: unchanged, or the very table
    of the snapshot it applied (an agent applying a delta does not send back the table the control side sent)."""
    if report.table is not None:
        ReportedTable.objects.update_or_create(
            balancer=balancer, defaults={"reported_at": now, "revision": report.revision, "table": report.table,
                                         "digest": table_digest(report.table)})
    elif report.table_digest:
        if ReportedTable.objects.filter(balancer=balancer, digest=report.table_digest).update(
                reported_at=now, revision=report.revision):
            return
        sent = (SnapshotTable.objects.filter(cluster=cluster, revision=report.revision, digest=report.table_digest)
                .values_list("table", flat=True).first())
        if sent is not None:
            ReportedTable.objects.update_or_create(
                balancer=balancer, defaults={"reported_at": now, "revision": report.revision, "table": sent,
                                             "digest": report.table_digest})


# --- heartbeats ------------------------------------------------------------------------------------


@transaction.atomic(savepoint=False)
def record_heartbeat(message: dict) -> Balancer | None:
    """The balancer is alive: facts, drift seen since the last reconcile, the latest counters."""
    beat = Heartbeat.from_dict(message)
    balancer = _lock(beat.balancer)
    if balancer is None:
        log.warning("heartbeat from unknown balancer %r ignored", message.get("balancer"))
        return None
    cluster = balancer.cluster
    now = timezone.now()
    sent = _when(beat.sent, now)
    previous = _when((balancer.facts or {}).get("heartbeat_at"), None) if (balancer.facts or {}).get(
        "heartbeat_at") else None
    if previous is not None and sent < previous:
        return balancer  # an older heartbeat overtaken by a newer one
    facts = dict(beat.facts)
    facts["heartbeat_at"] = sent.isoformat()
    facts["agent_applied_revision"] = beat.applied_revision
    fields: dict = {"last_seen": now, "facts": facts}

    drift = beat.drift if beat.cluster in (None, cluster.name) else []
    # Drift seen mid-reconcile is not the kernel's settled state (the status ignores it too): the last count stays.
    facts[DRIFT_COUNT] = len(drift) if not beat.busy else (balancer.facts or {}).get(DRIFT_COUNT, 0)
    why = ahead(cluster, beat.applied_revision, beat.lineage) if beat.cluster in (None, cluster.name) else ""
    if why:
        fields["status"], fields["status_detail"] = Balancer.Status.ERROR, why
    elif drift and not beat.busy:
        detail = f"the kernel differs from revision {beat.applied_revision}: {describe_drift(drift)}"
        if balancer.status != Balancer.Status.DRIFT or balancer.status_detail != detail:
            record(agent_actor(balancer), "drift", balancer, cluster=cluster, before={"drift": drift[:100]},
                   after={"revision": beat.applied_revision, "repaired": False, "count": len(drift)})
        fields["status"], fields["status_detail"] = Balancer.Status.DRIFT, detail
    elif balancer.status == Balancer.Status.OFFLINE or balancer.status_detail.startswith(AHEAD_PREFIXES) or (
            not beat.busy and balancer.status in (Balancer.Status.DRIFT, Balancer.Status.PENDING,
                                                  Balancer.Status.IN_SYNC)):
        # An error stays until a reconcile succeeds; drift clears when the kernel matches again. The detail of
        # the last report (drift repaired, drains, unowned services) stays while the status does.
        status, detail = _settled_status(balancer, cluster)
        if status != balancer.status:
            fields["status"], fields["status_detail"] = status, detail
    Balancer.objects.filter(pk=balancer.pk).update(**fields)
    witness.saw(f"balancer {balancer.name}", beat.audit_head)
    if beat.cluster in (None, cluster.name):
        monitoring.record_health_state(balancer, beat.health)  # its checker's whole state (None: it checks nothing)

    if beat.samples is not None:
        # Received now: the balancer's clock may differ from ours, and pages compare sampled_at with our clock.
        traffic.record(balancer, beat.samples, keys=beat.keys, now=now,  # the deltas, before the latest replace
                       interval=(sent - previous).total_seconds() if previous else settings.HEARTBEAT_SECONDS)
        store_samples(balancer, beat.samples, keys=beat.keys, sampled_at=now)
    if beat.startup:
        # A (re)started agent: send it what it should carry, without waiting for the next resync.
        transaction.on_commit(lambda: resync_balancer(balancer.pk, trigger="startup"))
    return balancer


MAX_COUNTER = 2**63 - 1  # the database's bigint: the pages sum the counters in SQL


def _counters(data: dict) -> dict:
    return {name: value for name, value in data.items()
            if isinstance(name, str) and type(value) is int and 0 <= value <= MAX_COUNTER}  # noqa: E721 (no bool)


def clean_sample(data: dict) -> dict:
    """One service's counters as kept (agent.facts.service_sample): whole numbers from 0 to MAX_COUNTER, and its
    real servers' the same way; anything else is left out. A broken or hostile agent's text or 2^70 would
    otherwise break the pages that sum them (PostgreSQL refuses to cast either)."""
    out = _counters(data)
    for nested in ("stats", "dests"):  # an older agent's counters; the real servers'
        value = data.get(nested)
        if nested == "stats" and isinstance(value, dict):
            out[nested] = _counters(value)
        elif isinstance(value, dict):
            out[nested] = {key: _counters(dest) for key, dest in value.items() if isinstance(dest, dict)}
    return out


def store_samples(balancer: Balancer, samples: dict, keys: list | None = None, sampled_at=None) -> int:
    """Upsert the latest counters of the given services; with `keys` (every service the kernel has), drop the rest.

    The agent sends only the services whose counters changed since its previous heartbeat (and all of them now
    and then), so this touches only rows that changed. Returns how many rows were written.
    """
    sampled_at = sampled_at or timezone.now()
    if keys is not None:
        ServiceSample.objects.filter(balancer=balancer).exclude(service_key__in=list(keys)).delete()
    rows = [ServiceSample(balancer=balancer, service_key=key[:80], sampled_at=sampled_at, data=clean_sample(data))
            for key, data in samples.items() if isinstance(key, str) and isinstance(data, dict)]
    if rows:
        ServiceSample.objects.bulk_create(rows, batch_size=500, update_conflicts=True,
                                          unique_fields=["balancer", "service_key"],
                                          update_fields=["sampled_at", "data"])
    if keys is not None and not rows:
        # Nothing changed: the samples are still the latest, say so.
        ServiceSample.objects.filter(balancer=balancer).update(sampled_at=sampled_at)
    elif keys is not None:
        ServiceSample.objects.filter(balancer=balancer).exclude(service_key__in=list(samples)).update(
            sampled_at=sampled_at)
    return len(rows)


# --- resync and offline ----------------------------------------------------------------------------


def requested_revision(cluster: Cluster) -> int:
    """The newest revision an operator applied (or the desired one, for a cluster that applies automatically)."""
    if cluster.auto_apply:
        return cluster.desired_revision
    return cluster.requested_revision


def send_reconverge(balancer: Balancer, trigger: str = "resync", revision: int = 0, reported_digest: str = "") -> None:
    """Ask an agent to converge again to the snapshot it last applied (repairs drift, pushes no new edit).

    With `revision`: the one it must hold (an agent that lacks it asks for the snapshot); `reported_digest`: the
    kernel table the control side holds from it, which it need not send again.
    """
    request = ReconvergeRequest(balancer=balancer.name, cluster=balancer.cluster.name, trigger=trigger,
                                sync=dispatch.sync_settings(balancer), audit_head=current_head(),
                                revision=revision, reported_digest=reported_digest,
                                lineage=balancer.cluster.lineage)
    trust.send_to_agent(balancer, RECONVERGE_TASK, request.to_dict(), revision=revision,
                        lineage=balancer.cluster.lineage)


def resync_cluster(cluster: Cluster, trigger: str = "resync", balancers=None) -> int:
    """Re-send what the cluster's balancers should carry; returns how many balancers were asked.

    When every edit has been applied, a balancer whose agent reported the current revision is asked to
    reconverge to it (a small message: the agent holds that snapshot; one that lost it asks for it), and the
    others get the current snapshot: a lost message heals and drift is repaired. Edits that nobody applied yet
    are not pushed behind the operator's back: the agents are asked to re-converge to what they last applied.
    """
    targets = list(balancers if balancers is not None else cluster.balancers.all())
    if not targets:
        return 0
    with transaction.atomic():
        # The cluster's row stays locked until the snapshot is read: an edit made meanwhile would otherwise go
        # out in a snapshot chosen because every edit had been applied.
        cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
        return _resync_locked(cluster, trigger, targets)


def _resync_locked(cluster: Cluster, trigger: str, targets: list) -> int:
    if requested_revision(cluster) < cluster.desired_revision:
        for balancer in targets:
            send_reconverge(balancer, trigger)
        return len(targets)
    # (Revision 0 is an agent that reported nothing yet, whatever the cluster's revision: it gets the snapshot.)
    behind = [b for b in targets if b.applied_revision < cluster.desired_revision or not b.applied_revision]
    if behind:
        dispatch.send_reconcile(cluster.pk, trigger, balancers=behind)
    current = [b for b in targets if b not in behind]
    reported = dispatch.reported_digests(current)
    for balancer in current:
        send_reconverge(balancer, trigger, revision=cluster.desired_revision,
                        reported_digest=reported.get(balancer.pk, ""))
    return len(targets)


def resync_balancer(balancer_id: int, trigger: str = "resync") -> int:
    balancer = Balancer.objects.select_related("cluster").filter(pk=balancer_id).first()
    if balancer is None:
        return 0
    return resync_cluster(balancer.cluster, trigger, balancers=[balancer])


def resync_all(trigger: str = "resync") -> int:
    """The periodic resync, spread over the first half of its interval: RESYNC_BATCH balancers now, the next batch
    a step later, and so on (a control task each, with a countdown), so that a fleet is not sent all its snapshots
    at once. Offline balancers are left out: their queues would only pile up copies (a returning agent is resynced
    by its start-up heartbeat, or by the next run once its heartbeats are back). Returns how many balancers were
    asked, now or later."""
    ids = list(Balancer.objects.exclude(status=Balancer.Status.OFFLINE).order_by("cluster_id", "pk")
               .values_list("pk", flat=True))
    batches = [ids[i:i + RESYNC_BATCH] for i in range(0, len(ids), RESYNC_BATCH)]
    if not batches:
        return 0
    step = resync_interval() / 2 / len(batches)
    for number, batch in enumerate(batches[1:], start=1):
        # Imported here: core.tasks imports this module.
        from .tasks import resync_balancers

        resync_balancers.apply_async(args=[batch, trigger], countdown=round(number * step, 1))
    resync_balancers_now(batches[0], trigger)
    return len(ids)


def resync_interval() -> float:
    """Seconds between two periodic resyncs: the job's schedule as edited in the panel, else RESYNC_SECONDS."""
    job = PeriodicTask.objects.filter(name=RESYNC_TASK_NAME, enabled=True).select_related("interval").first()
    if job is None or job.interval is None:
        return float(settings.RESYNC_SECONDS)
    return job.interval.schedule.run_every.total_seconds()


def resync_balancers_now(balancer_ids: list[int], trigger: str = "resync") -> int:
    """Resync the given balancers, cluster by cluster; returns how many were asked."""
    balancers = list(Balancer.objects.filter(pk__in=balancer_ids).select_related("cluster").order_by("pk"))
    by_cluster: dict[int, list[Balancer]] = {}
    for balancer in balancers:
        by_cluster.setdefault(balancer.cluster_id, []).append(balancer)
    sent = 0
    for targets in by_cluster.values():
        try:
            sent += resync_cluster(targets[0].cluster, trigger, balancers=targets)
        except Exception:  # one broken cluster must not stop the others from healing
            log.exception("resync of cluster %s failed", targets[0].cluster)
    return sent


def mark_offline(now=None) -> int:
    """Balancers without a heartbeat for OFFLINE_AFTER_SECONDS are offline; returns how many changed."""
    cutoff = offline_cutoff(now)
    changed = 0
    stale = Balancer.objects.exclude(status=Balancer.Status.OFFLINE).filter(last_seen__lt=cutoff)
    for balancer in stale.only("pk", "last_seen"):
        changed += Balancer.objects.filter(pk=balancer.pk, last_seen=balancer.last_seen).update(
            status=Balancer.Status.OFFLINE,
            status_detail=f"no heartbeat since {balancer.last_seen:%Y-%m-%d %H:%M:%S} UTC")
    changed += Balancer.objects.exclude(status=Balancer.Status.OFFLINE).filter(
        last_seen__isnull=True, created__lt=cutoff).update(
        status=Balancer.Status.OFFLINE, status_detail="no agent has reported yet")
    return changed


def ensure_periodic_tasks() -> list[str]:
    """The resync and offline jobs in django-celery-beat's tables (editable in the panel); made when missing."""
    made = []
    jobs = [
        (RESYNC_TASK_NAME, "lvsadmin.core.resync", settings.RESYNC_SECONDS),
        (OFFLINE_TASK_NAME, "lvsadmin.core.mark_offline", max(1, min(settings.HEARTBEAT_SECONDS,
                                                                     settings.OFFLINE_AFTER_SECONDS // 3 or 1))),
    ]
    for name, task, every in jobs:
        if ensure_interval_task(name, task=task, seconds=every):
            made.append(name)
    return made
