"""Tables to and from plain JSON-able dicts: the snapshots agents receive, the reports and lossless backups.

Only non-default fields are written for destinations, so a snapshot of 100,000 real servers stays small.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields

from .model import Destination, Info, Service, Stats, SyncDaemon, Table, Timeouts

_DEST_DEFAULTS = {f.name: f.default for f in fields(Destination) if f.compare}
_SVC_DEFAULTS = {f.name: f.default for f in fields(Service) if f.compare and f.name != "destinations"}
_COUNTERS = ("active_conns", "inactive_conns", "persistent_conns")


def _stats_to_dict(stats: Stats | None) -> dict | None:
    return None if stats is None else {f.name: getattr(stats, f.name) for f in fields(Stats)}


def destination_to_dict(dest: Destination, counters: bool = False) -> dict:
    out = {"address": dest.address, "port": dest.port}
    for name, default in _DEST_DEFAULTS.items():
        value = getattr(dest, name)
        if value != default and name not in out:
            out[name] = value
    if counters:
        for name in _COUNTERS:
            out[name] = getattr(dest, name)
        out["stats"] = _stats_to_dict(dest.stats)
    return out


def service_to_dict(svc: Service, counters: bool = False) -> dict:
    out = {"protocol": svc.protocol}
    for name, default in _SVC_DEFAULTS.items():
        value = getattr(svc, name)
        if value != default and name != "protocol":
            out[name] = value
    out["destinations"] = [destination_to_dict(d, counters) for d in svc.destinations]
    if counters:
        out["stats"] = _stats_to_dict(svc.stats)
    return out


def destination_from_dict(data: dict) -> Destination:
    stats = data.get("stats")
    known = {k: v for k, v in data.items() if k in _DEST_DEFAULTS or k in _COUNTERS or k in ("address", "port")}
    return Destination(**known, stats=Stats(**stats) if stats else None)


def service_from_dict(data: dict) -> Service:
    stats = data.get("stats")
    known = {k: v for k, v in data.items() if k in _SVC_DEFAULTS}
    return Service(
        protocol=data["protocol"],
        **{k: v for k, v in known.items() if k != "protocol"},
        destinations=[destination_from_dict(d) for d in data.get("destinations", [])],
        stats=Stats(**stats) if stats else None,
    )


def table_to_dict(table: Table, counters: bool = False) -> dict:
    out: dict = {"services": [service_to_dict(s, counters) for s in table.services]}
    if table.timeouts is not None:
        out["timeouts"] = {"tcp": table.timeouts.tcp, "tcpfin": table.timeouts.tcpfin, "udp": table.timeouts.udp}
    if table.daemons:
        out["daemons"] = [{f.name: getattr(d, f.name) for f in fields(SyncDaemon)} for d in table.daemons]
    if table.info is not None:
        out["info"] = {"version": table.info.version, "conn_tab_size": table.info.conn_tab_size}
    return out


def table_from_dict(data: dict) -> Table:
    """Raises KeyError / TypeError / ValueError on a malformed document."""
    if not isinstance(data, dict) or not isinstance(data.get("services"), list):
        raise ValueError("not a table: expected an object with a list of services")
    return Table(
        services=[service_from_dict(s) for s in data["services"]],
        timeouts=Timeouts(**data["timeouts"]) if data.get("timeouts") else None,
        daemons=[SyncDaemon(**d) for d in data.get("daemons", [])],
        info=Info(**data["info"]) if data.get("info") else None,
    )


_DIGEST_FORMAT = b"lvsadmin-table-digest/2\n"


def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def service_digest(data: dict) -> bytes:
    """SHA-256 of one service dict in canonical JSON (the part of a table digest that is this service's)."""
    return hashlib.sha256(_canonical(data)).digest()


class DigestCache:
    """Service digests kept by the identity of their dict, for one holder of tables that never mutates a service
    dict once it is in a table (the agent: its tables come from JSON and are replaced, never edited). A new
    revision shares every unchanged service dict with the previous one, so its digest costs what changed."""

    def __init__(self, limit: int = 10_000):
        self.limit = limit
        self._digests: dict[int, bytes] = {}
        self._kept: dict[int, dict] = {}  # the dicts digested: kept alive, so that their ids name only them

    def digests(self, services: list) -> list[bytes]:
        """The digest of each service dict, looked up by identity in C; only the new ones are worked out."""
        found = list(map(self._digests.get, map(id, services)))
        if None in found:
            if len(self._digests) + len(services) > max(self.limit, 3 * len(services)):
                self._digests.clear()
                self._kept.clear()
            i = -1
            for _ in range(found.count(None)):
                i = found.index(None, i + 1)  # found in C
                sd = services[i]
                found[i] = self._digests[id(sd)] = service_digest(sd)
                self._kept[id(sd)] = sd
        return found


def table_digest(data: dict, cache: DigestCache | None = None) -> str:
    """The digest of a table dict: SHA-256 over the SHA-256 of each service's canonical JSON, in table order, and
    the canonical JSON of the rest (timeouts…). The control side names a snapshot's table, or the table an agent
    reported, by it (so neither is sent again when the other side already holds it), and an agent checks a delta's
    result against it. Made of the services' own digests so that a holder of successive tables (`cache`) digests
    only the services that changed; the same value with or without a cache."""
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, list):
        return hashlib.sha256(_DIGEST_FORMAT + _canonical(data)).hexdigest()
    h = hashlib.sha256(_DIGEST_FORMAT)
    h.update(b"".join(cache.digests(services) if cache is not None else map(service_digest, services)))
    h.update(_canonical({k: v for k, v in data.items() if k != "services"}))
    return h.hexdigest()
