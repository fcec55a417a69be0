"""The tables an agent works with, decoded once per version of them: a resync delivers the same snapshot again
and again, and a new revision usually changes a few services of many."""

from __future__ import annotations

import itertools
import operator
from typing import NamedTuple

from lvsadmin.ipvs import codec
from lvsadmin.ipvs.model import Table
from lvsadmin.ipvs.plan import service_key


class Decoded(NamedTuple):
    """A table dict as it came (with the digest it came with, if any) and its decoded Table."""

    digest: str | None
    data: dict
    table: Table


class OwnedKeys(NamedTuple):
    applied: dict | None  # the state's applied table and snapshot these keys were worked out from
    snapshot: dict | None
    keys: set


def decode_reusing(data: dict, previous: Decoded | None) -> Table:
    """codec.table_from_dict, taking the decoded Service of `previous` for every service whose dict is
    unchanged: a new revision usually changes a few services of many.

    The very same dict first (a table built from a delta shares every unchanged service dict with its base:
    found by identity, in C, whatever the table's size), then an equal dict of the same key (a whole snapshot
    sent again)."""
    if previous is None or not isinstance(data, dict) or not isinstance(previous.data.get("services"), list):
        return codec.table_from_dict(data)
    table = codec.table_from_dict(dict(data, services=[]))
    services = data["services"]
    if not isinstance(services, list):
        return codec.table_from_dict(data)
    # Both tables are alive here: an id names one dict of either.
    by_id = dict(zip(map(id, previous.data["services"]), previous.table.services, strict=False))
    found = list(map(by_id.get, map(id, services)))
    # (`is None` in C: a Service compared with None by == would run its dataclass __eq__ in Python)
    missing = list(itertools.compress(range(len(found)), map(operator.is_, found, itertools.repeat(None))))
    misses = len(missing)
    if misses and misses * 16 <= len(services):  # a few services changed (a delta): decode just those
        for i in missing:
            found[i] = codec.service_from_dict(services[i])
        table.services = found
        return table
    if misses:
        old = None
        for i, sd in enumerate(services):
            if found[i] is not None:
                continue
            if old is None:
                old = {_dict_key(sd): (sd, svc) for sd, svc in zip(previous.data["services"], previous.table.services,
                                                                    strict=False) if isinstance(sd, dict)}
            hit = old.get(_dict_key(sd)) if isinstance(sd, dict) else None
            found[i] = hit[1] if hit is not None and hit[0] == sd else codec.service_from_dict(sd)
    table.services = found
    return table


class KeyCache:
    """plan.service_key of the services of successive tables, worked out once per Service object (successive
    revisions share the Service objects of the services that did not change): the keys of a new table cost what
    changed, the lookups run in C. Remembers the last few tables (the desired one, the applied one)."""

    def __init__(self, size: int = 3):
        self.size = size
        self._tables: list[tuple[Table, list]] = []
        self._by_id: dict[int, tuple] = {}

    def keys(self, table: Table) -> list:
        for kept, keys in self._tables:
            if kept is table:
                return keys
        services = table.services
        keys = list(map(self._by_id.get, map(id, services)))
        for i in itertools.compress(range(len(keys)), map(operator.is_, keys, itertools.repeat(None))):
            keys[i] = service_key(services[i])
        # Only the kept tables' services are remembered: their ids stay theirs while the tables are kept here.
        self._tables = [*self._tables[-(self.size - 1):], (table, keys)]
        self._by_id = {}
        for kept, kept_keys in self._tables:
            self._by_id.update(zip(map(id, kept.services), kept_keys, strict=True))
        return keys


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
