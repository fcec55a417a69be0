"""What the agent tells the control side about its host (kernel, IPVS, schedulers, itself) and its counters."""

from __future__ import annotations

import os
import platform
import re
import socket
from dataclasses import asdict, fields
from pathlib import Path

from lvsadmin.ipvs.model import SCHEDULERS, Stats

from .planning import dest_text

PROC_IP_VS = Path("/proc/net/ip_vs")
SYS_MODULE = Path("/sys/module")
AGENT_VERSION = "1"
_VERSION_LINE = re.compile(r"IP Virtual Server version (\d+\.\d+\.\d+) \(size=(\d+)\)")


def ipvs_version_from_proc(path: Path = PROC_IP_VS) -> tuple[str, int] | None:
    """(version, connection table size) from the first line of /proc/net/ip_vs."""
    try:
        with path.open() as f:
            first = f.readline()
    except OSError:
        return None
    match = _VERSION_LINE.search(first)
    return (match.group(1), int(match.group(2))) if match else None


def schedulers_loaded(sys_module: Path = SYS_MODULE) -> list[str]:
    """Schedulers whose module is loaded (or built in: /sys/module lists those too)."""
    return [s for s in SCHEDULERS if (sys_module / f"ip_vs_{s}").exists()]


def schedulers_installed(release: str | None = None) -> list[str]:
    """Schedulers the kernel can load on demand: ip_vs_<name>.ko* under /lib/modules/<release>."""
    release = release or os.uname().release
    base = Path("/lib/modules") / release / "kernel" / "net" / "netfilter" / "ipvs"
    try:
        names = {p.name.split(".ko")[0] for p in base.iterdir()}
    except OSError:
        return []
    return [s for s in SCHEDULERS if f"ip_vs_{s}" in names]


def kernel_facts(info=None) -> dict:
    """Facts for the heartbeat. `info` is the backend's ipvs.model.Info when it has one."""
    uname = os.uname()
    facts: dict = {
        "hostname": socket.gethostname(),
        "kernel_release": uname.release,
        "kernel_version": uname.version,
        "machine": uname.machine,
        "python": platform.python_version(),
        "agent_version": AGENT_VERSION,
        "pid": os.getpid(),
    }
    if info is not None:
        facts["ipvs_version"], facts["conn_tab_size"] = info.version, info.conn_tab_size
    else:
        proc = ipvs_version_from_proc()
        if proc:
            facts["ipvs_version"], facts["conn_tab_size"] = proc
    loaded = schedulers_loaded()
    installed = schedulers_installed(uname.release)
    facts["schedulers_loaded"] = loaded
    facts["schedulers"] = [s for s in SCHEDULERS if s in set(loaded) | set(installed)]
    return facts


def _stats(stats: Stats | None) -> dict:
    return asdict(stats) if stats is not None else {f.name: 0 for f in fields(Stats)}


def service_sample(svc) -> dict:
    """One service's counters as the control side keeps them (ServiceSample.data)."""
    dests = {}
    for d in svc.destinations:
        dests[dest_text(d)] = {"active_conns": d.active_conns, "inactive_conns": d.inactive_conns,
                                        "persistent_conns": d.persistent_conns, "weight": d.weight,
                                        **_stats(d.stats)}
    return {
        **_stats(svc.stats),
        "active_conns": sum(d.active_conns for d in svc.destinations),
        "inactive_conns": sum(d.inactive_conns for d in svc.destinations),
        "persistent_conns": sum(d.persistent_conns for d in svc.destinations),
        "dests": dests,
    }
