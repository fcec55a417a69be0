"""The API's representations. Serializers only parse and type the input (bounds with the kernel's limits and
their messages); the service layer validates with the kernel's rules and writes, exactly as for the forms."""

from __future__ import annotations

from rest_framework import serializers

from lvsadmin.core import versions
from lvsadmin.core.models import PROTOCOL_CHOICES, Balancer, Cluster, RealServer, VirtualService
from lvsadmin.ipvs import model as ipvs
from lvsadmin.ipvs import validate


def bounded(limit: validate.Limit, low: int | None = None, **kwargs) -> serializers.IntegerField:
    """An integer bounded by a kernel limit, refused past it with the limit's message ("weight must be 0..65535");
    `low` replaces the lower bound where 0 means "none" or "the default", as on the forms."""
    low = limit.low if low is None else low
    message = limit.message if low == limit.low else f"{limit.what} must be {low}..{limit.high}"
    return serializers.IntegerField(min_value=low, max_value=limit.high, required=False,
                                    error_messages={"min_value": message, "max_value": message,
                                                    "invalid": f"{limit.what}: a whole number"}, **kwargs)


class Versioned(serializers.Serializer):
    version = serializers.SerializerMethodField(
        help_text="The object's version, as its ETag: send it in If-Match to change or delete it.")

    def get_version(self, obj) -> str:
        return versions.version_of(obj)


MAX_SECONDS = 2**31 - 1


class ClusterSerializer(Versioned):
    """Read and write: the writable fields are the cluster form's (services.CLUSTER_FIELDS)."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=64, required=False, help_text="A slug; required to create.")
    description = serializers.CharField(allow_blank=True, required=False)
    tcp_timeout = bounded(validate.CLUSTER_TIMEOUTS["tcp"], help_text="seconds; ipvsadm --set tcp")
    tcpfin_timeout = bounded(validate.CLUSTER_TIMEOUTS["tcpfin"], help_text="seconds; ipvsadm --set tcpfin")
    udp_timeout = bounded(validate.CLUSTER_TIMEOUTS["udp"], help_text="seconds; ipvsadm --set udp")
    owns_whole_table = serializers.BooleanField(required=False)
    auto_apply = serializers.BooleanField(required=False)
    drain_timeout = serializers.IntegerField(min_value=0, max_value=MAX_SECONDS, required=False,
                                             help_text="Seconds a removed TCP real server drains.")
    desired_revision = serializers.IntegerField(read_only=True)
    requested_revision = serializers.IntegerField(read_only=True)
    services = serializers.IntegerField(read_only=True, source="service_count", help_text="How many services.")
    balancers = serializers.IntegerField(read_only=True, source="balancer_count", help_text="How many balancers.")


class CountersSerializer(serializers.Serializer):
    active = serializers.IntegerField()
    inactive = serializers.IntegerField()
    cps = serializers.IntegerField(help_text="connections per second")
    inbps = serializers.IntegerField(help_text="bytes per second in")
    outbps = serializers.IntegerField(help_text="bytes per second out")
    sampled_at = serializers.DateTimeField(allow_null=True)
    stale = serializers.BooleanField(help_text="sampled before the balancer went offline")


class BalancerSerializer(Versioned):
    """Read and write: the writable fields are the balancer form's (its cluster, services.BALANCER_FIELDS)."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=64, required=False, help_text="A slug; required to create.")
    cluster = serializers.SlugRelatedField(slug_field="name", queryset=Cluster.objects.all(), required=False,
                                           help_text="The cluster's name; required to create. Changing it moves "
                                                     "the balancer (a new table to converge to).")
    address = serializers.CharField(max_length=255, allow_blank=True, required=False,
                                    help_text="Management address, for reference.")
    description = serializers.CharField(allow_blank=True, required=False)
    status = serializers.ChoiceField(read_only=True, source="effective_status", choices=Balancer.Status.values,
                                     help_text="As the panel shows it: offline wins, then error and drift as "
                                               "reported, then pending until the desired revision is applied.")
    status_detail = serializers.CharField(read_only=True)
    applied_revision = serializers.IntegerField(read_only=True)
    desired_revision = serializers.IntegerField(read_only=True, source="cluster.desired_revision")
    last_seen = serializers.DateTimeField(read_only=True, allow_null=True)
    facts = serializers.JSONField(read_only=True, help_text="Kernel and agent facts from the last heartbeat.")
    sync_role = serializers.ChoiceField(choices=Balancer.SyncRole.values, required=False)
    sync_interface = serializers.CharField(max_length=15, allow_blank=True, required=False,
                                           help_text="Multicast interface, e.g. eth1.")
    sync_id = bounded(validate.SYNC_ID, help_text="0 accepts every sync id (backup).")
    key_fingerprint = serializers.CharField(read_only=True)
    key_revoked = serializers.BooleanField(read_only=True)
    counters = CountersSerializer(read_only=True, help_text="The latest counters, summed over its services.")


class NewBalancerSerializer(BalancerSerializer):
    """A balancer just created: with its one-time enrolment token, shown this once."""

    enrolment_token = serializers.CharField(read_only=True, help_text=(
        "For its agent's enrolment (LVSADMIN_ENROL_TOKEN of scripts/run-agent), valid 24 hours; shown once."))


class EnrolmentTokenSerializer(serializers.Serializer):
    balancer = serializers.CharField()
    enrolment_token = serializers.CharField(help_text="Shown once; the previous one no longer works.")
    expires = serializers.DateTimeField()


class BalancerKeySerializer(serializers.Serializer):
    public_key = serializers.CharField(max_length=100, help_text="The agent's public key (ed25519:…).")


SCHED_FLAGS_MESSAGE = "scheduler flags: the sum of bits 1, 2 and 4 (0..7)"


class ServiceSerializer(Versioned):
    id = serializers.IntegerField(read_only=True)
    cluster = serializers.SlugRelatedField(slug_field="name", queryset=Cluster.objects.all(), required=False,
                                           help_text="The cluster's name; required to create, fixed afterwards.")
    label = serializers.CharField(read_only=True, help_text="As ipvsadm names it: TCP 10.0.0.1:80, FWM 7 …")
    protocol = serializers.ChoiceField(choices=[p for p, _ in PROTOCOL_CHOICES], required=False)
    family = serializers.ChoiceField(choices=[4, 6], required=False,
                                     help_text="For a firewall-mark service; an address sets its own family.")
    address = serializers.CharField(max_length=45, allow_blank=True, required=False,
                                    help_text="The virtual IP; empty for a firewall mark.")
    port = bounded(validate.PORT, help_text="0 = all ports (persistent services only)")
    fwmark = bounded(validate.FWMARK_LIMIT, low=0, help_text="The firewall mark (protocol fwmark).")
    scheduler = serializers.ChoiceField(choices=list(ipvs.SCHEDULERS), required=False)
    persistent = serializers.BooleanField(required=False)
    timeout = bounded(validate.PERSISTENCE_TIMEOUT, low=0,
                      help_text="Persistence timeout in seconds (0: 360 when persistent).")
    netmask = serializers.CharField(max_length=15, allow_blank=True, required=False,
                                    help_text="Persistence granularity: a dotted mask (IPv4) or a prefix (IPv6).")
    pe_name = serializers.ChoiceField(choices=["", "sip"], required=False, help_text="Persistence engine.")
    one_packet = serializers.BooleanField(required=False, help_text="UDP or firewall mark only.")
    sched_flags = serializers.IntegerField(
        min_value=0, max_value=7, required=False,
        error_messages={"min_value": SCHED_FLAGS_MESSAGE, "max_value": SCHED_FLAGS_MESSAGE},
        help_text="Bits: 1 flag-1 (sh-fallback/mh-fallback), 2 flag-2 (sh-port/mh-port), 4 flag-3; sh and mh only.")
    name = serializers.CharField(max_length=128, allow_blank=True, required=False)
    description = serializers.CharField(allow_blank=True, required=False)


class RealServerSerializer(Versioned):
    id = serializers.IntegerField(read_only=True)
    service = serializers.PrimaryKeyRelatedField(queryset=VirtualService.objects.all(), required=False,
                                                 help_text="The virtual service's id; required to create.")
    cluster = serializers.CharField(read_only=True, source="service.cluster.name")
    address = serializers.CharField(max_length=45, required=False)
    port = bounded(validate.PORT, help_text="0 or left out: the service's port")
    forward = serializers.ChoiceField(choices=list(ipvs.FORWARDS), required=False,
                                      help_text="masq (NAT), route (direct routing), tunnel")
    weight = bounded(validate.WEIGHT)
    upper_threshold = bounded(validate.UPPER_THRESHOLD, help_text="0: no limit")
    lower_threshold = bounded(validate.LOWER_THRESHOLD)
    tun_type = serializers.ChoiceField(choices=list(ipvs.TUNNEL_TYPES), required=False)
    tun_port = bounded(validate.TUNNEL_PORT, low=0, help_text="gue only; 0: none")
    tun_csum = serializers.ChoiceField(choices=list(ipvs.TUNNEL_CSUM), required=False)
    state = serializers.ChoiceField(choices=RealServer.State.values, required=False,
                                    help_text="active; draining (weight 0, connections kept); disabled (not in the "
                                              "kernel)")
    name = serializers.CharField(max_length=128, allow_blank=True, required=False)


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details (application/problem+json)."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False,
                                   help_text="Validation problems: the messages of each field.")
    current = serializers.DictField(required=False, help_text="A stale write: the object as it is now.")
    version = serializers.CharField(required=False, help_text="A stale write: the current version.")
    changes = serializers.ListField(child=serializers.DictField(), required=False, allow_null=True,
                                    help_text="A stale write: what changed since your version, when known.")


class ApiTokenSerializer(serializers.Serializer):
    """An API token as its pages show it: never its secret."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    user = serializers.CharField(source="user.username")
    prefix = serializers.CharField(help_text="Enough to recognise it, nothing to use.")
    scopes = serializers.ListField(child=serializers.CharField())
    allowed_networks = serializers.ListField(child=serializers.CharField(), help_text="Empty: any address.")
    expires = serializers.DateTimeField(allow_null=True)
    created = serializers.DateTimeField()
    revoked = serializers.DateTimeField(allow_null=True)
    last_used = serializers.DateTimeField(allow_null=True)
    last_used_from = serializers.CharField()
    active = serializers.BooleanField(help_text="Neither revoked nor expired.")
