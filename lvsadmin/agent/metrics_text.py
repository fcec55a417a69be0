"""The per-object metric families of an agent's /metrics, written by hand: node_exporter's `node_ipvs_*` and
lvsadmin's per-service and per-real-server traffic counters.

A table of 1,000 services x 10 real servers is some 85,000 samples; prometheus-client's generate_latest builds a
Sample tuple, sorts a dict of labels and escapes every value of each one at every scrape, which costs several times
node_exporter's whole scrape of the same kernel. Here the label block of each object is escaped once and kept while
the object stays in the table, and a scrape only writes the values. `library_families` builds the same families
through prometheus-client: tests/unit/test_agent_metrics.py proves the two byte-identical on the same data, so the
hand writer cannot drift from the library's exposition format.

node_exporter's ipvs collector (collector/ipvs_linux.go, with procfs's parser of /proc/net/ip_vs) defines what the
`node_ipvs_*` families hold, so that dashboards and alerts written for it keep working:
  * the five totals are the kernel's global counters (/proc/net/ip_vs_stats: IPVS_CMD_GET_INFO carries no stats,
    and they are not the sum of today's services: they keep what deleted services counted);
  * per real server: active and inactive connections and weight, labelled local_address / local_port (the
    virtual service; "" and "0" for a firewall-mark service), remote_address / remote_port, proto ("TCP", "UDP",
    "FWM") and local_mark (a firewall mark as the kernel prints it there: 8 upper-case hex digits; else "");
    addresses as Go's net.IP prints them (an IPv4-mapped IPv6 address as its dotted IPv4 tail); real servers
    with the same labels are summed, as node_exporter sums them.
One difference, on purpose: node_exporter 1.5's parser knows no SCTP service, and gives its real servers the labels
of whichever service /proc/net/ip_vs listed before it (or empty ones: seen in the IPVS VM); here they carry their
own service's labels, proto "SCTP".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.utils import floatToGoString

from lvsadmin.ipvs.model import FWMARK, Table, hostport

# (name without _total, HELP, the /proc/net/ip_vs_stats column): node_exporter's words, kept as they are.
NODE_TOTALS = (
    ("node_ipvs_connections", "The total number of connections made."),
    ("node_ipvs_incoming_packets", "The total number of incoming packets."),
    ("node_ipvs_outgoing_packets", "The total number of outgoing packets."),
    ("node_ipvs_incoming_bytes", "The total amount of incoming data."),
    ("node_ipvs_outgoing_bytes", "The total amount of outgoing data."),
)
# (name, HELP, the Destination attribute).
NODE_BACKEND = (
    ("node_ipvs_backend_connections_active", "The current active connections by local and remote address.",
     "active_conns"),
    ("node_ipvs_backend_connections_inactive", "The current inactive connections by local and remote address.",
     "inactive_conns"),
    ("node_ipvs_backend_weight", "The current backend weight by local and remote address.", "weight"),
)
# (what is counted, the Stats attribute): lvsadmin_service_<what>_total and lvsadmin_real_server_<what>_total.
TRAFFIC = (
    ("connections", "connections", "conns"),
    ("incoming_packets", "incoming packets", "inpkts"),
    ("outgoing_packets", "outgoing packets", "outpkts"),
    ("incoming_bytes", "incoming bytes", "inbytes"),
    ("outgoing_bytes", "outgoing bytes", "outbytes"),
)
SERVICE_TRAFFIC = tuple((f"lvsadmin_service_{what}", f"The {text} of a virtual service (the kernel's 64-bit "
                         "counter, reset when the service is re-created).", attr) for what, text, attr in TRAFFIC)
SERVER_TRAFFIC = tuple((f"lvsadmin_real_server_{what}", f"The {text} of a real server of a virtual service (the "
                        "kernel's 64-bit counter, reset when the real server is re-created).", attr)
                       for what, text, attr in TRAFFIC)

BACKEND_LABELS = ("local_address", "local_port", "remote_address", "remote_port", "proto", "local_mark")


def go_ip(address: str) -> str:
    """An address as Go's net.IP.String() prints it (node_exporter's label values)."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return ip.compressed


def escape(value: str) -> str:
    """A label value as the text format escapes it (prometheus-client's rule)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def value_text(v) -> str:
    """A sample value as prometheus-client's floatToGoString writes it (Go's float formatting), without a float
    for the integers a float holds exactly: `12.0`, and from a million on `1.234567e+06`."""
    if type(v) is int and 0 <= v < 9_007_199_254_740_992:  # 2**53
        if v < 1_000_000:
            return f"{v}.0"
        digits = str(v)
        mantissa = digits[1:].rstrip("0")
        return f"{digits[0]}.{mantissa}e+{len(digits) - 1:02d}" if mantissa else f"{digits[0]}e+{len(digits) - 1:02d}"
    return floatToGoString(v)


def _labels(pairs: dict) -> str:
    """A label block as prometheus-client writes it: names sorted, values escaped."""
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in sorted(pairs.items())) + "}"


def backend_labels(svc, dest) -> dict:
    """node_exporter's labels of one real server of one service."""
    fwm = svc.protocol == FWMARK
    return {
        "local_address": "" if fwm else go_ip(svc.address),
        "local_port": "0" if fwm else str(svc.port),
        "remote_address": go_ip(dest.address),
        "remote_port": str(dest.port),
        "proto": "FWM" if fwm else svc.protocol.upper(),
        "local_mark": f"{svc.fwmark:08X}" if fwm else "",
    }


def _header(name: str, help_text: str, kind: str) -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"


def _stat(stats, attr: str) -> int:
    return getattr(stats, attr) if stats is not None else 0


class Writer:
    """Writes the per-object families of a table; keeps each object's label blocks while it stays in the table."""

    def __init__(self):
        self._service_labels: dict = {}
        self._dest_labels: dict = {}

    def _blocks(self, table: Table) -> tuple[list, dict]:
        """[(service, its label block, [(dest, its lvsadmin block)])], {node_exporter block: [active, inact, w]}."""
        old_s, old_d = self._service_labels, self._dest_labels
        new_s, new_d = {}, {}
        services, backends = [], {}
        for svc in table.services:
            skey = svc.key
            sblock = old_s.get(skey)
            if sblock is None:
                sblock = _labels({"service": svc.label})
            new_s[skey] = sblock
            dests = []
            for dest in svc.destinations:
                dkey = (skey, dest.address, dest.port)
                blocks = old_d.get(dkey)
                if blocks is None:
                    blocks = (_labels(backend_labels(svc, dest)),
                              _labels({"service": svc.label, "server": hostport(dest.address, dest.port)}))
                new_d[dkey] = blocks
                dests.append((dest, blocks[1]))
                sums = backends.get(blocks[0])
                if sums is None:
                    backends[blocks[0]] = [dest.active_conns, dest.inactive_conns, dest.weight]
                else:  # node_exporter sums real servers with the same labels
                    sums[0] += dest.active_conns
                    sums[1] += dest.inactive_conns
                    sums[2] += dest.weight
            services.append((svc, sblock, dests))
        self._service_labels, self._dest_labels = new_s, new_d
        return services, backends

    def text(self, table: Table | None, totals: tuple | None) -> str:
        """The families' exposition (prometheus-client's text format): `totals`, the five global counters of
        /proc/net/ip_vs_stats (None: left out, as node_exporter leaves them out where the file is missing)."""
        out = []
        if totals is not None:
            for (name, help_text), value in zip(NODE_TOTALS, totals, strict=True):
                out.append(f"{_header(name + '_total', help_text, 'counter')}{name}_total {value_text(value)}\n")
        if table is None:
            return "".join(out)
        services, backends = self._blocks(table)
        vt = value_text
        for i, (name, help_text, _attr) in enumerate(NODE_BACKEND):
            out.append(_header(name, help_text, "gauge"))
            out.extend([f"{name}{block} {vt(sums[i])}\n" for block, sums in backends.items()])
        for name, help_text, attr in SERVICE_TRAFFIC:
            out.append(_header(name + "_total", help_text, "counter"))
            sample = name + "_total"
            out.extend([f"{sample}{block} {vt(_stat(svc.stats, attr))}\n" for svc, block, _d in services])
        for name, help_text, attr in SERVER_TRAFFIC:
            out.append(_header(name + "_total", help_text, "counter"))
            sample = name + "_total"
            out.extend([f"{sample}{block} {vt(_stat(dest.stats, attr))}\n"
                        for _s, _b, dests in services for dest, block in dests])
        return "".join(out)


def library_families(table: Table | None, totals: tuple | None) -> Iterable:
    """The same families as Writer.text, through prometheus-client (the reference the hand writer is held to)."""
    if totals is not None:
        for (name, help_text), value in zip(NODE_TOTALS, totals, strict=True):
            yield CounterMetricFamily(name, help_text, value=value)
    if table is None:
        return
    backends: dict = {}
    for svc in table.services:
        for dest in svc.destinations:
            labels = backend_labels(svc, dest)
            sums = backends.setdefault(tuple(labels.values()), [0, 0, 0])
            sums[0] += dest.active_conns
            sums[1] += dest.inactive_conns
            sums[2] += dest.weight
    for i, (name, help_text, _attr) in enumerate(NODE_BACKEND):
        family = GaugeMetricFamily(name, help_text, labels=BACKEND_LABELS)
        for values, sums in backends.items():
            family.add_metric(values, sums[i])
        yield family
    for name, help_text, attr in SERVICE_TRAFFIC:
        family = CounterMetricFamily(name, help_text, labels=("service",))
        for svc in table.services:
            family.add_metric((svc.label,), _stat(svc.stats, attr))
        yield family
    for name, help_text, attr in SERVER_TRAFFIC:
        family = CounterMetricFamily(name, help_text, labels=("service", "server"))
        for svc in table.services:
            for dest in svc.destinations:
                family.add_metric((svc.label, hostport(dest.address, dest.port)), _stat(dest.stats, attr))
        yield family


def read_totals(path: str = "/proc/net/ip_vs_stats") -> tuple | None:
    """The kernel's global IPVS counters (connections, packets in and out, bytes in and out), read where
    node_exporter reads them; None where the file is missing (no IPVS in this kernel)."""
    try:
        with open(path) as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return None
    fields = lines[2].split() if len(lines) > 2 else []
    if len(fields) != 5:
        raise ValueError(f"{path}: unexpected layout (line 3: {fields!r})")
    return tuple(int(field, 16) for field in fields)
