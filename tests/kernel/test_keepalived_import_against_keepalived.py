"""The keepalived.conf import against Debian's keepalived, in the IPVS VM: the table keepalived builds from a
file is the table lvsadmin imports from it.

Each file runs in a network namespace of its own (IPVS tables are per namespace), as keepalived's checker alone
(`--check`, no VRRP), and the test reads the table it built with `ipvsadm -Sn`. The real servers do not exist:
the namespace has only `lo`, so every probe fails at once (no route). Two ways make that a meaningful comparison:

- `steady`: long `delay_loop` (keepalived spreads the first probe over it: `warmup`), `alpha` off and
  `delay_before_retry 60`: every server stays in at its configured weight for the whole run, which is the table
  the importer builds (exactly: `ipvsadm -Sn` against lvsadmin's `-S` formatter, line for line);
- `failing`: `warmup 0`, `retry 0`: every checked server fails its first probe. keepalived's table then is the
  imported table with every checked server down, under the imported policy — so the expectation is lvsadmin's
  own overlay (lvsadmin.health.overlay.effective_table) with every checked server DOWN: inhibit_on_failure →
  weight 0, no inhibit → out of the table, quorum lost → the sorry server in. This proves the policy mapping
  (on_failure, quorum, hysteresis, sorry server and its forwarding), not just the table.

The guest side is this file run with `--guest`: it gets {name: [conf, expected -Sn]} on stdin, starts every
keepalived at once, polls each namespace's table until it is the expected one (or 20 s pass) and prints one
RESULT line with what each table last was and keepalived's log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from lvsadmin.health.keepalived import parse_keepalived
from lvsadmin.health.overlay import effective_table
from lvsadmin.health.spec import Check, Policy, ServiceHealth, server_text
from lvsadmin.health.state import ServerState
from lvsadmin.ipvs.rules import format_save

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WAIT = 20.0  # seconds a table may take to be built (keepalived needs well under one; the guest is slow)

pytestmark = pytest.mark.kernel

# A web farm as keepalived.conf(5) and its sample files write one: HTTP with a TCP-checked odd server, NAT with
# persistence per /24, sh with its flags over DR, a fwmark service, IPv6 with a /64 persistence granularity, UDP
# with one-packet scheduling and no checker, written without `protocol` (keepalived's default is UDP).
STEADY = """\
! Configuration File for keepalived
global_defs {
    router_id LB_STEADY
}

virtual_server 10.210.0.1 80 {
    delay_loop 3600
    lb_algo wrr
    lb_kind NAT
    persistence_timeout 300
    persistence_granularity 255.255.255.0
    protocol TCP
    retry 2
    delay_before_retry 60

    real_server 10.211.0.11 8080 {
        weight 3
        HTTP_GET {
            url {
                path /healthz
                status_code 200 301-302
            }
            connect_timeout 4
        }
    }
    real_server 10.211.0.12 8080 {
        weight 2
        HTTP_GET {
            url {
                path /healthz
                status_code 200 301-302
            }
            connect_timeout 4
        }
    }
    real_server 10.211.0.13 8080 {
        TCP_CHECK {
            connect_port 8081
            connect_timeout 2
        }
    }
}

virtual_server 10.210.0.1 443 {
    delay_loop 3600
    lb_algo sh
    sh-port
    sh-fallback
    lb_kind DR
    protocol TCP
    real_server 10.210.0.21 443 {
        weight 10
        TCP_CHECK {
            connect_timeout 3
            retry 4
            delay_before_retry 60
        }
    }
    real_server 10.210.0.22 443 {
        weight 10
        TCP_CHECK {
            connect_timeout 3
            retry 4
            delay_before_retry 60
        }
    }
}

virtual_server fwmark 12 {
    delay_loop 3600
    lb_algo wlc
    lb_kind DR
    persistence_timeout
    real_server 10.210.0.31 {
        weight 5
        TCP_CHECK {
            connect_port 80
            delay_before_retry 60
        }
    }
    real_server 10.210.0.32 {
        weight 5
        TCP_CHECK {
            connect_port 80
            delay_before_retry 60
        }
    }
}

virtual_server 2001:db8:210::1 80 {
    delay_loop 3600
    lb_algo wlc
    lb_kind NAT
    persistence_timeout 120
    persistence_granularity 64
    protocol TCP
    delay_before_retry 60
    real_server 2001:db8:211::11 8080 {
        HTTP_GET {
            url {
                path /
            }
        }
    }
    real_server 2001:db8:211::12 8080 {
        weight 2
        HTTP_GET {
            url {
                path /
            }
        }
    }
}

virtual_server 10.210.0.53 53 {
    lb_algo rr
    lb_kind NAT
    ops
    real_server 10.211.0.53 53 {
    }
}
"""

# Checks that fail at once: a service that inhibits, with a quorum its servers lose and a sorry server, and one
# that removes failed servers and keeps the one it never checks.
FAILING = """\
virtual_server 10.220.0.1 80 {
    delay_loop 2
    warmup 0
    lb_algo wlc
    lb_kind DR
    protocol TCP
    quorum 3
    hysteresis 1
    sorry_server 10.220.0.99 80
    inhibit_on_failure
    real_server 10.220.0.11 80 {
        weight 2
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
    real_server 10.220.0.12 80 {
        weight 2
        HTTP_GET {
            url {
                path /ping
            }
            connect_timeout 1
            retry 0
        }
    }
}

virtual_server 10.220.0.1 25 {
    delay_loop 2
    warmup 0
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 10.221.0.11 2525 {
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
    real_server 10.221.0.12 2525 {
        weight 4
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
    real_server 10.221.0.13 2525 {
    }
}
"""


# --- host side ----------------------------------------------------------------------------------------


def all_checked_servers_down(text: str) -> str:
    """The -Sn of an imported file's table with every checked server down, under its imported policy."""
    result = parse_keepalived(text)
    overlay = effective_table(result.table, result.health,
                              lambda service, dest: ServerState(Check(), start_down=True, now=0.0), {}, 1.0)
    return format_save(overlay.table)


def test_keepalived_builds_the_table_lvsadmin_imports_from_the_same_file(ipvs_guest):
    expected = {"steady": format_save(parse_keepalived(STEADY).table), "failing": all_checked_servers_down(FAILING)}
    runs = {"steady": [STEADY, expected["steady"]], "failing": [FAILING, expected["failing"]]}
    out = ipvs_guest.run([sys.executable, os.path.relpath(__file__, REPO), "--guest"], cwd=REPO,
                         input=json.dumps(runs), timeout=300).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    assert line, out
    got = json.loads(line[len("RESULT "):])
    for name, want in expected.items():
        kernel, imported = got[name]["save"].splitlines(), want.splitlines()
        assert sorted(kernel) == sorted(imported), (
            f"{name}: only keepalived's {sorted(set(kernel) - set(imported))}, only lvsadmin's "
            f"{sorted(set(imported) - set(kernel))}\n--- keepalived's log ---\n{got[name]['log']}")
    # keepalived and the import agree on why the DNS service is UDP, and both say so.
    assert "Virtual server [10.210.0.53]:none:53: no protocol set - defaulting to UDP" in got["steady"]["log"]
    assert any("no protocol: UDP, keepalived's default" in w for w in parse_keepalived(STEADY).warnings)
    # What the comparison covers: flags, persistence masks, ops, fwmark, IPv6, inhibited, removed, the sorry server.
    assert "-A -t 10.210.0.1:443 -s sh -b sh-fallback,sh-port" in expected["steady"]
    assert "-A -t 10.210.0.1:80 -s wrr -p 300 -M 255.255.255.0" in expected["steady"]
    assert "-A -t [2001:db8:210::1]:80 -s wlc -p 120 -M 64" in expected["steady"]
    assert "-A -u 10.210.0.53:53 -s rr -o" in expected["steady"]
    assert "-A -f 12 -s wlc -p 360" in expected["steady"]  # persistence_timeout alone: 6 minutes
    assert "-a -f 12 -r 10.210.0.31:0 -g -w 5" in expected["steady"]
    assert expected["failing"].splitlines() == [
        "-A -t 10.220.0.1:25 -s rr", "-a -t 10.220.0.1:25 -r 10.221.0.13:2525 -m -w 1",
        "-A -t 10.220.0.1:80 -s wlc", "-a -t 10.220.0.1:80 -r 10.220.0.11:80 -g -w 0",
        "-a -t 10.220.0.1:80 -r 10.220.0.12:80 -g -w 0", "-a -t 10.220.0.1:80 -r 10.220.0.99:80 -g -w 1"]


def test_the_imported_checks_say_what_the_keepalived_conf_says():
    health = parse_keepalived(STEADY).health
    # retry 2 on the service: down after 3 failures; connect_timeout of the checker; back after one success
    http = Check(kind="http", path="/healthz", expect="200,301-302", interval=3600, timeout=4, fall=3, rise=1)
    assert health["tcp|10.210.0.1|80"] == ServiceHealth(
        check=http, policy=Policy(on_failure="remove"),
        overrides={server_text("10.211.0.13", 8080): Check(kind="tcp", port=8081, interval=3600, timeout=2,
                                                           fall=3, rise=1)})
    assert health["tcp|10.210.0.1|443"] == ServiceHealth(
        check=Check(kind="tcp", interval=3600, timeout=3, fall=5, rise=1), policy=Policy(on_failure="remove"))
    # a fwmark service's servers have no port: the check names it; keepalived's defaults (timeout 5, retry 1)
    assert health["fwmark|4|12"].check == Check(kind="tcp", port=80, interval=3600, timeout=5, fall=2, rise=1)
    assert health["tcp|2001:db8:210::1|80"].check == Check(kind="http", path="/", expect="200-299",
                                                           interval=3600, timeout=5, fall=2, rise=1)
    assert "udp|10.210.0.53|53" not in health  # no checker, default policy

    health = parse_keepalived(FAILING).health
    assert health["tcp|10.220.0.1|80"] == ServiceHealth(
        check=Check(kind="tcp", interval=2, timeout=1, fall=1, rise=1),
        policy=Policy(on_failure="inhibit", quorum=3, hysteresis=1, sorry_server="10.220.0.99:80",
                      sorry_forward="route"),
        overrides={server_text("10.220.0.12", 80): Check(kind="http", path="/ping", expect="200-299", interval=2,
                                                         timeout=1, fall=1, rise=1)})
    assert health["tcp|10.220.0.1|25"] == ServiceHealth(
        check=Check(kind="tcp", interval=2, timeout=1, fall=1, rise=1), policy=Policy(on_failure="remove"),
        overrides={server_text("10.221.0.13", 2525): None})


# --- guest side ----------------------------------------------------------------------------------------


def table(namespace: str) -> str:
    return subprocess.run(["ip", "netns", "exec", namespace, "ipvsadm", "-Sn"], capture_output=True,
                          text=True).stdout


def guest_scenario(runs: dict) -> dict:
    started = {}
    result = {name: {"save": "", "log": ""} for name in runs}
    try:
        for i, (name, (conf, _)) in enumerate(runs.items(), start=1):
            namespace, base = f"lvka{i}", f"/tmp/lvsadmin-ka{i}"
            subprocess.run(["ip", "netns", "add", namespace], check=True)
            subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)
            with open(f"{base}.conf", "w") as f:
                f.write(conf)
            log = open(f"{base}.log", "w+")
            process = subprocess.Popen(
                ["ip", "netns", "exec", namespace, "keepalived", "--dont-fork", "--log-console", "--check",
                 "-f", f"{base}.conf", "-p", f"{base}.pid", "-c", f"{base}-check.pid", "-r", f"{base}-vrrp.pid"],
                stdout=log, stderr=subprocess.STDOUT)
            started[name] = (namespace, process, log)
        deadline = time.monotonic() + WAIT
        waiting = set(runs)
        while waiting and time.monotonic() < deadline:
            for name in list(waiting):
                result[name]["save"] = table(started[name][0])
                if sorted(result[name]["save"].splitlines()) == sorted(runs[name][1].splitlines()):
                    waiting.discard(name)
            time.sleep(0.2)
    finally:
        for name, (namespace, process, log) in started.items():
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
            log.seek(0)
            result[name]["log"] = log.read()[-8000:]
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
    return result


if __name__ == "__main__" and "--guest" in sys.argv:
    print("RESULT " + json.dumps(guest_scenario(json.load(sys.stdin))), flush=True)
