"""What the agent tells the control side about its host: kernel, IPVS, schedulers, itself."""

from __future__ import annotations

import os
import platform
import re
import socket
from pathlib import Path

from lvsadmin.ipvs.model import SCHEDULERS

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
