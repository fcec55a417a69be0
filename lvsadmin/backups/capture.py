"""Agent side (no Django): turn a dumped kernel table into a backup payload for the control worker."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from lvsadmin.ipvs import codec, rules
from lvsadmin.ipvs.model import Table

DOCUMENT_FORMAT = "lvsadmin-backup/1"


def make_document(table: Table) -> str:
    """The lossless JSON for a table (configuration only, no counters), spelled stably so its hash is reproducible."""
    return json.dumps({"format": DOCUMENT_FORMAT, **codec.table_to_dict(table)}, sort_keys=True, indent=1)


def backup_payload(balancer: str, table: Table, trigger: str, requested_by: str = "") -> dict:
    """`table` must come from the kernel with timeouts, daemons and info filled in."""
    document = make_document(table)
    return {
        "balancer": balancer,
        "trigger": trigger,
        "requested_by": requested_by,
        "taken_at": datetime.now(UTC).isoformat(),
        "text": rules.format_save(table, numeric=True),
        "document": document,
    }
