"""The agent's work, without Celery: converge the kernel to a snapshot, follow drains up, describe itself.

One `Agent` per process. Every change to the kernel happens under its lock (the reconcile task and the
heartbeat thread's drain follow-up never interleave). Messages to the control side go through `send(task
name, payload, expires)`, so this module is tested without a broker.

Messages (plain JSON):

- snapshot (in): {"cluster", "revision", "owns_whole_table", "drain_timeout", "table", "digest" (of the table),
  "trigger", "balancer", "reported_digest" (of the table the control side last got from this balancer)}
- reconverge request (in): {"balancer", "cluster", "trigger", "revision" (optional: the one it must hold),
  "reported_digest"}
- report (out, `lvsadmin.core.record_report`): {"balancer", "cluster", "revision", "trigger", "outcome" (ok |
  noop | error | stale), "operations" [ipvsadm-like text], "operations_total", "applied", "errors" [{"op",
  "error"}], "drift" [{"kind", "text", ...}], "unowned" [service key texts], "pending_drains", "remaining",
  "durations" {dump, plan, apply, verify, total: seconds}, "started", "finished", "facts", "table" (the kernel
  table, when it is not the one the control side holds), "table_digest" (when the table is not sent),
  "needs_snapshot" (a reconverge to a revision this agent does not hold)}
- heartbeat (out, `lvsadmin.core.record_heartbeat`): {"balancer", "cluster", "sent", "startup", "busy",
  "applied_revision", "facts", "drift", "samples" {service key text: counters}, "keys" (every service key, on
  a full heartbeat)}

Every message in carries "audit_head" (the audit chain's head when it was sent); the agent keeps the newest and
every report, heartbeat and backup carries it back: a witness of the audit log outside the panel's database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from datetime import UTC, datetime

from lvsadmin.ipvs import codec
from lvsadmin.ipvs.model import Stats, Table
from lvsadmin.protocol import newest

from . import daemons, planning
from . import facts as facts_mod
from .backend import Backend
from .kernel import sync_daemons
from .state import AgentState, StateStore

log = logging.getLogger(__name__)

REPORT_TASK = "lvsadmin.core.record_report"
HEARTBEAT_TASK = "lvsadmin.core.record_heartbeat"
BACKUP_TASK = "lvsadmin.backups.record_backup"
MAX_REPORTED_OPERATIONS = 2000
FULL_SAMPLE_EVERY = 12  # heartbeats: every 12th carries every service's counters, the others only changes

Sender = Callable[..., None]


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _kept(snapshot: dict) -> dict:
    """A snapshot as the state keeps it: without what belongs to one delivery."""
    return {k: v for k, v in snapshot.items() if k not in ("balancer", "trigger", "reported_digest", "audit_head")}


def decode_reusing(data: dict, previous: tuple[dict, Table] | None) -> Table:
    """codec.table_from_dict, taking the decoded Service of `previous` (table dict, its Table) for every
    service whose dict is unchanged: a new revision usually changes a few services of many."""
    if previous is None or not isinstance(data, dict) or not isinstance(previous[0].get("services"), list):
        return codec.table_from_dict(data)
    old = {_dict_key(sd): (sd, svc) for sd, svc in zip(previous[0]["services"], previous[1].services, strict=False)}
    table = codec.table_from_dict(dict(data, services=[]))
    services = data["services"]
    for sd in services:
        hit = old.get(_dict_key(sd)) if isinstance(sd, dict) else None
        table.services.append(hit[1] if hit is not None and hit[0] == sd else codec.service_from_dict(sd))
    return table


def _dict_key(sd: dict) -> tuple:
    return (sd.get("protocol"), sd.get("address"), sd.get("port"), sd.get("fwmark"), sd.get("fwmark_family"))


def same_table(a: dict, b: dict) -> bool:
    """Whether two snapshots carry the same table: the same dict, the same digest, or equal contents."""
    ta, tb = a.get("table"), b.get("table")
    if ta is tb:
        return True
    if a.get("digest") and b.get("digest"):
        return a["digest"] == b["digest"]
    return ta == tb


class Agent:
    def __init__(self, name: str, backend: Backend | Callable[[], Backend], store: StateStore, send: Sender,
                 clock: Callable[[], float] = time.time, apply_batch: int = 0, apply_pause: float = 0.0):
        """`backend`: a Backend, or a factory called once per thread (a netlink socket is not thread-safe).

        apply_batch / apply_pause: hand the backend at most `apply_batch` operations at a time, pausing between
        batches (0: all at once, no pause). Only tests that must interrupt an apply midway slow it down so.
        """
        self.name = name
        self.apply_batch, self.apply_pause = max(0, int(apply_batch)), max(0.0, float(apply_pause))
        self._backend_factory = backend if callable(backend) and not hasattr(backend, "dump") else None
        self._shared_backend = None if self._backend_factory else backend
        self._local = threading.local()
        self.store = store
        self.send = send
        self.clock = clock
        self.lock = threading.RLock()
        self.state: AgentState = store.load()
        if self.state.balancer and self.state.balancer != name:
            log.warning("state file %s belongs to balancer %s, not %s: starting afresh",
                        store.path, self.state.balancer, name)
            self.state = AgentState()
        self.state.balancer = name
        self._beats = 0
        self._last_samples: dict[str, dict] = {}
        self._facts_cache: dict | None = None
        self._owned_cache: tuple | None = None
        self._applied_cache: tuple | None = None
        self._desired_cache: tuple | None = None  # (digest, table dict, Table) of the last snapshot decoded
        self._desired_keys_cache: tuple | None = None

    @property
    def backend(self) -> Backend:
        if self._shared_backend is not None:
            return self._shared_backend
        backend = getattr(self._local, "backend", None)
        if backend is None:
            backend = self._local.backend = self._backend_factory()
        return backend

    # --- reconcile ------------------------------------------------------------------------------

    def reconcile(self, snapshot: dict, trigger: str | None = None) -> dict | None:
        """Converge the kernel to `snapshot` (dump, plan, apply, verify) and report; older revisions are ignored.

        Idempotent: a snapshot the kernel already matches plans no operation, so nothing is changed.
        """
        trigger = trigger or snapshot.get("trigger") or "apply"
        if snapshot.get("balancer") not in (None, "", self.name):
            log.error("snapshot for balancer %s delivered to %s: ignored", snapshot.get("balancer"), self.name)
            return None
        self.witness(snapshot)
        revision = int(snapshot["revision"])
        cluster = str(snapshot.get("cluster") or "")
        started, t0 = _now_iso(), time.monotonic()
        with self.lock:
            st = self.state
            if st.cluster and cluster != st.cluster:
                log.warning("balancer moved from cluster %s to %s: revisions start over", st.cluster, cluster)
                st.applied_revision, st.snapshot = 0, None
            elif revision < self.newest_revision():
                log.info("revision %s is older than revision %s (applied %s): ignored", revision,
                         self.newest_revision(), st.applied_revision)
                report = self._report(snapshot, trigger, "stale", started, t0)
                self._send(REPORT_TASK, report)
                return report
            try:
                desired = self._desired_table(snapshot)
            except (KeyError, TypeError, ValueError) as exc:
                report = self._report(snapshot, trigger, "error", started, t0,
                                      errors=[{"op": "snapshot", "error": f"malformed snapshot: {exc}"}])
                self._send(REPORT_TASK, report)
                return report
            st.cluster = cluster
            if self._already_converged(snapshot, desired):
                st.reconciles += 1
                self.store.save(st)  # the counters only: the tables it names are already on disk
                # The kernel holds exactly the snapshot's table: that is the table to report.
                report = self._report(snapshot, trigger, "noop", started, t0, table=snapshot.get("table"),
                                      table_digest=snapshot.get("digest"),
                                      durations={"noop_check": time.monotonic() - t0})
                self._send(REPORT_TASK, report)
                return report
            st.pending = _kept(snapshot)
            self.store.save(st)
            report = self._converge(snapshot, desired, trigger, started, t0)
            self._send(REPORT_TASK, report)
            return report

    def _already_converged(self, snapshot: dict, desired: Table) -> bool:
        """The no-op fast path, for the resyncs and repeated snapshots that make up most reconciles.

        When this revision was applied and verified, no drain is under way, and the kernel holds exactly the
        desired table (nothing unowned either), there is no drift and nothing to do: report that without the
        full dump, decode and plan. Anything else takes the full path, which finds and reports it.
        """
        st = self.state
        if st.drains or st.pending is not None or st.snapshot is None:
            return False
        if int(snapshot["revision"]) != st.applied_revision or not same_table(st.snapshot, snapshot):
            return False
        if st.snapshot.get("sync") != snapshot.get("sync"):
            return False
        try:
            if self._daemon_ops(snapshot):
                return False
            return self._left_to_do(desired, owned=True) == []  # owned=True: an unowned service is not "as desired"
        except Exception:  # the full path reads the kernel again and reports what is wrong
            log.exception("no-op check failed")
            return False

    def _left_to_do(self, desired: Table, owned, only=None) -> list | None:
        """What the kernel still lacks of `desired`, found in one pass that decodes only what differs.

        None when the backend has no one-pass diff (then callers take the full dump). Drains are not
        considered: callers use this only when none is under way. `only`: look at the destinations of these
        services only (those an apply just changed; the others were read as desired moments before).
        """
        diff = getattr(self.backend, "diff", None)
        if diff is None:
            return None
        ops = list(diff(desired, owned=owned, only=only))
        if desired.timeouts is not None and self.backend.timeouts() != desired.timeouts:
            ops.insert(0, planning.SetTimeouts(desired.timeouts))
        return ops

    def _daemon_ops(self, snapshot: dict) -> list:
        """What to start and stop so the kernel runs the sync daemon the balancer's settings ask for."""
        return daemons.plan(snapshot.get("sync"), sync_daemons(self.backend), self.state.started_daemons)

    def _apply_daemons(self, snapshot: dict, errors: list) -> list:
        """Start and stop sync daemons; returns the operations done (failures go to `errors`)."""
        try:
            ops = self._daemon_ops(snapshot)
        except Exception as exc:
            log.exception("listing the sync daemons failed")
            errors.append({"op": "--list --daemon", "error": f"{type(exc).__name__}: {exc}"})
            return []
        done = []
        for op in ops:
            try:
                if isinstance(op, daemons.StartDaemon):
                    self.backend.start_daemon(op.daemon)
                else:
                    self.backend.stop_daemon(op.state)
                done.append(op)
            except Exception as exc:
                log.warning("%s failed: %s", op, exc)
                errors.append({"op": str(op), "error": f"{type(exc).__name__}: {exc}"})
        self.state.started_daemons = daemons.started_after(self.state.started_daemons, done)
        return done

    def _desired_table(self, snapshot: dict) -> Table:
        """The snapshot's table, decoded once per table: resyncs deliver the same one again and again.

        The same table is the same dict object (a reconverge), or a dict with the same digest (the control
        side's SHA-256 of the table, `codec.table_digest`).
        """
        table = snapshot["table"]
        cached = self._desired_cache
        digest = snapshot.get("digest")
        if cached is not None and (cached[1] is table or (digest and digest == cached[0])):
            return cached[2]
        decoded = decode_reusing(table, cached[1:] if cached is not None else None)
        self._desired_cache = (digest, table, decoded)
        return decoded

    def newest_revision(self) -> int:
        """Revisions only move forward: older than the applied one, or than one being applied, is stale."""
        pending = int(self.state.pending.get("revision") or 0) if self.state.pending else 0
        return max(self.state.applied_revision, pending)

    def reconverge(self, request: dict | None = None) -> dict | None:
        """Converge again to the snapshot last applied (repairs drift; the control side asks on resync).

        The periodic resync sends this small request instead of the whole table when the control side knows
        the agent applied the current revision ("revision": N). An agent that does not hold revision N of
        that cluster (its state file was lost, it moved) answers with a report asking for the snapshot.
        """
        request = request or {}
        self.witness(request)
        trigger = request.get("trigger") or "resync"
        with self.lock:
            snap = self.state.pending or self.state.snapshot
            same_cluster = request.get("cluster") in (None, "", self.state.cluster)
            wanted = int(request.get("revision") or 0)
            if wanted and (snap is None or not same_cluster or int(snap.get("revision") or 0) < wanted):
                log.info("asked to reconverge to revision %s of %s, which this agent does not hold: asking for it",
                         wanted, request.get("cluster"))
                report = self._report(request, trigger, "stale", _now_iso(), time.monotonic())
                report["needs_snapshot"] = True
                self._send(REPORT_TASK, report)
                return report
            if snap is None:
                log.info("reconverge asked, but this agent has applied nothing yet")
                return None
            if not same_cluster:
                log.info("reconverge for cluster %s, this agent carries %s: ignored", request.get("cluster"),
                         self.state.cluster)
                return None
            if not snap.get("digest") and isinstance(snap.get("table"), dict):
                # kept by an agent from before snapshots named their table: name it once, as the control side does
                snap["digest"] = codec.table_digest(snap["table"])
            again = dict(snap, balancer=self.name, reported_digest=request.get("reported_digest"))
            if "sync" in request:  # the balancer's sync settings as they are now (they have no revision)
                again["sync"] = request["sync"]
            return self.reconcile(again, trigger=trigger)

    def warm(self) -> None:
        """At start, before the first heartbeat asks for a resync: decode the snapshot the state file holds and
        have the backend work out its encoding, so that the first reconcile runs as fast as the later ones."""
        with self.lock:
            snap = self.state.pending or self.state.snapshot
            if snap is None:
                return
            try:
                desired = self._desired_table(snap)
                self._applied_table()
                prepare = getattr(self.backend, "prepare", None)
                if prepare is not None:
                    prepare(desired)
            except Exception:  # a bad state file is the reconcile's to report
                log.exception("warming up failed")

    def resume(self) -> dict | None:
        """At start: finish the snapshot a previous process was applying when it died."""
        with self.lock:
            pending = self.state.pending
            if pending is None or int(pending.get("revision", 0)) < self.state.applied_revision:
                return None
            log.info("resuming revision %s, left unfinished by a previous run", pending.get("revision"))
            return self.reconcile(dict(pending, balancer=self.name), trigger="startup")

    def _plan(self, snapshot: dict, desired: Table, actual: Table) -> planning.Plan:
        st = self.state
        return planning.plan(desired, actual, previously_owned=self._previously_owned(),
                             owns_whole_table=bool(snapshot.get("owns_whole_table")), drains=st.drains,
                             now=self.clock(), drain_timeout=float(snapshot.get("drain_timeout") or 0))

    def _applied_table(self) -> Table | None:
        """The state's applied configuration as a Table (parsed once per version of it; don't mutate it)."""
        applied = self.state.applied
        if not applied:
            return None
        if self._applied_cache is None or self._applied_cache[0] is not applied:
            self._applied_cache = (applied, codec.table_from_dict(applied))
        return self._applied_cache[1]

    def _converge(self, snapshot: dict, desired: Table, trigger: str, started: str, t0: float) -> dict:
        st = self.state
        durations = {}
        mark = time.monotonic()
        # With no drain under way, only the part of the kernel that differs from the snapshot is read and
        # planned (IPVS.partial); drains need every connection count: a full dump.
        partial = getattr(self.backend, "partial", None) if not st.drains else None
        try:
            if partial is not None:
                to_plan, actual = partial(desired)
                actual.timeouts, actual.info = self.backend.timeouts(), self.backend.info()
            else:
                to_plan, actual = desired, self.backend.dump(counters=False)  # connection counts come without
        except Exception as exc:  # the kernel could not be read: nothing was changed
            log.exception("dump failed")
            return self._report(snapshot, trigger, "error", started, t0,
                                errors=[{"op": "dump", "error": f"{type(exc).__name__}: {exc}"}])
        durations["dump"] = time.monotonic() - mark
        if partial is not None:
            wanted = {planning.service_key(s) for s in to_plan.services}
            drift = planning.drift(self._applied_table(), actual,
                                   matched={k for k in self._desired_keys(desired) if k not in wanted},
                                   config_only={k for s in actual.services
                                                if (k := planning.service_key(s)) not in wanted})
        else:
            drift = planning.drift(self._applied_table(), actual)

        mark = time.monotonic()
        plan = self._plan(snapshot, to_plan, actual)
        durations["plan"] = time.monotonic() - mark

        mark = time.monotonic()
        errors: list[dict] = []
        if plan.operations:
            ops = plan.operations
            batch = self.apply_batch or len(ops)
            try:
                for i in range(0, len(ops), batch):
                    if i and self.apply_pause:
                        time.sleep(self.apply_pause)
                    errors += self.backend.apply(ops[i:i + batch])
            except Exception as exc:
                log.exception("apply failed")
                errors.append({"op": "apply", "error": f"{type(exc).__name__}: {exc}"})
        applied = len(plan.operations) - len(errors)
        st.mutations += applied
        durations["apply"] = time.monotonic() - mark

        mark = time.monotonic()
        remaining: list[str] = []
        after: Table | None = actual
        # The usual apply (every operation taken, no drain under way) is verified in one pass against the
        # snapshot, decoding only what differs; anything else is verified on a full dump.
        as_desired = partial is not None and not plan.operations and not plan.drains  # already as desired
        if plan.operations and not errors and not plan.drains:
            try:
                touched = {planning.service_key(s) for s in to_plan.services} if partial is not None else None
                owned = True if snapshot.get("owns_whole_table") else self._previously_owned()
                as_desired = self._left_to_do(desired, owned=owned, only=touched) == []
            except Exception:
                log.exception("one-pass verify failed: verifying on a full dump")
        if not as_desired and (plan.operations or partial is not None):  # a partial reading verifies nothing
            try:
                after = self.backend.dump(counters=False)
            except Exception as exc:
                log.exception("verify dump failed")
                after = None
                errors.append({"op": "verify", "error": f"{type(exc).__name__}: {exc}"})
        if after is not None and not as_desired:
            check = self._plan(snapshot, desired, after)
            # Drains under way are expected; anything else left means the kernel did not take the change.
            remaining = [planning.describe(op) for op in check.operations
                         if not planning.is_drain_leftover(op, plan.drains)]
        durations["verify"] = time.monotonic() - mark
        daemon_ops = self._apply_daemons(snapshot, errors)
        applied += len(daemon_ops)
        st.mutations += len(daemon_ops)

        st.reconciles += 1
        table, table_digest = None, None
        if as_desired:
            # The kernel's owned services are the snapshot's: that is the applied configuration, as it came.
            st.applied, st.drains = snapshot["table"], {}
            self._applied_cache = (st.applied, desired)
            if not plan.unowned:
                table, table_digest = snapshot["table"], snapshot.get("digest")
            else:  # the report shows the whole kernel table, someone else's services included
                try:
                    table = codec.table_to_dict(self.backend.dump(counters=False))
                except Exception:
                    log.exception("dump for the report failed")
        elif after is not None:
            # What the agent owns from now on: the snapshot's services, and those it owned that are still
            # there (a delete that failed is retried next time). Drift is measured against this.
            key = planning.service_key
            keys = {key(s) for s in desired.services} | (self._previously_owned() & {key(s) for s in after.services})
            st.applied = codec.table_to_dict(planning.owned_table(after, keys))
            st.drains = plan.drains
            table = codec.table_to_dict(after)
        outcome = "error" if errors else ("ok" if plan.operations or daemon_ops else "noop")
        if not errors and not remaining:
            st.applied_revision = max(st.applied_revision, int(snapshot["revision"]))
            st.snapshot = _kept(snapshot)
            st.pending = None
        self.store.save(st)
        return self._report(snapshot, trigger, outcome, started, t0, plan=plan, applied=applied, errors=errors,
                            drift=drift, remaining=remaining, durations=durations, info=actual.info, table=table,
                            table_digest=table_digest, extra=[str(op) for op in daemon_ops])

    def _desired_keys(self, desired: Table) -> list:
        if self._desired_keys_cache is None or self._desired_keys_cache[0] is not desired:
            self._desired_keys_cache = (desired, [planning.service_key(s) for s in desired.services])
        return self._desired_keys_cache[1]

    def _previously_owned(self) -> set:
        """The keys of the services this agent applied last (those a plan may delete when they leave)."""
        return {planning.service_key(s) for s in self._applied_table().services} if self.state.applied else set()

    def _report(self, snapshot: dict, trigger: str, outcome: str, started: str, t0: float, *, plan=None,
                applied: int = 0, errors=(), drift=(), remaining=(), durations=None, info=None,
                table: dict | None = None, table_digest: str | None = None, extra=()) -> dict:
        """The report of one reconcile. `table_digest`: the control side's digest of `table`, when known;
        a table the control side already holds (its `reported_digest`) is not sent again."""
        operations = plan.operations if plan else []
        ops = [planning.describe(op) for op in operations[:MAX_REPORTED_OPERATIONS]] + list(extra)
        if table is not None and table_digest and snapshot.get("reported_digest") == table_digest:
            table = None  # unchanged since the last report: the control side keeps what it has
        durations = dict(durations or {})
        durations["total"] = time.monotonic() - t0
        return {
            "balancer": self.name,
            "cluster": snapshot.get("cluster"),
            "revision": int(snapshot.get("revision") or 0),
            "trigger": trigger,
            "outcome": outcome,
            "operations": ops,
            "operations_total": len(operations) + len(extra),
            "applied": applied,
            "errors": list(errors),
            "drift": list(drift),
            "unowned": plan.unowned if plan else [],
            "pending_drains": [f"{svc} -> {dest}" for svc, dests in (plan.drains if plan else {}).items()
                               for dest in dests],
            "remaining": list(remaining),
            "durations": {k: round(v, 4) for k, v in durations.items()},
            "started": started,
            "finished": _now_iso(),
            "applied_revision": self.state.applied_revision,
            "audit_head": self.state.audit_head,
            "facts": self.facts(info),
            "table": table,  # the kernel's table after this reconcile (configuration only), when read and new
            "table_digest": table_digest if table is None else None,  # when not sent: the one it still is
        }

    # --- drains -----------------------------------------------------------------------------------

    def follow_up(self) -> dict | None:
        """Re-plan while real servers drain: delete those whose connections ended or whose time is up.

        Called from the heartbeat thread; does nothing when no drain is pending or a reconcile is running.
        """
        if not self.state.drains or self.state.snapshot is None:
            return None
        if not self.lock.acquire(blocking=False):
            return None
        try:
            snap = self.state.snapshot
            if not self.state.drains:
                return None
            plan_probe = self._plan(snap, self._desired_table(snap), self.backend.dump(counters=False))
            due = [op for op in plan_probe.operations if op.kind == "delete_dest"]
            if not due and plan_probe.drains == self.state.drains:
                return None
            return self.reconcile(dict(snap, balancer=self.name), trigger="drain")
        finally:
            self.lock.release()

    # --- heartbeat ---------------------------------------------------------------------------------

    def facts(self, info=None) -> dict:
        if self._facts_cache is None or info is not None:
            try:
                info = info or self.backend.info()
            except Exception:
                info = None
            self._facts_cache = facts_mod.kernel_facts(info)
        out = dict(self._facts_cache)
        out.update(mutations=self.state.mutations, reconciles=self.state.reconciles,
                   drains=sum(len(d) for d in self.state.drains.values()))
        return out

    def heartbeat(self, startup: bool = False) -> dict:
        """Build one heartbeat: facts, drift since the last apply, the counters that changed."""
        self._beats += 1
        full = startup or self._beats % FULL_SAMPLE_EVERY == 1
        busy = not self.lock.acquire(blocking=False)
        try:
            table = self.backend.dump(counters=True)
            drift = [] if busy else planning.drift(self._applied_table(), table)
            state = self.state
            beat = {
                "balancer": self.name,
                "cluster": state.cluster,
                "sent": _now_iso(),
                "startup": startup,
                "busy": busy,
                "applied_revision": state.applied_revision,
                "audit_head": state.audit_head,
                "facts": self.facts(table.info) if startup else self.facts(),
                "drift": drift,
            }
            # Services in the kernel that this agent neither carries nor carried: someone else's.
            mine = self._owned_keys()
            beat["facts"]["unowned_services"] = [planning.key_text(planning.service_key(s)) for s in table.services
                                                 if planning.service_key(s) not in mine]
            try:
                beat["facts"]["sync_daemons"] = [{"state": d.state, "interface": d.mcast_ifn, "syncid": d.syncid}
                                                 for d in sync_daemons(self.backend)]
            except Exception:
                log.exception("listing the sync daemons failed")
        finally:
            if not busy:
                self.lock.release()
        samples = {planning.key_text(planning.service_key(svc)): service_sample(svc) for svc in table.services}
        if full:
            beat["samples"] = samples
            beat["keys"] = list(samples)
        else:
            beat["samples"] = {k: v for k, v in samples.items() if self._last_samples.get(k) != v}
            if set(samples) != set(self._last_samples):
                beat["keys"] = list(samples)
        self._last_samples = samples
        return beat

    def _owned_keys(self) -> set:
        """Keys of the services this agent applied or is to carry (cached per state version)."""
        st = self.state
        if self._owned_cache is None or self._owned_cache[0] is not st.applied or self._owned_cache[1] is not \
                st.snapshot:
            keys = self._previously_owned()
            if st.snapshot:
                keys |= {planning.service_key(s) for s in self._desired_table(st.snapshot).services}
            self._owned_cache = (st.applied, st.snapshot, keys)
        return self._owned_cache[2]

    def send_heartbeat(self, startup: bool = False, expires: float | None = None) -> dict:
        beat = self.heartbeat(startup)
        self._send(HEARTBEAT_TASK, beat, expires=expires)
        return beat

    # --- backups -------------------------------------------------------------------------------------

    def backup(self, request: dict) -> dict:
        """The kernel table for a backup (requested by the control side), sent to the control queue."""
        from lvsadmin.backups.capture import backup_payload

        self.witness(request)
        table = self.backend.dump(counters=False)
        if not table.daemons:  # ipvsadm -S drops the sync daemons; the backup's JSON keeps them
            table.daemons = sync_daemons(self.backend)
        payload = backup_payload(self.name, table, request.get("trigger") or "manual",
                                 request.get("requested_by") or "")
        payload["audit_head"] = self.state.audit_head
        self._send(BACKUP_TASK, payload)
        return payload

    def witness(self, message: dict) -> None:
        """Keep the audit chain head a message carries, when it is newer than the one kept (saved at once)."""
        head = newest(self.state.audit_head, message.get("audit_head"))
        if head is not self.state.audit_head:
            with self.lock:
                self.state.audit_head = head
                self.store.save(self.state)

    def _send(self, task: str, payload: dict, expires: float | None = None) -> None:
        try:
            self.send(task, payload, expires=expires)
        except Exception:  # a lost message is healed by the next heartbeat or resync
            log.exception("could not send %s", task)


def _stats(stats: Stats | None) -> dict:
    return asdict(stats) if stats is not None else {f.name: 0 for f in fields(Stats)}


def service_sample(svc) -> dict:
    """One service's counters as the control side keeps them (ServiceSample.data)."""
    dests = {}
    for d in svc.destinations:
        dests[planning.dest_text(d)] = {"active_conns": d.active_conns, "inactive_conns": d.inactive_conns,
                                        "persistent_conns": d.persistent_conns, "weight": d.weight,
                                        **_stats(d.stats)}
    return {
        **_stats(svc.stats),
        "active_conns": sum(d.active_conns for d in svc.destinations),
        "inactive_conns": sum(d.inactive_conns for d in svc.destinations),
        "persistent_conns": sum(d.persistent_conns for d in svc.destinations),
        "dests": dests,
    }
