"""Witnesses of the audit chain outside the database: the newest head each balancer's agent was sent.

Every message to an agent carries the chain's head (log.current_head: sequence = record count, and the newest
record's hash); the agent keeps the newest it has seen in its state file and reports it back in every report and
heartbeat. A copy is kept here per balancer, and backups record the head when they were stored. Whoever holds the
database (and even the key) can truncate or rewrite the chain, but not what the agents remember: verification
(log.verify_chain) reports a witness beyond the chain's end, or one whose record differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.apps import apps
from django.utils import timezone

from lvsadmin.protocol import parse_head

from .models import Witness


@dataclass(frozen=True)
class Seen:
    name: str
    sequence: int
    hash: str
    seen_at: datetime


def saw(name: str, head) -> bool:
    """Keep `head` as what `name` witnessed, unless it has reported a newer one; returns whether it was kept.

    An equal sequence overwrites: the agent's word is the one outside the database."""
    parsed = parse_head(head)
    if parsed is None or parsed[0] == 0:
        return False
    sequence, hash_ = parsed
    kept = Witness.objects.filter(name=name).values_list("sequence", "hash").first()
    if kept is not None and (kept[0] > sequence or kept == parsed):
        return False  # one query in the usual case: every report and heartbeat of a fleet comes here
    values = {"sequence": sequence, "hash": hash_, "seen_at": timezone.now()}
    if kept is None:
        Witness.objects.get_or_create(name=name, defaults=values)
    else:
        Witness.objects.filter(name=name, sequence__lte=sequence).update(**values)  # unless a newer came meanwhile
    return True


def all_witnesses() -> list[Seen]:
    """Every witness: the balancers' newest heads and the heads backups recorded."""
    seen = [Seen(w.name, w.sequence, w.hash, w.seen_at) for w in Witness.objects.all()]
    if apps.is_installed("lvsadmin.backups"):
        backup = apps.get_model("backups", "Backup")
        rows = (backup.objects.filter(audit_sequence__gt=0).order_by()
                .values_list("pk", "balancer__name", "audit_sequence", "audit_hash", "taken_at"))
        seen += [Seen(f"backup {pk} of {name}", seq, hash_, taken_at) for pk, name, seq, hash_, taken_at in rows]
    return seen
