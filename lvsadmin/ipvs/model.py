"""Plain data for an IPVS table: services, destinations (real servers), counters.

No Django here: the agent, the rule parser, the planner and the netlink backend all
speak these types. Field values mirror what the kernel stores, so that two tables
compare equal exactly when the kernel would hold the same thing.

Each object's vocabulary lives here once: its key (what identifies it in the kernel) and the key's text, the
settings the kernel stores for it (SERVICE_SETTINGS, DEST_SETTINGS), and its label, the ipvsadm-like name
every page and message shows (`TCP 10.0.0.1:80`, `UDP [2001:db8::1]:53`, `FWM 1`, `FWM 1 IPv6`;
a real server: `TCP 10.0.0.1:80 → 192.0.2.1:80`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

PROTOCOLS = ("tcp", "udp", "sctp")
FWMARK = "fwmark"
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos")
DEFAULT_SCHEDULER = "wlc"  # ipvsadm's default
DEFAULT_PERSISTENCE_TIMEOUT = 360  # `-p` with no value (ipvsadm: 6*60)
FORWARDS = ("masq", "route", "tunnel")
LOCAL = "local"  # reported by the kernel for a destination that is a local address
TUNNEL_TYPES = ("ipip", "gue", "gre")
TUNNEL_CSUM = ("nocsum", "csum", "remcsum")

# Scheduler flags: three generic bits, named by the schedulers that read them.
SCHED_FLAG_BITS = {"flag-1": 1, "flag-2": 2, "flag-3": 4}
SCHED_FLAG_NAMES = {
    "sh": {"sh-fallback": 1, "sh-port": 2},
    "mh": {"mh-fallback": 1, "mh-port": 2},
}

IPV4_HOST_MASK = 0xFFFFFFFF
IPV6_HOST_PREFIX = 128

# What the kernel stores for a service besides its identity (plan.service_config compares them normalised).
SERVICE_SETTINGS = ("scheduler", "persistent", "timeout", "netmask", "pe_name", "one_packet", "sched_flags")
# What the kernel stores for a real server besides its identity.
DEST_SETTINGS = ("forward", "weight", "upper_threshold", "lower_threshold", "tun_type", "tun_port", "tun_csum")


def service_key_of(protocol: str, address: str, port: int, fwmark: int, family: int) -> tuple:
    """A service's identity in the kernel: (protocol, address, port), or (FWMARK, family, mark)."""
    if protocol == FWMARK:
        return (FWMARK, family, fwmark)
    return (protocol, address, port)


def key_text(key: tuple) -> str:
    """A key as a short string, e.g. `tcp|10.0.0.1|80`: how reports, samples and drains name a service."""
    return "|".join(str(part) for part in key)


def hostport(address: str, port: int) -> str:
    """ADDRESS:PORT as ipvsadm spells it, an IPv6 address in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def service_label(protocol: str, address: str, port: int, fwmark: int, family: int) -> str:
    """A service as pages and messages name it, the way `ipvsadm -L` lists it: `TCP 10.0.0.1:80`, `FWM 1 IPv6`."""
    if protocol == FWMARK:
        return f"FWM {fwmark}" + (" IPv6" if family == 6 else "")
    return f"{protocol.upper()} {hostport(address, port)}"


def dest_label(service_text: str, address: str, port: int) -> str:
    """A real server as pages name it: its service's label, an arrow, ADDRESS:PORT."""
    return f"{service_text} → {hostport(address, port)}"


def normalise_address(address: str) -> str:
    """The canonical spelling of an IP address (what ipvsadm -n prints)."""
    ip = ipaddress.ip_address(address.strip("[]"))
    if ip.version == 6 and ip.ipv4_mapped is not None:
        # inet_ntop spells mapped addresses with a dotted tail.
        return f"::ffff:{ip.ipv4_mapped}"
    return ip.compressed


def address_family(address: str) -> int:
    return ipaddress.ip_address(address).version


@dataclass(slots=True)
class Stats:
    """Counters as the kernel reports them (64-bit totals and estimated rates)."""

    conns: int = 0
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0
    cps: int = 0
    inpps: int = 0
    outpps: int = 0
    inbps: int = 0
    outbps: int = 0


@dataclass(slots=True)
class Destination:
    address: str
    port: int
    forward: str = "route"  # ipvsadm's default is gatewaying (DR)
    weight: int = 1
    upper_threshold: int = 0
    lower_threshold: int = 0
    tun_type: str = "ipip"
    tun_port: int = 0
    tun_csum: str = "nocsum"
    # Live data, not configuration: never part of equality.
    active_conns: int = field(default=0, compare=False)
    inactive_conns: int = field(default=0, compare=False)
    persistent_conns: int = field(default=0, compare=False)
    stats: Stats | None = field(default=None, compare=False)

    @property
    def family(self) -> int:
        return address_family(self.address)

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.port)

    @property
    def hostport(self) -> str:
        return hostport(self.address, self.port)

    def config(self) -> tuple:
        """The fields the kernel stores, as one comparable value (tunnel fields only when tunnelling)."""
        tunnel = None
        if self.forward == "tunnel":
            tunnel = (self.tun_type, self.tun_port if self.tun_type == "gue" else 0, self.tun_csum)
        return (self.forward, self.weight, self.upper_threshold, self.lower_threshold, tunnel)


@dataclass(slots=True)
class Service:
    protocol: str  # tcp | udp | sctp | fwmark
    address: str = ""  # empty for fwmark services
    port: int = 0
    fwmark: int = 0
    fwmark_family: int = 4  # only for fwmark services: `-6` makes it IPv6
    scheduler: str = DEFAULT_SCHEDULER
    persistent: bool = False
    timeout: int = 0  # persistence timeout in seconds, when persistent
    netmask: int = IPV4_HOST_MASK  # IPv4: the 32-bit mask; IPv6: the prefix length
    pe_name: str = ""
    one_packet: bool = False
    sched_flags: int = 0  # bits of SCHED_FLAG_BITS
    destinations: list[Destination] = field(default_factory=list)
    stats: Stats | None = field(default=None, compare=False)

    @property
    def family(self) -> int:
        if self.protocol == FWMARK:
            return self.fwmark_family
        return address_family(self.address)

    @property
    def key(self) -> tuple:
        """Identity of the service in the kernel."""
        return service_key_of(self.protocol, self.address, self.port, self.fwmark, self.fwmark_family)

    @property
    def label(self) -> str:
        return service_label(self.protocol, self.address, self.port, self.fwmark, self.fwmark_family)

    def dest_label(self, dest: Destination) -> str:
        return dest_label(self.label, dest.address, dest.port)

    def destination(self, address: str, port: int) -> Destination | None:
        for dest in self.destinations:
            if dest.address == address and dest.port == port:
                return dest
        return None


def host_netmask(family: int) -> int:
    return IPV4_HOST_MASK if family == 4 else IPV6_HOST_PREFIX


@dataclass(slots=True)
class Timeouts:
    tcp: int = 900
    tcpfin: int = 120
    udp: int = 300


@dataclass(slots=True)
class SyncDaemon:
    state: str  # master | backup
    mcast_ifn: str
    syncid: int = 0
    sync_maxlen: int = 0
    mcast_group: str = ""
    mcast_port: int = 0
    mcast_ttl: int = 0


@dataclass(slots=True)
class Info:
    version: str = "1.2.1"
    conn_tab_size: int = 4096


@dataclass(slots=True)
class Table:
    """A whole IPVS table, services in the order they are listed."""

    services: list[Service] = field(default_factory=list)
    timeouts: Timeouts | None = None
    daemons: list[SyncDaemon] = field(default_factory=list)
    info: Info | None = None

    def by_key(self) -> dict[tuple, Service]:
        return {svc.key: svc for svc in self.services}
