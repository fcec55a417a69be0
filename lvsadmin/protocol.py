"""The agent <-> control contract (no Django: the agent imports it too). So far: the audit chain's head.

Every message to an agent carries "audit_head": {"sequence": record count, "hash": newest record's hash}; the
agent keeps the newest it was sent as a witness (lvsadmin.audit.witness) and every message back carries it.
"""

from __future__ import annotations

import re

_HASH = re.compile(r"[0-9a-f]{64}")


def parse_head(head) -> tuple[int, str] | None:
    """(sequence, hash) of a head; None for anything else (a message from an older version, or garbage)."""
    if not isinstance(head, dict):
        return None
    sequence, hash_ = head.get("sequence"), head.get("hash")
    if isinstance(sequence, bool) or not isinstance(sequence, int) or not 0 <= sequence < 2**63:
        return None
    if not isinstance(hash_, str) or not _HASH.fullmatch(hash_):
        return None
    return sequence, hash_


def newest(kept: dict | None, offered) -> dict | None:
    """The newer of two heads (the higher sequence); `kept` when `offered` is not a head or is not newer."""
    parsed = parse_head(offered)
    if parsed is None or (parse_head(kept) or (-1, ""))[0] >= parsed[0]:
        return kept
    return {"sequence": parsed[0], "hash": parsed[1]}
