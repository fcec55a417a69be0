"""The tables an agent works with, decoded once per version of them: a resync delivers the same snapshot again
and again, and a new revision usually changes a few services of many."""

from __future__ import annotations

from typing import NamedTuple

from lvsadmin.ipvs import codec
from lvsadmin.ipvs.model import Table


class Decoded(NamedTuple):
    """A table dict as it came (with the digest it came with, if any) and its decoded Table."""

    digest: str | None
    data: dict
    table: Table


class OwnedKeys(NamedTuple):
    applied: dict | None  # the state's applied table and snapshot these keys were worked out from
    snapshot: dict | None
    keys: set


class KeysOf(NamedTuple):
    table: Table
    keys: list


def decode_reusing(data: dict, previous: Decoded | None) -> Table:
    """codec.table_from_dict, taking the decoded Service of `previous` for every service whose dict is
    unchanged: a new revision usually changes a few services of many."""
    if previous is None or not isinstance(data, dict) or not isinstance(previous.data.get("services"), list):
        return codec.table_from_dict(data)
    old = {_dict_key(sd): (sd, svc) for sd, svc in zip(previous.data["services"], previous.table.services,
                                                        strict=False)}
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
