"""A backup of this balancer's kernel table, as the agent sends it to the control side (protocol.BackupResult)."""

from __future__ import annotations

from datetime import UTC, datetime

from lvsadmin.ipvs import rules
from lvsadmin.ipvs.backup import make_document
from lvsadmin.ipvs.model import Table
from lvsadmin.protocol import BackupResult


def backup_payload(balancer: str, table: Table, trigger: str, requested_by: str = "",
                   audit_head: dict | None = None) -> dict:
    """`table` must come from the kernel with timeouts, daemons and info filled in."""
    return BackupResult(balancer=balancer, trigger=trigger, requested_by=requested_by,
                        taken_at=datetime.now(UTC).isoformat(), text=rules.format_save(table, numeric=True),
                        document=make_document(table), audit_head=audit_head).to_dict()
