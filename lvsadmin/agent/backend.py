"""What the agent needs from a kernel (`Backend`), and the real one: IPVS over netlink (`NetlinkBackend`).

The agent codes against `Backend` only. Two classes implement it: `NetlinkBackend` below, over an IPVS socket
of `lvsadmin.ipvs.netlink` (the kernel of this host), and `lvsadmin.agent.kernel.MemoryBackend`, a fake kernel
for the host integration tests. `lvsadmin.agent.kernel.make_backend` picks one.

Operations are `lvsadmin.ipvs.plan.Operation`s (`SetTimeouts` among them), applied in the order
given. A backend is not thread-safe (a netlink socket is not): the agent makes one per thread.
"""

from __future__ import annotations

from typing import Protocol

from lvsadmin.ipvs.model import Info, SyncDaemon, Table, Timeouts
from lvsadmin.ipvs.netlink import IPVS, Prepared


class Backend(Protocol):
    def dump(self, counters: bool = True) -> Table:
        """The kernel's table: services with destinations (and counters), timeouts; Table.info set.
        Sync daemons may be left out (see daemons())."""

    def apply(self, operations: list) -> list[dict]:
        """Apply operations in order; returns one {"op", "error"} per failed operation (the rest go on)."""

    def diff(self, desired: Table, owned=None, drain=None, only=None) -> list:
        """The operations the kernel still lacks of `desired` (plan.diff against the kernel, found in one pass);
        `only`: compare the destinations of these desired services only, taking the others as desired."""

    def partial(self, desired: Table) -> tuple[Table, Table]:
        """The part of the kernel that differs from `desired`: (the desired services the kernel lacks or holds
        otherwise, the kernel's version of those plus the services not desired, without destinations)."""

    def partial_of(self, desired: Table, keys) -> tuple[Table, Table]:
        """partial() of the services of these keys only (desired or not), each read by its key: the others are
        taken as desired (a delta names what changed)."""

    def diff_of(self, desired: Table, keys, owned=None) -> list:
        """diff() of the services of these keys only, each read by its key (the verify of a delta's apply)."""

    def prepare(self, desired: Table) -> None:
        """Work out now what diff() and partial() will need of `desired` (an agent warming up at start)."""

    def timeouts(self) -> Timeouts:
        """The kernel's TCP, TCP FIN and UDP timeouts."""

    def info(self) -> Info:
        """IPVS version and connection table size."""

    def daemons(self) -> list[SyncDaemon]:
        """The running sync daemons."""

    def start_daemon(self, daemon: SyncDaemon) -> None:
        """Start a sync daemon (an error if one of its state already runs)."""

    def stop_daemon(self, state: str) -> None:
        """Stop the sync daemon of this state ("master" or "backup")."""

    def close(self) -> None:
        """Release what the backend holds (its socket); it may be used again afterwards."""


class NetlinkBackend:
    """The agent's kernel backend over an IPVS socket (lvsadmin.ipvs.netlink.IPVS, pyroute2's), opened on first use:
    the agent imports pyroute2 with its first reconcile, not at start-up."""

    def __init__(self):
        self._ipvs: IPVS | None = None
        self._prepared: Prepared | None = None

    @property
    def ipvs(self) -> IPVS:
        if self._ipvs is None:
            self._ipvs = IPVS()
        return self._ipvs

    def dump(self, counters: bool = True) -> Table:
        table = self.ipvs.dump(stats=counters)
        table.timeouts = self.ipvs.timeouts()
        table.info = self.ipvs.info()
        return table

    def apply(self, operations: list) -> list[dict]:
        return [{"op": str(f.op), "error": str(f.error)} for f in self.ipvs.apply(operations)]

    def diff(self, desired: Table, owned=None, drain=None, only=None) -> list:
        """The operations that bring the kernel to `desired` (IPVS.diff: one pass, decoding only what differs).

        The agent's no-op check and its verify after an apply."""
        return self.ipvs.diff(self._prepare(desired), owned=owned, drain=drain, only=only)

    def partial(self, desired: Table) -> tuple[Table, Table]:
        """IPVS.partial: what differs from `desired`."""
        return self.ipvs.partial(self._prepare(desired))

    def partial_of(self, desired: Table, keys) -> tuple[Table, Table]:
        """IPVS.partial_of: what differs from `desired` in these services, read one by one."""
        return self.ipvs.partial_of(self._prepare(desired), keys)

    def diff_of(self, desired: Table, keys, owned=None) -> list:
        """IPVS.diff_of: what these services still lack of `desired`."""
        return self.ipvs.diff_of(self._prepare(desired), keys, owned=owned)

    def prepare(self, desired: Table) -> None:
        """Work out the encoding of every service of `desired` now (an agent warming up at start), not during
        its first diff."""
        prepared = self._prepare(desired)
        for key, svc in prepared.by_key.items():
            prepared.expected_dests(key, svc)
            prepared.config(key, svc)

    def _prepare(self, desired: Table) -> Prepared:
        # The agent never changes a snapshot's table once decoded: the same table is prepared once, and a
        # new one takes over what is known of the services it shares with the previous one.
        if self._prepared is None or self._prepared.table is not desired:
            self._prepared = Prepared(desired, previous=self._prepared)
        return self._prepared

    def timeouts(self) -> Timeouts:
        return self.ipvs.timeouts()

    def info(self) -> Info:
        return self.ipvs.info()

    def daemons(self) -> list[SyncDaemon]:
        """The running sync daemons (not in dump(): the table's hot paths never need them)."""
        return self.ipvs.daemons()

    def start_daemon(self, daemon: SyncDaemon) -> None:
        self.ipvs.start_daemon(daemon)

    def stop_daemon(self, state: str) -> None:
        self.ipvs.stop_daemon(state)

    def close(self) -> None:
        if self._ipvs is not None:
            self._ipvs.close()
            self._ipvs = None
