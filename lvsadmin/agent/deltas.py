"""A delta received (protocol.Snapshot's "delta"): the whole snapshot it stands for, built from the one held.

The control side sends a delta instead of the table when the agent's last report said it holds the delta's base
(revision and table digest). The agent checks that base against what it holds, builds the new table from its own
(lvsadmin.ipvs.delta.apply: every service the delta does not name is the very dict of the table held, so that what
was worked out of it, decoded Services, digests, encodings, is found again by identity), and checks the result's
digest. Anything else (another base, no snapshot held, a mismatch) and the agent asks for the whole snapshot.
"""

from __future__ import annotations

import logging

from lvsadmin.ipvs import codec, delta
from lvsadmin.ipvs.model import Service
from lvsadmin.ipvs.plan import service_key

from .state import AgentState, StateStore

log = logging.getLogger(__name__)


def _int(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _key_of(sd: dict) -> tuple:
    """plan.service_key of a service dict."""
    return service_key(Service(sd["protocol"], sd.get("address", ""), sd.get("port", 0), sd.get("fwmark", 0),
                               sd.get("fwmark_family", 4)))


class Deltas:
    """What the agent keeps to apply deltas in O(change): the service digests of its tables (by dict identity) and
    the delta.Index of the last table."""

    def __init__(self):
        self.digests = codec.DigestCache()
        self._index: tuple[dict, delta.Index] | None = None

    def prime(self, table) -> None:
        """Work out the digests and index of `table` (the one held) now, idle, not during the next delta."""
        if isinstance(table, dict) and isinstance(table.get("services"), list):
            try:
                self.digests.digests(table["services"])
                self.index_of(table)
            except (delta.DeltaError, KeyError, TypeError, ValueError):
                pass  # a table no delta can build on: the next delta asks for the snapshot

    def index_of(self, table: dict) -> delta.Index:
        if self._index is None or self._index[0] is not table:
            self._index = (table, delta.Index.of(table))
        return self._index[1]

    def resolve(self, st: AgentState, snapshot: dict, store: StateStore) -> tuple[dict, set | None] | None:
        """The whole snapshot a delta stands for, and the keys of the services it names (None: a duplicate of the
        snapshot held, to converge as a whole); None when the delta is not based on what `st` holds (another
        revision or digest, none held) or does not give the table of its digest. `store` learns that the new table
        is the held one changed by the delta (it writes it so)."""
        change, base = snapshot.get("delta"), st.snapshot
        if not isinstance(change, dict) or base is None or not isinstance(base.get("table"), dict):
            log.info("a delta to revision %s, but no snapshot held: asking for the snapshot", snapshot.get("revision"))
            return None
        whole = {k: v for k, v in snapshot.items() if k != "delta"}
        held = _int(base.get("revision"))
        if held == int(snapshot["revision"]) == st.applied_revision and base.get("digest") == snapshot.get("digest"):
            return dict(whole, table=base["table"]), None  # the revision held, again
        if not (held == st.applied_revision == _int(change.get("base_revision"))
                and base.get("digest") and base.get("digest") == change.get("base_digest")):
            log.info("a delta from revision %s (%s…), this agent holds revision %s (%s…): asking for the snapshot",
                     change.get("base_revision"), str(change.get("base_digest"))[:8], held,
                     str(base.get("digest"))[:8])
            return None
        try:
            base_index = self.index_of(base["table"])
            table, index = delta.apply(base["table"], change, base_index)
            digest = codec.table_digest(table, self.digests)
            named = [change["services"][key] or base["table"]["services"][base_index.position[key]]
                     for key in delta.changed_keys(change)]
            touched = {_key_of(sd) for sd in named}
        except (delta.DeltaError, KeyError, TypeError, ValueError) as exc:
            log.warning("a delta to revision %s does not apply: %s", snapshot.get("revision"), exc)
            return None
        if digest != snapshot.get("digest"):
            log.warning("a delta to revision %s makes a table of another digest: asking for the snapshot",
                        snapshot.get("revision"))
            return None
        self._index = (table, index)
        store.derived(table, base["table"], {k: v for k, v in change.items()
                                             if k not in ("base_revision", "base_digest")})
        return dict(whole, table=table), touched
