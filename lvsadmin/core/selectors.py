"""Reads: the desired state as a plain ipvs.Table, the snapshot an agent receives."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Q

from lvsadmin.health.spec import Policy, ServiceHealth, server_text
from lvsadmin.ipvs import model as ipvs
from lvsadmin.ipvs.codec import table_digest, table_to_dict

from .models import HEALTH_POLICY_FIELDS, Cluster, HealthCheck, RealServer, VirtualService


def desired_table(cluster: Cluster, *, include_disabled: bool = False) -> ipvs.Table:
    """The table the cluster's balancers should carry, in the order ipvsadm lists it.

    Two queries whatever the size; disabled real servers are not in the kernel table.
    """
    services = list(VirtualService.objects.filter(cluster=cluster).order_by("position", "id"))
    real_servers = RealServer.objects.filter(service__cluster=cluster).order_by("service_id", "position", "id")
    if not include_disabled:
        real_servers = real_servers.exclude(state=RealServer.State.DISABLED)
    by_service: dict[int, list[ipvs.Destination]] = defaultdict(list)
    for rs in real_servers:
        by_service[rs.service_id].append(rs.to_ipvs())
    return ipvs.Table(
        services=[svc.to_ipvs(by_service.get(svc.pk, [])) for svc in services],
        timeouts=ipvs.Timeouts(tcp=cluster.tcp_timeout, tcpfin=cluster.tcpfin_timeout, udp=cluster.udp_timeout),
    )


def snapshot(cluster: Cluster) -> dict:
    """What an agent receives for a reconcile: the desired table at the cluster's current revision."""
    table = table_to_dict(desired_table(cluster))
    return {
        "cluster": cluster.name,
        "revision": cluster.desired_revision,
        "revision_time": cluster.revision_changed_at.isoformat() if cluster.revision_changed_at else None,
        "lineage": cluster.lineage,
        "owns_whole_table": cluster.owns_whole_table,
        "drain_timeout": cluster.drain_timeout,
        "table": table,
        "digest": table_digest(table),
        "health": {key: health.to_dict() for key, health in health_definitions(cluster).items()},
    }


def health_definitions(cluster: Cluster) -> dict[str, ServiceHealth]:
    """{service key text: ServiceHealth} of the services with a check, an override or a policy of their own, in
    table order. Two queries whatever the size."""
    default = Policy()
    found: dict[int, tuple[VirtualService, dict]] = {}
    for row in (HealthCheck.objects.filter(service__cluster=cluster).select_related("service", "real_server")
                .order_by("service__position", "service_id", "real_server__position", "real_server_id")):
        _, parts = found.setdefault(row.service_id, (row.service, {"overrides": {}}))
        if row.real_server is None:
            parts["check"] = row.to_check()
        else:
            parts["overrides"][server_text(row.real_server.address, row.real_server.port)] = row.to_check()
    own_policy = ~Q(**{f"health_{name}": getattr(default, name) for name in HEALTH_POLICY_FIELDS})
    for svc in VirtualService.objects.filter(Q(cluster=cluster) & own_policy):
        found.setdefault(svc.pk, (svc, {"overrides": {}}))[1]["policy"] = svc.to_policy()
    ordered = sorted(found.values(), key=lambda item: (item[0].position, item[0].pk))
    return {svc.key_text: ServiceHealth(**parts) for svc, parts in ordered}
