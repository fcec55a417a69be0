"""The service layer: every write to the desired state happens here.

Each function runs in one transaction that validates with the kernel's rules, saves, bumps the cluster's
desired revision and writes its ChangeRecords explicitly. Views, forms, commands and workers call these
functions and nothing else to change the database (users are written by `core.users`).

    clusters.py          clusters and balancers
    virtual_services.py  virtual services and real servers
    tables.py            whole tables (preview, replace, apply what was reviewed)
    common.py            the fields of each kind of object, audit snapshots, the revision bump
"""

from .clusters import (
    create_balancer,
    create_balancer_to_enrol,
    create_cluster,
    delete_balancer,
    delete_cluster,
    enrol_with_token,
    issue_enrolment_token,
    revoke_balancer_key,
    rotate_balancer_key,
    set_balancer_key,
    update_balancer,
    update_cluster,
)
from .common import BALANCER_FIELDS, CLUSTER_FIELDS, REAL_SERVER_FIELDS, SERVICE_FIELDS, snapshot
from .tables import (
    Change,
    StalePlan,
    TableChanges,
    apply_cluster,
    preview_table,
    replace_table,
    replace_table_reviewed,
    take_back,
)
from .virtual_services import (
    create_real_server,
    create_service,
    delete_real_server,
    delete_service,
    set_real_server_state,
    update_real_server,
    update_service,
)

__all__ = [
    "BALANCER_FIELDS", "CLUSTER_FIELDS", "REAL_SERVER_FIELDS", "SERVICE_FIELDS",
    "Change", "StalePlan", "TableChanges",
    "apply_cluster", "create_balancer", "create_balancer_to_enrol", "create_cluster", "create_real_server",
    "create_service",
    "delete_balancer", "delete_cluster", "delete_real_server", "delete_service", "preview_table",
    "enrol_with_token", "issue_enrolment_token", "revoke_balancer_key", "rotate_balancer_key", "set_balancer_key",
    "take_back",
    "replace_table", "replace_table_reviewed", "set_real_server_state", "snapshot", "update_balancer",
    "update_cluster", "update_real_server", "update_service",
]
