"""The agent's work, without Celery: converge the kernel to a snapshot, follow drains up, describe itself.

One `Agent` per process. Every change to the kernel happens under its lock (the reconcile task and the
heartbeat thread's drain follow-up never interleave). Messages to the control side go through `send(task
name, payload, expires)`, so this module is tested without a broker.

The messages in and out, and the names of their tasks, are `lvsadmin.protocol`'s. Every message in carries the
audit chain's head; the agent keeps the newest and every report, heartbeat and backup carries it back: a witness
of the audit log outside the panel's database.

A reconcile that has work to do converges in four steps, each filling its part of a `Convergence`: read (only
the part of the kernel that differs from the snapshot, only the services a delta names (`.deltas`), or a full
dump while drains need every connection count), plan, apply, verify (in one pass against the snapshot, or on a
full dump); then the state is settled and the report (`.reporting`) built from it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable

from lvsadmin.ipvs import codec
from lvsadmin.ipvs.model import Table
from lvsadmin.ipvs.plan import DELETE_DEST, SetTimeouts, service_key
from lvsadmin.protocol import (
    BACKUP_RESULT_TASK,
    DELIVERY_KEYS,
    DELTA_VERSION,
    DELTAS,
    HEARTBEAT_TASK,
    REPORT_TASK,
    BackupRequest,
    ReconvergeRequest,
    newest,
)

from . import daemons, planning
from . import facts as facts_mod
from .backend import Backend
from .beat import Beats
from .capture import backup_payload
from .converge import Convergence, failure
from .deltas import Deltas
from .health.monitor import HealthMonitor
from .health.overlaying import HealthOverlay
from .reporting import build_report
from .reporting import now_iso as _now_iso
from .state import AgentState, StateStore
from .tables import Decoded, KeyCache, OwnedKeys, decode_reusing, same_table

log = logging.getLogger(__name__)

Sender = Callable[..., None]


def _timeouts(snapshot: dict | None):
    return ((snapshot or {}).get("table") or {}).get("timeouts")


def _kept(snapshot: dict) -> dict:
    """A snapshot as the state keeps it: without what belongs to one delivery."""
    return {k: v for k, v in snapshot.items() if k not in DELIVERY_KEYS}


class Agent(HealthOverlay):
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
        self._beats = Beats()
        self._facts_cache: dict | None = None
        # Worked out once per version: the last snapshot's table, its keys, the applied table, the keys owned.
        self._desired_cache: Decoded | None = None
        self._applied_cache: Decoded | None = None
        self._owned_cache: OwnedKeys | None = None
        self._target_cache: tuple | None = None  # (target Table, its dict, its digest) when health holds servers
        self._key_sets: list[tuple[Table, frozenset]] = []
        self._keys = KeyCache()  # service keys of the desired and applied tables, per Service object
        self._deltas = Deltas()  # builds the table a delta stands for from the one held
        self.health = HealthMonitor(act=self.act_on_health, send=self._send_health)
        self.health.remembered_down = set(self.state.health_down)

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
        """Converge the kernel to `snapshot` (a protocol.Snapshot) and report; older revisions are ignored.

        Idempotent: a snapshot the kernel already matches plans no operation, so nothing is changed.
        """
        trigger = trigger or snapshot.get("trigger") or "apply"
        if snapshot.get("balancer") not in (None, "", self.name):
            log.error("snapshot for balancer %s delivered to %s: ignored", snapshot.get("balancer"), self.name)
            return None
        self.witness(snapshot.get("audit_head"))
        revision = int(snapshot["revision"])
        cluster = str(snapshot.get("cluster") or "")
        lineage = str(snapshot.get("lineage") or "")
        started, t0 = _now_iso(), time.monotonic()
        with self.lock:
            st = self.state
            if st.cluster and cluster != st.cluster:
                log.warning("balancer moved from cluster %s to %s: revisions start over", st.cluster, cluster)
                st.applied_revision, st.snapshot = 0, None
            elif lineage and lineage in st.retired_lineages:
                log.error("revision %s of lineage %s, which this balancer left: ignored", revision, lineage)
                return self._send_report(self._report(snapshot, trigger, "stale", started, t0))
            elif lineage and st.lineage and lineage != st.lineage:
                # Only the panel signs snapshots: a new lineage is the panel taking this balancer back (after its
                # database was restored, say). The old lineage is retired: a replay of its messages changes nothing.
                log.warning("lineage %s replaces %s (revision %s applied): revisions start over", lineage,
                            st.lineage, st.applied_revision)
                st.retired_lineages = [*st.retired_lineages, st.lineage][-20:]
                st.applied_revision, st.snapshot, st.pending = 0, None, None
            elif revision < self.newest_revision():
                log.info("revision %s is older than revision %s (applied %s): ignored", revision,
                         self.newest_revision(), st.applied_revision)
                return self._send_report(self._report(snapshot, trigger, "stale", started, t0))
            touched = None
            if "delta" in snapshot:
                resolved = self._deltas.resolve(st, snapshot, self.store)
                if resolved is None:  # not built on what this agent holds: the control side sends the snapshot
                    return self._send_report(self._report(snapshot, trigger, "stale", started, t0,
                                                          needs_snapshot=True))
                snapshot, touched = resolved
            try:
                decoded = self._desired_table(snapshot)
                desired = self._target(snapshot, decoded)
            except (KeyError, TypeError, ValueError) as exc:
                return self._send_report(self._report(snapshot, trigger, "error", started, t0, errors=[
                    {"op": "snapshot", "error": f"malformed snapshot: {exc}"}]))
            if self.state.drains:
                touched = None  # drains need every connection count: read it all
            elif trigger == "health" or (touched is not None and desired is not decoded):
                touched = self._changed_since_applied(desired, touched)  # None: read it all
            elif desired is not decoded:
                touched = None
            st.cluster = cluster
            st.lineage = lineage or st.lineage
            if trigger == "health" and touched == set():
                return None  # health changed nothing the kernel holds (a ramp step that rounds the same)
            if trigger != "health" and self._already_converged(snapshot, desired):
                st.reconciles += 1
                self.store.save(st)  # the counters only: the tables it names are already on disk
                # The kernel holds exactly the snapshot's table (under health's overlay): the table to report.
                table, digest = self._table_of(snapshot, desired)
                return self._send_report(self._report(
                    snapshot, trigger, "noop", started, t0, table=table, table_digest=digest,
                    durations={"noop_check": time.monotonic() - t0}))
            st.pending = _kept(snapshot)
            self.store.save(st)
            return self._send_report(self._converge(snapshot, desired, trigger, started, t0, touched))

    def _send_report(self, report: dict) -> dict:
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

    def _left_to_do(self, desired: Table, owned, only=None) -> list:
        """What the kernel still lacks of `desired`, found in one pass that decodes only what differs.

        Drains are not considered: callers use this only when none is under way. `only`: look at the
        destinations of these services only (those an apply just changed; the others were read as desired
        moments before).
        """
        ops = list(self.backend.diff(desired, owned=owned, only=only))
        if desired.timeouts is not None and self.backend.timeouts() != desired.timeouts:
            ops.insert(0, SetTimeouts(desired.timeouts))
        return ops

    def _daemon_ops(self, snapshot: dict) -> list:
        """What to start and stop so the kernel runs the sync daemon the balancer's settings ask for."""
        return daemons.plan(snapshot.get("sync"), self.backend.daemons(), self.state.started_daemons)

    def _apply_daemons(self, snapshot: dict, errors: list) -> list:
        """Start and stop sync daemons; returns the operations done (failures go to `errors`)."""
        done, self.state.started_daemons = daemons.converge(self.backend, snapshot.get("sync"),
                                                            self.state.started_daemons, errors)
        return done

    def _desired_table(self, snapshot: dict) -> Table:
        """The snapshot's table, decoded once per table: resyncs deliver the same one again and again.

        The same table is the same dict object (a reconverge), or a dict with the same digest (the control
        side's SHA-256 of the table, `codec.table_digest`).
        """
        table = snapshot["table"]
        cached = self._desired_cache
        digest = snapshot.get("digest")
        if cached is not None and (cached.data is table or (digest and digest == cached.digest)):
            return cached.table
        decoded = decode_reusing(table, cached)
        self._desired_cache = Decoded(digest, table, decoded)
        return decoded

    def newest_revision(self) -> int:
        """Revisions only move forward: older than the applied one, or than one being applied, is stale."""
        pending = int(self.state.pending.get("revision") or 0) if self.state.pending else 0
        return max(self.state.applied_revision, pending)

    def reconverge(self, message: dict | None = None) -> dict | None:
        """Converge again to the snapshot last applied (repairs drift; the control side asks on resync).

        The periodic resync sends this small request instead of the whole table when the control side knows
        the agent applied the current revision ("revision": N). An agent that does not hold revision N of
        that cluster (its state file was lost, it moved) answers with a report asking for the snapshot.
        """
        request = ReconvergeRequest.from_dict(message)
        self.witness(request.audit_head)
        trigger = request.trigger or "resync"
        with self.lock:
            snap = self.state.pending or self.state.snapshot
            same_cluster = request.cluster in (None, "", self.state.cluster) and (
                request.lineage in ("", self.state.lineage) or not self.state.lineage)
            wanted = request.revision
            if wanted and (snap is None or not same_cluster or int(snap.get("revision") or 0) < wanted):
                log.info("asked to reconverge to revision %s of %s, which this agent does not hold: asking for it",
                         wanted, request.cluster)
                return self._send_report(self._report(
                    {"cluster": request.cluster, "revision": wanted, "reported_digest": request.reported_digest},
                    trigger, "stale", _now_iso(), time.monotonic(), needs_snapshot=True))
            if snap is None:
                log.info("reconverge asked, but this agent has applied nothing yet")
                return None
            if not same_cluster:
                log.info("reconverge for cluster %s, this agent carries %s: ignored", request.cluster,
                         self.state.cluster)
                return None
            if not snap.get("digest") and isinstance(snap.get("table"), dict):
                # kept by an agent from before snapshots named their table: name it once, as the control side does
                snap["digest"] = codec.table_digest(snap["table"])
            again = dict(snap, balancer=self.name, reported_digest=request.reported_digest)
            if request.sync is not None:  # the balancer's sync settings as they are now (they have no revision)
                again["sync"] = request.sync
            return self.reconcile(again, trigger=trigger)

    def warm(self) -> None:
        """At start, before the first heartbeat asks for a resync: decode the snapshot the state file holds and
        have the backend work out its encoding, so that the first reconcile runs as fast as the later ones."""
        with self.lock:
            snap = self.state.pending or self.state.snapshot
            if snap is None:
                return
            try:
                desired = self._target(snap, self._desired_table(snap))  # starts the health checks, too
                self._applied_table()
                self.backend.prepare(desired)
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

    def _plan(self, snapshot: dict, desired: Table, actual: Table, only: set | None = None) -> planning.Plan:
        """planning.plan; `only`: the keys of the services read (those of `actual`), the others left alone."""
        st = self.state
        owned = self._previously_owned()
        return planning.plan(desired, actual, previously_owned=owned if only is None else owned & only,
                             owns_whole_table=bool(snapshot.get("owns_whole_table")), drains=st.drains,
                             now=self.clock(), drain_timeout=float(snapshot.get("drain_timeout") or 0))

    def _applied_table(self) -> Table | None:
        """The state's applied configuration as a Table (parsed once per version of it; don't mutate it)."""
        applied = self.state.applied
        if not applied:
            return None
        if self._applied_cache is None or self._applied_cache.data is not applied:
            self._applied_cache = Decoded(None, applied, codec.table_from_dict(applied))
        return self._applied_cache.table

    # --- converge: read → plan → apply → verify ---------------------------------------------------

    def _converge(self, snapshot: dict, desired: Table, trigger: str, started: str, t0: float,
                  touched: set | None = None) -> dict:
        # With no drain under way, only the part of the kernel that differs from the snapshot is read and
        # planned (Backend.partial); drains need every connection count: a full dump. A delta names what changed
        # (`touched`): only those services are read (Backend.partial_of), unless they show drift, when the rest
        # may have drifted too: then the kernel is read as for a snapshot.
        run = Convergence(partial=not self.state.drains, only=touched,
                          read_timeouts=touched is None or _timeouts(snapshot) != _timeouts(self.state.snapshot))
        try:
            run.read(self.backend, desired)
            run.drift = self._drift(run, desired)
            if run.only is not None and run.drift:
                log.warning("drift in the services a delta names: reading the whole kernel table")
                run = Convergence(partial=True)
                run.read(self.backend, desired)
                run.drift = self._drift(run, desired)
        except Exception as exc:  # the kernel could not be read: nothing was changed
            log.exception("dump failed")
            return self._report(snapshot, trigger, "error", started, t0, errors=[failure("dump", exc)])
        mark = time.monotonic()
        run.plan = self._plan(snapshot, run.to_plan, run.actual, run.only)
        run.timed("plan", mark)
        run.apply(self.backend, self.apply_batch, self.apply_pause)
        self.state.mutations += run.applied
        self._verify(run, snapshot, desired)
        if run.only is None or snapshot.get("sync") != (self.state.snapshot or {}).get("sync"):
            run.daemon_ops = self._apply_daemons(snapshot, run.errors)  # (a delta's: when its settings changed)
        run.applied += len(run.daemon_ops)
        self.state.mutations += len(run.daemon_ops)
        table, table_digest = self._settle(run, snapshot, desired)
        if touched is not None and table is not None and table_digest == snapshot.get("digest"):
            table = None  # the snapshot's own table, which the control side that sent the delta keeps
        return self._report(snapshot, trigger, run.outcome, started, t0, plan=run.plan, applied=run.applied,
                            errors=run.errors, drift=run.drift, remaining=run.remaining, durations=run.durations,
                            info=run.actual.info, table=table, table_digest=table_digest,
                            extra=[str(op) for op in run.daemon_ops])

    def _drift(self, run: Convergence, desired: Table) -> list:
        """How the kernel differs from what this agent applied last (a partial reading: the services it read
        are compared in full, the others' configuration only, and those it did not read matched)."""
        if not run.partial:
            return planning.drift(self._applied_table(), run.actual)
        wanted = {service_key(s) for s in run.to_plan.services}
        if run.only is not None:  # only these services were read: the others are not compared
            applied = self._applied_table()
            if applied is None:
                return []
            desired_keys = self._desired_keys(desired)
            named = Table(services=list(itertools.compress(applied.services, map(
                run.only.__contains__, self._keys.keys(applied)))), timeouts=applied.timeouts)
            return planning.drift(named, run.actual,
                                  matched={k for k in run.only if k in desired_keys and k not in wanted},
                                  config_only={k for s in run.actual.services
                                               if (k := service_key(s)) not in wanted})
        return planning.drift(self._applied_table(), run.actual,
                              matched={k for k in self._desired_keys(desired) if k not in wanted},
                              config_only={k for s in run.actual.services
                                           if (k := service_key(s)) not in wanted})

    def _verify(self, run: Convergence, snapshot: dict, desired: Table) -> None:
        """Whether the kernel now holds the snapshot, and what it still lacks.

        The usual apply (every operation taken, no drain under way) is verified in one pass against the
        snapshot, decoding only what differs; anything else is verified on a full dump.
        """
        mark = time.monotonic()
        plan = run.plan
        run.as_desired = run.partial and not plan.operations and not plan.drains  # already as desired
        if plan.operations and not run.errors and not plan.drains:
            try:
                owned = True if snapshot.get("owns_whole_table") else self._previously_owned()
                if run.only is not None:  # a delta's: the services it names, each read by its key
                    owned = owned if owned is True else owned & run.only
                    run.as_desired = self.backend.diff_of(desired, run.only, owned=owned) == [] and (
                        not run.read_timeouts or desired.timeouts is None
                        or self.backend.timeouts() == desired.timeouts)
                else:
                    touched = {service_key(s) for s in run.to_plan.services} if run.partial else None
                    run.as_desired = self._left_to_do(desired, owned=owned, only=touched) == []
            except Exception:
                log.exception("one-pass verify failed: verifying on a full dump")
        if not run.as_desired and run.only is not None and not plan.operations and not plan.drains:
            run.as_desired = not run.errors  # the services it names were read as desired, the rest taken so
        if not run.as_desired and (plan.operations or run.partial):  # a partial reading verifies nothing
            try:
                run.after = self.backend.dump(counters=False)
            except Exception as exc:
                log.exception("verify dump failed")
                run.after = None
                run.errors.append(failure("verify", exc))
        if run.after is not None and not run.as_desired:
            check = self._plan(snapshot, desired, run.after)
            # Drains under way are expected; anything else left means the kernel did not take the change.
            run.remaining = [planning.describe(op) for op in check.operations
                             if not planning.is_drain_leftover(op, plan.drains)]
        run.timed("verify", mark)

    def _settle(self, run: Convergence, snapshot: dict, desired: Table) -> tuple[dict | None, str | None]:
        """Keep what was applied in the state (the revision moves when nothing is left to do); returns the
        kernel table to report and the control side's digest of it (when it is the snapshot's)."""
        st = self.state
        st.reconciles += 1
        table, table_digest = None, None
        if run.as_desired:
            # The kernel's owned services are the snapshot's (under health's overlay): the applied configuration.
            data, digest = self._table_of(snapshot, desired)
            st.applied, st.drains = data, {}
            self._applied_cache = Decoded(None, st.applied, desired)
            if not run.plan.unowned:
                table, table_digest = data, digest
            else:  # the report shows the whole kernel table, someone else's services included
                try:
                    table = codec.table_to_dict(self.backend.dump(counters=False))
                except Exception:
                    log.exception("dump for the report failed")
        elif run.after is not None:
            # What the agent owns from now on: the snapshot's services, and those it owned that are still
            # there (a delete that failed is retried next time). Drift is measured against this.
            key = service_key
            keys = {key(s) for s in desired.services} | (self._previously_owned()
                                                         & {key(s) for s in run.after.services})
            st.applied = codec.table_to_dict(planning.owned_table(run.after, keys))
            st.drains = run.plan.drains
            table = codec.table_to_dict(run.after)
        if not run.errors and not run.remaining:
            st.applied_revision = max(st.applied_revision, int(snapshot["revision"]))
            st.snapshot = _kept(snapshot)
            st.pending = None
        self.store.save(st)
        return table, table_digest

    def _desired_keys(self, table: Table) -> frozenset:
        """The keys of a table's services (worked out once per table, the desired and the applied one, from the
        keys of its Service objects: a new revision costs what changed)."""
        for kept, keys in self._key_sets:
            if kept is table:
                return keys
        keys = frozenset(self._keys.keys(table))
        self._key_sets = [*self._key_sets[-1:], (table, keys)]
        return keys

    def _previously_owned(self) -> frozenset:
        """The keys of the services this agent applied last (those a plan may delete when they leave)."""
        return frozenset() if (applied := self._applied_table()) is None else self._desired_keys(applied)

    _report = build_report  # the report of one reconcile (lvsadmin.agent.reporting)

    # --- drains -----------------------------------------------------------------------------------

    def follow_up(self) -> dict | None:
        """Re-plan while real servers drain: delete those whose connections ended or whose time is up.

        Called from the heartbeat thread; does nothing when no drain is pending or a reconcile is running.
        """
        if not self.lock.acquire(blocking=False):
            return None
        try:  # between reconciles: digest the table held, so that the first delta on it costs what it changes
            if self.state.snapshot is not None:
                self._deltas.prime(self.state.snapshot.get("table"))
        finally:
            self.lock.release()
        if not self.state.drains or self.state.snapshot is None:
            return None
        if not self.lock.acquire(blocking=False):
            return None
        try:
            snap = self.state.snapshot
            if not self.state.drains:
                return None
            plan_probe = self._plan(snap, self._target(snap, self._desired_table(snap)),
                                    self.backend.dump(counters=False))
            due = [op for op in plan_probe.operations if op.kind == DELETE_DEST]
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
        out[DELTAS] = DELTA_VERSION  # the control side may send this agent deltas

        return out

    def heartbeat(self, startup: bool = False) -> dict:
        """Build one heartbeat (a protocol.Heartbeat): facts, drift since the last apply, the counters that
        changed, the health checker's state."""
        return self._beats.build(self, startup)

    def _owned_keys(self) -> set:
        """Keys of the services this agent applied or is to carry (cached per state version)."""
        st = self.state
        cached = self._owned_cache
        if cached is None or cached.applied is not st.applied or cached.snapshot is not st.snapshot:
            keys = self._previously_owned()
            if st.snapshot:
                keys |= {service_key(s) for s in self._desired_table(st.snapshot).services}
            self._owned_cache = OwnedKeys(st.applied, st.snapshot, keys)
        return self._owned_cache.keys

    def send_heartbeat(self, startup: bool = False, expires: float | None = None) -> dict:
        beat = self.heartbeat(startup)
        self._send(HEARTBEAT_TASK, beat, expires=expires)
        return beat

    # --- backups -------------------------------------------------------------------------------------

    def backup(self, message: dict) -> dict:
        """The kernel table for a backup (a protocol.BackupRequest), sent to the control queue."""
        request = BackupRequest.from_dict(message)
        self.witness(request.audit_head)
        table = self.backend.dump(counters=False)
        if not table.daemons:  # ipvsadm -S drops the sync daemons; the backup's JSON keeps them
            table.daemons = self.backend.daemons()
        payload = backup_payload(self.name, table, request.trigger or "manual", request.requested_by,
                                 audit_head=self.state.audit_head)
        self._send(BACKUP_RESULT_TASK, payload)
        return payload

    def witness(self, head) -> None:
        """Keep the audit chain head a message carried, when it is newer than the one kept (saved at once)."""
        head = newest(self.state.audit_head, head)
        if head is not self.state.audit_head:
            with self.lock:
                self.state.audit_head = head
                self.store.save(self.state)

    def _send(self, task: str, payload: dict, expires: float | None = None) -> None:
        try:
            self.send(task, payload, expires=expires)
        except Exception:  # a lost message is healed by the next heartbeat or resync
            log.exception("could not send %s", task)

