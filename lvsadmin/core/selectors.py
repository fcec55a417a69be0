"""Reads: the desired state as a plain ipvs.Table, the snapshot an agent receives."""

from __future__ import annotations

from collections import defaultdict

from lvsadmin.ipvs import model as ipvs
from lvsadmin.ipvs.codec import table_digest, table_to_dict

from .models import Cluster, RealServer, VirtualService


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
        "lineage": cluster.lineage,
        "owns_whole_table": cluster.owns_whole_table,
        "drain_timeout": cluster.drain_timeout,
        "table": table,
        "digest": table_digest(table),
    }
