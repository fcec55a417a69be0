"""A kernel table as a backup keeps it: the lossless JSON document, and the check that a document read back
has the shape of a kernel table. The agent writes documents (lvsadmin.agent.capture), the panel reads them."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import fields

from lvsadmin.ipvs import codec
from lvsadmin.ipvs.model import Table

_U32 = 2**32 - 1
_PROTOCOLS = ("tcp", "udp", "sctp", "fwmark")

DOCUMENT_FORMAT = "lvsadmin-backup/1"


def make_document(table: Table) -> str:
    """The lossless JSON for a table (configuration only, no counters), spelled stably so its hash is reproducible."""
    return json.dumps({"format": DOCUMENT_FORMAT, **codec.table_to_dict(table)}, sort_keys=True, indent=1)


def shape_error(table: Table) -> str:
    """"" when every field of a decoded table has the type and range a kernel table can have; else the first
    that does not. The JSON's hash only says it is unchanged: a document sent wrong (say, by a compromised
    balancer) must be called corrupt, not break the pages that read it."""
    parts = [table.timeouts, table.info, *table.daemons]
    for svc in table.services:
        if svc.protocol not in _PROTOCOLS:
            return f"unknown protocol {svc.protocol!r}"
        if svc.protocol != "fwmark" and not _is_address(svc.address):
            return f"service address {svc.address!r}"
        parts += [svc, *svc.destinations]
        for dest in svc.destinations:
            if not _is_address(dest.address):
                return f"real server address {dest.address!r}"
    for part in parts:
        for f in fields(part) if part is not None else ():
            if not f.compare or f.name == "destinations":
                continue
            value, kind = getattr(part, f.name), f.type
            if kind == "bool" and not isinstance(value, bool):
                return f"{f.name} {value!r} is not true or false"
            if kind == "int" and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _U32):
                return f"{f.name} {value!r} is not a number from 0 to {_U32}"
            if kind == "str" and not isinstance(value, str):
                return f"{f.name} {value!r} is not text"
    for svc in table.services:
        if svc.port > 65535 or any(d.port > 65535 for d in svc.destinations):
            return "a port over 65535"
    return ""


def _is_address(text) -> bool:
    try:
        return isinstance(text, str) and "%" not in text and bool(ipaddress.ip_address(text))
    except ValueError:
        return False
