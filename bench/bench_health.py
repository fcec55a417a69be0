"""Benchmark the agent's health checker against Debian's keepalived, in the IPVS guest (issue 11's last proof).

    scripts/ipvs-vm run --timeout 1200 -- .venv/bin/python bench/bench_health.py [--servers 1000] [--interval 2]
    (make bench runs it with the defaults, in a guest with 2 vCPUs)

In one guest run, three network namespaces joined by veth pairs:

    ka   10.210.1.1 ──veth── 10.210.1.2 ┐
                                        srv: one asyncio process (bench/health_servers.py) answering HTTP on
    lva  10.210.2.1 ──veth── 10.210.2.2 ┘      ports 9000.. (SERVERS of them), pinned to the guest's last CPU

`ka` runs keepalived's checker alone (`keepalived --check`, no VRRP), `lva` the lvsadmin agent (Agent over the
netlink backend, in a process of its own); each converges its own IPVS table (IPVS is per namespace) of the same
SERVICES virtual services sharing the SERVERS real servers, all masqueraded, every real server checked with
HTTP GET /health expecting 200, the same timings:

    agent       Check(kind="http", interval=I, timeout=T, fall=F, rise=1), policy inhibit (weight 0)
    keepalived  delay_loop I, connect_timeout T, retry F-1, delay_before_retry I, inhibit_on_failure
                (keepalived.conf(5): `retry` is the number of *additional* checks of an alive server whose check
                failed, `delay_before_retry` the time between them; so F failures I apart take a server down,
                like the agent's fall = F at interval I; both bring it back after one success)

It measures:

  * `health-cpu/keepalived`: once both have checked every server for a while, the CPU seconds (utime + stime,
    /proc/PID/stat) of the whole agent process over those of keepalived's checker process in the same SECONDS
    (60) of checking. Target <= 1.5. Servers wrongly down at the end (a checker too slow to answer in time) are
    counted and printed: a checker that misses its own timeouts is not cheap, it is broken.
  * `health-detection/bound`: FAILURES (5) servers refused, one at a time, at random moments; for each, the time
    from the moment its listener closed to the moment the agent's kernel table shows weight 0 for it (both
    tables are polled every 50 ms from /proc/PID/net/ip_vs, which shows the namespace of PID: a read, no
    process started), over the bound I x F + T. The worst is printed; target <= 1.1. keepalived's figures are
    printed beside it, for information.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KA_NET, LVA_NET = "10.210.1", "10.210.2"
VIP, BASE_PORT = "10.209.0.1", 9000
POLL = 0.05
TMP = "/tmp/bench-health"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def sh(script: str) -> str:
    result = subprocess.run(["sh", "-ec", script], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{script}\n{result.stdout}{result.stderr}")
    return result.stdout


def build_network() -> None:
    script = ["ip netns add srv", "ip -n srv link set lo up"]
    for ns, net in (("ka", KA_NET), ("lva", LVA_NET)):
        script += [f"ip netns add {ns}", f"ip -n {ns} link set lo up",
                   f"ip link add {ns}0 netns {ns} type veth peer name {ns}1 netns srv",
                   f"ip -n {ns} addr add {net}.1/24 dev {ns}0", f"ip -n {ns} link set {ns}0 up",
                   f"ip -n srv addr add {net}.2/24 dev {ns}1", f"ip -n srv link set {ns}1 up"]
    sh("\n".join(script))


def layout(args) -> list[tuple[int, list[int]]]:
    """The virtual services (their ports on the VIP) and the real servers' ports of each."""
    per = -(-args.servers // args.services)
    ports = list(range(BASE_PORT, BASE_PORT + args.servers))
    return [(80 + i, ports[i * per:(i + 1) * per]) for i in range(args.services)]


def keepalived_conf(args) -> str:
    lines = ["global_defs {", "    router_id bench_health", "}"]
    for vport, ports in layout(args):
        lines += [f"virtual_server {VIP} {vport} {{", f"    delay_loop {args.interval:g}", "    lb_algo wrr",
                  "    lb_kind NAT", "    protocol TCP", "    inhibit_on_failure"]
        for port in ports:
            lines += [f"    real_server {KA_NET}.2 {port} {{", "        weight 1", "        HTTP_GET {",
                      "            url {", "                path /health", "                status_code 200",
                      "            }", f"            connect_timeout {args.timeout:g}",
                      f"            retry {args.fall - 1}", f"            delay_before_retry {args.interval:g}",
                      "        }", "    }"]
        lines.append("}")
    return "\n".join(lines) + "\n"


def agent_snapshot(args) -> dict:
    from lvsadmin.health.spec import Check, Policy, ServiceHealth
    from lvsadmin.ipvs import codec
    from lvsadmin.ipvs.model import Destination, Service, Table, Timeouts, key_text

    check = Check(kind="http", path="/health", expect="200", interval=args.interval, timeout=args.timeout,
                  fall=args.fall, rise=1)
    services = [Service("tcp", VIP, vport, scheduler="wrr",
                        destinations=[Destination(f"{LVA_NET}.2", port, forward="masq", weight=1) for port in ports])
                for vport, ports in layout(args)]
    table = codec.table_to_dict(Table(services=services, timeouts=Timeouts()))
    health = {key_text(s.key): ServiceHealth(check=check, policy=Policy()).to_dict() for s in services}
    return {"cluster": "bench", "revision": 1, "owns_whole_table": False, "drain_timeout": 60, "table": table,
            "digest": codec.table_digest(table), "health": health}


def run_agent(args) -> int:
    """The agent's process (in namespace lva): converge to the snapshot, then check until stdin closes."""
    from lvsadmin.agent.core import Agent
    from lvsadmin.agent.kernel import make_backend
    from lvsadmin.agent.state import StateStore

    os.environ.pop("LVSADMIN_AGENT_BACKEND", None)  # the real kernel, over netlink
    state = f"{TMP}/agent-state.json"
    if os.path.exists(state):
        os.unlink(state)
    agent = Agent("bench", make_backend, StateStore(state), lambda *a, **k: None)
    report = agent.reconcile(agent_snapshot(args))
    print(f"ready {report['outcome']} {len(report['operations'])} operations", flush=True)
    sampler = Sampler() if args.profile else None
    sys.stdin.read()  # the bench closes our stdin when it is done
    if sampler is not None:
        sampler.report()
    agent.health.stop()
    return 0


class Sampler:
    """For --profile: where the agent's threads spend their time, by sampling their stacks every 10 ms (cProfile
    would see only the thread that enables it). Its own cost shows in the CPU figure: not for the measured run."""

    def __init__(self):
        import collections
        import threading

        self.own, self.leaf = collections.Counter(), collections.Counter()
        self.samples = 0
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        import threading

        me = threading.get_ident()
        while True:
            time.sleep(0.01)
            self.samples += 1
            for tid, frame in sys._current_frames().items():
                if tid == me:
                    continue
                top = frame
                self.leaf[f"{top.f_code.co_filename.rsplit('/', 2)[-1]}:{top.f_code.co_name}"] += 1
                seen = set()
                while frame is not None:
                    name = f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_code.co_name}"
                    if name not in seen:
                        self.own[name] += 1
                        seen.add(name)
                    frame = frame.f_back

    def report(self):
        print(f"profile: {self.samples} samples of every thread; innermost frames:", file=sys.stderr)
        for name, n in self.leaf.most_common(15):
            print(f"  {n:6d}  {name}", file=sys.stderr)
        print("profile: frames anywhere on the stack:", file=sys.stderr)
        for name, n in self.own.most_common(25):
            print(f"  {n:6d}  {name}", file=sys.stderr)


# --- the bench's own process ------------------------------------------------------------------------------


def cpu_seconds(path: str) -> float:
    """utime + stime of a /proc/PID/stat or /proc/PID/task/TID/stat (fields 14 and 15 of proc(5))."""
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu(pid: int) -> list[tuple[str, float]]:
    out = []
    for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            name = f.read().strip()
        out.append((f"{name}[{tid}]", cpu_seconds(f"/proc/{pid}/task/{tid}/stat")))
    return out


def weights(pid: int, address: str) -> dict[int, int]:
    """Real servers' weights by port in the IPVS table of PID's namespace (the last service listing each)."""
    needle = "-> " + "".join(f"{int(part):02X}" for part in address.split(".")) + ":"
    out = {}
    with open(f"/proc/{pid}/net/ip_vs") as f:
        for line in f:
            at = line.find(needle)
            if at >= 0:
                parts = line[at:].split()
                out[int(parts[1].split(":")[1], 16)] = int(parts[3])
    return out


class Servers:
    def __init__(self, args):
        cpus = os.cpu_count() or 1
        pin = ["taskset", "-c", str(cpus - 1)] if cpus > 1 else []
        self.proc = subprocess.Popen(["ip", "netns", "exec", "srv", *pin, sys.executable,
                                      f"{REPO}/bench/health_servers.py", "--base", str(BASE_PORT),
                                      "--count", str(args.servers)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            raise SystemExit(f"real servers did not start: {line!r}")

    def command(self, verb: str, port: int) -> float:
        self.proc.stdin.write(f"{verb} {port}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline().split()[2])


def start_keepalived(args) -> tuple[subprocess.Popen, int]:
    conf = f"{TMP}/ka.conf"
    with open(conf, "w") as f:
        f.write(keepalived_conf(args))
    for name in ("ka.pid", "ka-checker.pid"):
        if os.path.exists(f"{TMP}/{name}"):
            os.unlink(f"{TMP}/{name}")
    log = open(f"{TMP}/keepalived.log", "w")
    proc = subprocess.Popen(["ip", "netns", "exec", "ka", "keepalived", "--check", "--dont-fork", "--log-console",
                             "--use-file", conf, "--pid", f"{TMP}/ka.pid", "--checkers_pid",
                             f"{TMP}/ka-checker.pid"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with open(f"{TMP}/ka-checker.pid") as f:
                return proc, int(f.read().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    raise SystemExit(f"keepalived's checker did not start:\n{open(f'{TMP}/keepalived.log').read()[-3000:]}")


def start_agent(args) -> subprocess.Popen:
    argv = ["ip", "netns", "exec", "lva", sys.executable, os.path.abspath(__file__), "--agent",
            "--servers", str(args.servers), "--services", str(args.services), "--interval", str(args.interval),
            "--timeout", str(args.timeout), "--fall", str(args.fall)] + (["--profile"] if args.profile else [])
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    line = proc.stdout.readline()
    if not line.startswith("ready ok"):
        raise SystemExit(f"the agent did not converge: {line!r}")
    return proc


def wait_full(pid: int, address: str, count: int, timeout: float) -> float:
    t0 = time.monotonic()
    while len(weights(pid, address)) < count:
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"the table of {address} holds {len(weights(pid, address))} of {count} real servers")
        time.sleep(0.2)
    return time.monotonic() - t0


def measure_cpu(args, agent_pid: int, ka_pid: int) -> tuple[float, float, dict]:
    """CPU seconds of the agent and of keepalived's checker over the same args.seconds of checking."""
    agent_threads = dict(thread_cpu(agent_pid))
    a0, k0, t0 = cpu_seconds(f"/proc/{agent_pid}/stat"), cpu_seconds(f"/proc/{ka_pid}/stat"), time.monotonic()
    time.sleep(args.seconds)
    a1, k1, t1 = cpu_seconds(f"/proc/{agent_pid}/stat"), cpu_seconds(f"/proc/{ka_pid}/stat"), time.monotonic()
    threads = {name: cpu - agent_threads.get(name, 0.0) for name, cpu in thread_cpu(agent_pid)}
    return a1 - a0, k1 - k0, {"wall": t1 - t0, "threads": threads}


def detect(args, servers: Servers, agent_pid: int, ka_pid: int) -> list[tuple[int, float | None, float | None]]:
    """Refuse args.failures servers one at a time at random moments: (port, agent's delay, keepalived's delay)."""
    rng = random.Random(args.seed)
    ports = rng.sample(range(BASE_PORT, BASE_PORT + args.servers), args.failures)
    bound = args.interval * args.fall + args.timeout
    out = []
    for port in ports:
        time.sleep(rng.uniform(0, args.interval * 2))
        stopped = servers.command("refuse", port)
        agent_at = ka_at = None
        while (agent_at is None or ka_at is None) and time.monotonic() - stopped < bound * 4:
            time.sleep(POLL)
            now = time.monotonic()
            if agent_at is None and weights(agent_pid, f"{LVA_NET}.2").get(port) == 0:
                agent_at = now - stopped
            if ka_at is None and weights(ka_pid, f"{KA_NET}.2").get(port) == 0:
                ka_at = now - stopped
        out.append((port, agent_at, ka_at))
        fmt = lambda x: "never" if x is None else f"{x:.2f} s"  # noqa: E731
        print(f"server :{port} refused: weight 0 after {fmt(agent_at)} (agent), {fmt(ka_at)} (keepalived)",
              flush=True)
    return out


def wrongly_down(agent_pid: int, ka_pid: int) -> tuple[int, int]:
    return (sum(1 for w in weights(agent_pid, f"{LVA_NET}.2").values() if w == 0),
            sum(1 for w in weights(ka_pid, f"{KA_NET}.2").values() if w == 0))


def report(args, cpu, detections, down_before) -> None:
    agent_cpu, ka_cpu, info = cpu
    bound = args.interval * args.fall + args.timeout
    print(f"{args.servers} real servers in {args.services} virtual services; http GET /health every "
          f"{args.interval:g} s, timeout {args.timeout:g} s, fall {args.fall} (keepalived: delay_loop "
          f"{args.interval:g}, connect_timeout {args.timeout:g}, retry {args.fall - 1}, delay_before_retry "
          f"{args.interval:g}); guest CPUs {os.cpu_count()}")
    print(f"CPU over {info['wall']:.1f} s of checking: agent process {agent_cpu:.2f} s "
          f"({agent_cpu / info['wall'] * 100:.0f}% of a CPU), keepalived's checker {ka_cpu:.2f} s "
          f"({ka_cpu / info['wall'] * 100:.0f}%)")
    busy = sorted(info["threads"].items(), key=lambda kv: -kv[1])
    print("agent threads: " + ", ".join(f"{name} {cpu:.2f} s" for name, cpu in busy if cpu > 0.005))
    print(f"servers at weight 0 after the CPU window (all were up): agent {down_before[0]}, keepalived "
          f"{down_before[1]}")
    agent_delays = [a for _, a, _ in detections if a is not None]
    ka_delays = [k for _, _, k in detections if k is not None]
    missed = len(detections) - len(agent_delays)
    if agent_delays:
        print(f"detection, agent: median {statistics.median(agent_delays):.2f} s, worst {max(agent_delays):.2f} s"
              f"{f', {missed} never seen' if missed else ''}; bound {bound:g} s")
    if ka_delays:
        print(f"(keepalived: median {statistics.median(ka_delays):.2f} s, worst {max(ka_delays):.2f} s; "
              f"keepalived/bound = {max(ka_delays) / bound:.2f})")
    worst = float("inf") if missed or not agent_delays else max(agent_delays)
    print(f"health-detection/bound = {worst / bound:.2f}")
    print(f"health-cpu/keepalived = {agent_cpu / ka_cpu:.2f}" if ka_cpu else
          f"health-cpu/keepalived = inf (keepalived's checker used {ka_cpu:.2f} s)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", type=int, default=1000)
    ap.add_argument("--services", type=int, default=10, help="virtual services sharing the real servers out")
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--fall", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60.0, help="the CPU window")
    ap.add_argument("--settle", type=float, default=0.0, help="seconds of checking before it (0: 3 intervals)")
    ap.add_argument("--failures", type=int, default=5)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--profile", action="store_true", help="sample the agent's stacks (skews its CPU figure)")
    ap.add_argument("--agent", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.agent:
        return run_agent(args)
    if os.environ.get("LVSADMIN_IN_GUEST") != "1":
        raise SystemExit("run me in the IPVS guest: scripts/ipvs-vm run -- .venv/bin/python bench/bench_health.py")
    os.makedirs(TMP, exist_ok=True)
    build_network()
    servers = Servers(args)
    ka, ka_pid = start_keepalived(args)
    t0 = time.monotonic()
    agent = start_agent(args)
    print(f"agent converged {args.servers} real servers in {time.monotonic() - t0:.1f} s", flush=True)
    try:
        wait_full(ka_pid, f"{KA_NET}.2", args.servers, 120)
        wait_full(agent.pid, f"{LVA_NET}.2", args.servers, 120)
        time.sleep(args.settle or 3 * args.interval + args.timeout)
        print("both settled; measuring CPU", flush=True)
        cpu = measure_cpu(args, agent.pid, ka_pid)
        down = wrongly_down(agent.pid, ka_pid)
        detections = detect(args, servers, agent.pid, ka_pid)
    finally:
        agent.stdin.close()
        try:
            agent.wait(15)
        except subprocess.TimeoutExpired:
            agent.kill()
        ka.terminate()
        servers.proc.stdin.close()
        ka.wait(15)
    report(args, cpu, detections, down)
    return 0


if __name__ == "__main__":
    sys.exit(main())
