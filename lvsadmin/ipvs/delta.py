"""Deltas between two tables of a cluster's lineage: what changed, service by service.

A new revision usually changes a few services of many: the control side sends an agent that holds revision M
only what differs in revision N (`make`), and the agent builds table N from its table M (`apply`), sharing every
unchanged service dict with it (so that what it worked out of them, decoded services, digests and encodings, is
reused by identity), then checks the result against N's digest (`codec.table_digest`).

A delta (protocol.Snapshot's "delta", without the base it names):

    {"services": {service key text: the service dict of revision N, or None: removed},
     "timeouts": the timeouts of N        (only when they changed; None: none),
     "order": [every key text of N]       (only when the order changed otherwise than new services appended)}

Services named are replaced in place or appended at the end (in the order the delta names them); removed ones
leave the list. Both sides use this module, so that what one makes the other applies exactly.
"""

from __future__ import annotations

from typing import NamedTuple

from .model import FWMARK, key_text, service_key_of

# A delta larger than this share of the table (in objects: services and real servers) is not worth it: the
# control side sends the whole snapshot instead.
MAX_SHARE = 0.5


class DeltaError(ValueError):
    """A delta that does not apply to the table given (or is malformed): the whole snapshot is needed."""


def service_key_text(sd: dict) -> str:
    """The key text (model.key_text) of a service dict (codec.service_to_dict: defaults left out)."""
    protocol = sd["protocol"]
    if protocol == FWMARK:
        return key_text((FWMARK, sd.get("fwmark_family", 4), sd.get("fwmark", 0)))
    return key_text(service_key_of(protocol, sd.get("address", ""), sd.get("port", 0), 0, 4))


class Index(NamedTuple):
    """A table's service key texts in order, and each one's position (worked out once per table)."""

    keys: list
    position: dict

    @classmethod
    def of(cls, table: dict) -> Index:
        keys = [service_key_text(sd) for sd in table["services"]]
        position = dict(zip(keys, range(len(keys)), strict=True))
        if len(position) != len(keys):
            raise DeltaError("the table names a service twice")
        return cls(keys, position)


def _objects(sd) -> int:
    return 1 + len(sd.get("destinations") or ()) if isinstance(sd, dict) else 1


def make(base: dict, new: dict, max_share: float = MAX_SHARE) -> dict | None:
    """The delta from table `base` to table `new`; None when the whole table is the better message (the delta
    would be larger than `max_share` of it) or when no delta can say it (a service named twice, other parts)."""
    if {k for k in base if k not in ("services", "timeouts")} or {k for k in new if k not in ("services", "timeouts")}:
        return None  # daemons, info: not in snapshots
    try:
        old_index, new_index = Index.of(base), Index.of(new)
    except DeltaError:
        return None
    old = dict(zip(old_index.keys, base["services"], strict=True))
    services: dict = {}
    for key, sd in zip(new_index.keys, new["services"], strict=True):
        was = old.get(key)
        if was is not sd and was != sd:
            services[key] = sd
    services.update((key, None) for key in old_index.keys if key not in new_index.position)
    out: dict = {"services": services}
    if base.get("timeouts") != new.get("timeouts"):
        out["timeouts"] = new.get("timeouts")
    expected = [k for k in old_index.keys if k in new_index.position]
    expected += [k for k in new_index.keys if k not in old_index.position]
    if expected != new_index.keys:
        out["order"] = new_index.keys
    size = sum(map(_objects, services.values())) + len(out.get("order") or ())
    if size > max_share * max(1, sum(map(_objects, new["services"]))):
        return None
    return out


def apply(base: dict, delta: dict, index: Index | None = None) -> tuple[dict, Index]:
    """Table `base` changed by `delta` (see the module's docstring), and its Index; raises DeltaError.

    Every service the delta does not name is the very dict of `base`; `index` (base's, when known) is reused
    as it is when no service comes or goes."""
    if not isinstance(delta, dict) or not isinstance(delta.get("services"), dict):
        raise DeltaError("a delta without its services")
    index = index or Index.of(base)
    services = list(base["services"])
    keys, position = index.keys, index.position
    added, removed = [], set()
    for key, sd in delta["services"].items():
        i = position.get(key)
        if sd is None:
            if i is None:
                raise DeltaError(f"service {key} removed, but the base does not have it")
            removed.add(key)
        elif not isinstance(sd, dict) or service_key_text(sd) != key:
            raise DeltaError(f"service {key}: not a service of that key")
        elif i is None:
            added.append((key, sd))
        else:
            services[i] = sd
    if added or removed:
        kept = [(k, sd) for k, sd in zip(keys, services, strict=True) if k not in removed] + added
        keys = [k for k, _sd in kept]
        services = [sd for _k, sd in kept]
        position = dict(zip(keys, range(len(keys)), strict=True))
    order = delta.get("order")
    if order is not None:
        if not isinstance(order, list) or len(order) != len(keys) or set(order) != position.keys():
            raise DeltaError("the order does not name the table's services")
        services = [services[position[k]] for k in order]
        keys = list(order)
        position = dict(zip(keys, range(len(keys)), strict=True))
    table = dict(base, services=services)
    if "timeouts" in delta:
        if delta["timeouts"] is None:
            table.pop("timeouts", None)
        elif isinstance(delta["timeouts"], dict):
            table["timeouts"] = delta["timeouts"]
        else:
            raise DeltaError("timeouts: not an object")
    if keys is index.keys:
        return table, index
    return table, Index(keys, position)


def changed_keys(delta: dict) -> list[str]:
    """The key texts of the services a delta adds, changes or removes."""
    return list(delta.get("services") or ())
