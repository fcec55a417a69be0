#!/usr/bin/env python3
"""Server time of the panel's pages on a small and a large data set, side by side.

    .venv/bin/python bench/bench_pages.py [--runs 15] [--scale 1.0] [--keep] [--balancers 50 [--reporting]]

The large set is one cluster with 10,000 virtual services and 100,000 real servers, two balancers with
counters for every service and 1,000 apply reports each, and 1,000,000 audit records (a valid hash chain).
The small set is the same shape at 100 services, 1,000 real servers and 1,000 audit records (enough to fill
every list's first page, so that both sets render as many rows). Data is written
with bulk_create; the database is a SQLite file in a temporary directory unless DATABASE_URL says otherwise
(it must then point to an empty database). Each page is requested in-process through Django's test client
(middleware, view, templates: everything but the network) `--runs` times after one warm-up request, the
two sets alternately; the fastest run is printed, wall time and this process's CPU time (Python and the
in-process SQLite: the work itself, without the waits of a busy machine), with the ratios large/small.
List pages should stay at or under 1.5.

A fleet (issue 13): `--balancers 50` gives both sets 50 balancers instead of two (counters, apply reports with their
latency, a reported table each), and `--reporting` keeps them reporting while the pages are timed: another process
records a heartbeat of each balancer every 5 s (100 services' counters changed, as an agent sends them) through
core.reports.record_heartbeat, on the same database. Seen here with both (2026-12-05): every page's CPU ratio
at or under 1.17 but the cluster list pages' 1.8–1.9 (60 → 115 ms; were 2.5–3.7): the large set's day holds ten
times the applies (50,000), and their latency percentiles are most of the difference.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BALANCERS = 2  # --balancers
SMALL = {"services": 100, "servers_each": 10, "records": 1_000, "reports": 100}
LARGE = {"services": 10_000, "servers_each": 10, "records": 1_000_000, "reports": 1_000}


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lvsadmin.settings")
    os.environ.setdefault("SECURE", "0")  # plain HTTP in-process: no redirect to https
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("AXES_ENABLED", "0")
    os.environ.setdefault("TWO_FACTOR_REQUIRED", "none")  # the bench's admin signs in with force_login
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _address(n: int) -> str:
    return f"10.{n // 62500 % 250}.{n // 250 % 250}.{n % 250 + 1}"


def grow(state: dict, target: dict) -> None:
    """Bring the data set up to `target` (services, real servers, samples, reports, audit records)."""
    from datetime import timedelta

    from django.utils import timezone

    from lvsadmin.core.models import (
        ApplyReport,
        Balancer,
        Cluster,
        RealServer,
        ReportedTable,
        ServiceSample,
        VirtualService,
    )

    cluster = Cluster.objects.get(name="web")
    balancers = list(Balancer.objects.filter(cluster=cluster))
    now = timezone.now()
    have = state.get("services", 0)
    batch = 2_000
    for start in range(have, target["services"], batch):
        svcs = VirtualService.objects.bulk_create([
            VirtualService(cluster=cluster, protocol="tcp" if n % 7 else "udp", address=_address(n), port=80 + n % 3,
                           scheduler=("wrr", "rr", "wlc", "sh")[n % 4], position=n + 1, name=f"svc-{n}")
            for n in range(start, min(start + batch, target["services"]))])
        RealServer.objects.bulk_create([
            RealServer(service=s, address=f"192.0.{j}.{(s.position % 250) + 1}", port=s.port, weight=1 + j,
                       position=j + 1, state="draining" if j == 9 else "active")
            for s in svcs for j in range(target["servers_each"])], batch_size=5_000)
        ServiceSample.objects.bulk_create([
            ServiceSample(balancer=b, service_key=s.key_text, sampled_at=now, data={
                "conns": 1000, "cps": 3, "inbps": 5000, "outbps": 90000, "active_conns": 12, "inactive_conns": 40,
                "dests": {f"192.0.{j}.{(s.position % 250) + 1}|{s.port}": {"active_conns": 1, "inactive_conns": 4,
                                                                           "weight": 1 + j}
                          for j in range(target["servers_each"])}})
            for s in svcs for b in balancers], batch_size=5_000)
    for b in balancers:
        ApplyReport.objects.bulk_create([
            ApplyReport(balancer=b, revision=i, outcome="ok", trigger="apply", started=now, finished=now, applied=2,
                        operations=[f"-a -t {_address(i)}:80 -r 192.0.2.1:80 -g -w 1", "-e -t ... -w 2"],
                        committed=now - timedelta(seconds=0.2 + i % 7 / 10),
                        kernel_latency=0.2 + i % 7 / 10, report_latency=0.25 + i % 7 / 10)
            for i in range(state.get("reports", 0), target["reports"])], batch_size=5_000)
        ReportedTable.objects.get_or_create(balancer=b, defaults={"reported_at": now, "revision": 1, "digest": "x",
                                                                  "table": {"services": []}})

    add_records(cluster, state.get("records", 0), target["records"], now)
    state.update(target)


def add_records(cluster, start: int, stop: int, now) -> None:
    """Audit records start..stop, chained exactly as audit.log.write chains them, inserted in bulk (raw SQL: a
    million model instances would take minutes)."""
    import hashlib
    import json
    from datetime import timedelta

    from django.db import connection, transaction

    from lvsadmin.audit.log import GENESIS
    from lvsadmin.audit.models import ChainHead

    head, _ = ChainHead.objects.get_or_create(id=1, defaults={"hash": GENESIS})
    prev, count = head.hash, head.count
    first = now - timedelta(seconds=stop)  # one record a second, the newest now
    js = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    sql = ("INSERT INTO audit_changerecord (time, user_id, username, request_id, action, object_type, object_id, "
           "object_repr, cluster_id, cluster_name, before, after, comment, prev_hash, hash, keyed) "
           f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, {js}, {js}, %s, %s, %s, %s)")
    users = ("otto", "ada", "agent:lb1", "agent:lb2", "vera")
    actions = ("update", "create", "apply", "delete", "login")
    for chunk in range(start, stop, 50_000):
        rows = []
        for n in range(chunk, min(chunk + 50_000, stop)):
            when = first + timedelta(seconds=n)
            content = {"time": when.isoformat(), "user_id": None, "username": users[n % 5],
                       "request_id": f"bench{n // 3}", "action": actions[n % 5], "object_type": "realserver",
                       "object_id": n % 20 + 1,  # busy objects: each has a full page of history
                       "object_repr": f"TCP {_address(n % 10_000)}:80 -> 192.0.2.{n % 250}:80",
                       "cluster_id": cluster.pk, "cluster_name": cluster.name,
                       "before": {"weight": n % 10, "state": "active"},
                       "after": {"weight": n % 10 + 1, "state": "draining"}, "comment": "", "prev_hash": prev}
            digest = hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":"),
                                               ensure_ascii=False).encode()).hexdigest()
            rows.append((connection.ops.adapt_datetimefield_value(when), None, content["username"],
                         content["request_id"], content["action"],
                         "realserver", content["object_id"], content["object_repr"], cluster.pk, cluster.name,
                         json.dumps(content["before"]), json.dumps(content["after"]), "", prev, digest,
                         False))  # plain SHA-256, as records from before the audit key (audit.log)
            prev = digest
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, rows)
        count += len(rows)
    ChainHead.objects.filter(id=1).update(hash=prev, count=count)


def base_data() -> None:
    from django.contrib.auth.models import Group, User

    from lvsadmin.audit.log import Actor
    from lvsadmin.core import services, users

    setup = Actor.system("bench")
    for role in users.ROLES:
        Group.objects.get_or_create(name=role)
    users.create_user(setup, username="otto", password="bench password 1", role="operator")
    users.create_user(setup, username="vera", password="bench password 1", role="viewer")
    User.objects.create_superuser("ada", "", "bench password 1")
    cluster = services.create_cluster(setup, name="web")
    for n in range(1, BALANCERS + 1):
        services.create_balancer(setup, cluster, name=f"lb{n}")


def pages() -> list[tuple[str, str, dict]]:
    from lvsadmin.core.models import VirtualService

    svc = VirtualService.objects.order_by("id").first().pk
    hx = {"HTTP_HX_REQUEST": "true"}
    return [
        ("dashboard", "/", {}),
        ("cluster: services, page 1", "/clusters/web/", {}),
        ("cluster: search", "/clusters/web/?q=svc", {}),
        ("cluster: filter + sort", "/clusters/web/?protocol=tcp&sort=-address", {}),
        ("cluster: page 5", "/clusters/web/?page=5", {}),
        ("cluster: counters (5 s poll)", "/clusters/web/", dict(hx, HTTP_HX_TARGET="counters")),
        ("service", f"/services/{svc}/", {}),
        ("balancer (reports)", "/balancers/lb1/", {}),
        ("balancer: older reports", "/balancers/lb1/?before=5", dict(hx, HTTP_HX_TARGET="reports")),
        ("audit log", "/audit/", {}),
        ("audit log: older (cursor)", "/audit/?before=600", {}),
        ("audit log: by user", "/audit/?user=vera", {}),
        ("audit log: by object", "/audit/?object_type=realserver&object_id=7", {}),
        ("audit log: by action+date", "/audit/?action=apply&since=2000-01-01", {}),
        ("users", "/users/", {}),
        # Not list pages: they read every service by nature (a sort on a computed count, the whole plan, the
        # whole listing); shown for information.
        ("* cluster: sort by server count", "/clusters/web/?sort=-servers", {}),
        ("* plan (whole table)", "/clusters/web/plan/", {}),
        ("* ipvsadm -Ln (whole table)", "/clusters/web/ipvsadm/", {}),
    ]


def analyze() -> None:
    """Fresh planner statistics, as a maintained database has them (PostgreSQL's autovacuum, SQLite's ANALYZE)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def client():
    from django.contrib.auth.models import User
    from django.test import Client

    c = Client(HTTP_HOST="localhost")
    c.force_login(User.objects.get(username="ada"))
    return c


def use(path: str | None) -> None:
    """Point the default connection at another SQLite file (None: leave it)."""
    from django.db import connection

    if path is not None and connection.settings_dict["NAME"] != path:
        connection.close()
        connection.settings_dict["NAME"] = path
        connection.ensure_connection()


def time_page(c, url: str, headers: dict) -> tuple[float, float]:
    """(wall, cpu) seconds of one request. CPU time is this process's own work (Python and SQLite, which runs
    in-process): unlike wall time, it does not count the time spent waiting for a CPU on a busy machine."""
    w0, c0 = time.perf_counter(), time.process_time()
    response = c.get(url, **headers)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    assert response.status_code == 200, (url, response.status_code)
    return wall, cpu


def measure(sets: dict, runs: int) -> dict[str, dict[str, tuple[float, float]]]:
    """(wall, cpu) server time of each page on each set: the fastest of `runs` requests, the least disturbed
    by other work. The sets are measured alternately, run by run, so that load slows both alike."""
    clients, page_list = {}, None
    for name, path in sets.items():
        use(path)
        clients[name] = client()
        page_list = page_list or pages()
    out: dict[str, dict[str, tuple[float, float]]] = {name: {} for name in sets}
    for label, url, headers in page_list:
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in sets}
        for run in range(runs + 1):
            for name, path in sets.items():
                use(path)
                elapsed = time_page(clients[name], url, headers)
                if run:  # the first run warms up
                    times[name].append(elapsed)
        for name in sets:
            out[name][label] = (min(w for w, _ in times[name]), min(c for _, c in times[name]))
    return out


def heartbeats(database_url: str, seconds: float = 5.0) -> None:
    """Until killed: a heartbeat of every balancer each `seconds`, as the control worker records them (the child
    process of `--reporting`)."""
    import random

    setup_django(database_url)
    from django.utils import timezone

    from lvsadmin.core import reports
    from lvsadmin.core.models import Balancer, ServiceSample

    names = list(Balancer.objects.values_list("name", flat=True))
    keys = list(ServiceSample.objects.filter(balancer__name="lb1").values_list("service_key", flat=True))
    while True:
        started = time.monotonic()
        for name in names:
            samples = {k: {"conns": random.randrange(10**6), "active_conns": random.randrange(100)}
                       for k in random.sample(keys, min(100, len(keys)))}
            reports.record_heartbeat({"balancer": name, "cluster": "web", "sent": timezone.now().isoformat(),
                                      "applied_revision": 1, "facts": {"ipvs_version": "1.2.1"},
                                      "samples": samples})
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))


def reporting(database_url: str):
    """Start the heartbeat writer on `database_url`; returns its process (terminate it when done)."""
    import subprocess

    return subprocess.Popen([sys.executable, __file__, "--heartbeats-to", database_url], cwd=ROOT)


def fast_sqlite() -> None:
    from django.db import connection

    if connection.vendor == "sqlite":  # a throwaway file: no fsync while building
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.execute("PRAGMA cache_size=-200000")


def build(spec: dict, state: dict) -> None:
    t0 = time.perf_counter()
    if not state:
        base_data()
    fast_sqlite()
    grow(state, spec)
    analyze()
    print(f"built {spec} in {time.perf_counter() - t0:.1f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the SQLite files and print their paths")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the large set (e.g. 0.1) for a quick look")
    parser.add_argument("--balancers", type=int, default=2, help="balancers in the cluster, each with counters and "
                                                                 "apply reports")
    parser.add_argument("--reporting", action="store_true", help="keep every balancer heartbeating meanwhile")
    parser.add_argument("--heartbeats-to", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.heartbeats_to:
        heartbeats(args.heartbeats_to)
        return 0
    global BALANCERS
    BALANCERS = args.balancers
    if args.scale != 1.0:
        LARGE.update({k: max(SMALL[k], int(v * args.scale)) for k, v in LARGE.items() if k != "servers_each"})
    tmp = tempfile.mkdtemp(prefix="lvsadmin-bench-")
    given = os.environ.get("DATABASE_URL")
    setup_django(given or f"sqlite:///{tmp}/small.sqlite3")
    from django.core.management import call_command
    from django.db import connection

    print(f"database: {connection.vendor}, {BALANCERS} balancers{', reporting' if args.reporting else ''}",
          flush=True)
    writers = []

    def timed(sets: dict, urls: list[str]) -> dict:
        writers.extend(reporting(url) for url in urls if args.reporting)
        try:
            return measure(sets, args.runs)
        finally:
            for writer in writers:
                writer.terminate()
                writer.wait()
            writers.clear()

    if given or connection.vendor != "sqlite":
        # One database, measured small, then grown to the large set and measured again.
        state: dict = {}
        build(SMALL, state)
        small = timed({"small": None}, [given])["small"]
        build(LARGE, state)
        large = timed({"large": None}, [given])["large"]
    else:
        paths = {"small": f"{tmp}/small.sqlite3", "large": f"{tmp}/large.sqlite3"}
        build(SMALL, {})
        use(paths["large"])
        call_command("migrate", verbosity=0)
        build(LARGE, {})
        result = timed(paths, [f"sqlite:///{path}" for path in paths.values()])
        small, large = result["small"], result["large"]

    width = max(len(k) for k in small)
    print(f"\n{'page':<{width}}  {'wall ms small':>13} {'large':>8} {'ratio':>6}  {'cpu ms small':>12} {'large':>8} "
          f"{'ratio':>6}")
    worst = {"wall": 0.0, "cpu": 0.0}
    for label in small:
        (ws, cs), (wl, cl) = small[label], large[label]
        wr, cr = wl / ws, cl / max(cs, 1e-6)
        if not label.startswith("*"):
            worst["wall"], worst["cpu"] = max(worst["wall"], wr), max(worst["cpu"], cr)
        flag = "" if label.startswith("*") or cr <= 1.5 else "  > 1.5"
        print(f"{label:<{width}}  {ws * 1000:13.1f} {wl * 1000:8.1f} {wr:6.2f}  {cs * 1000:12.1f} {cl * 1000:8.1f} "
              f"{cr:6.2f}{flag}")
    print(f"\nworst list-page ratio: cpu {worst['cpu']:.2f}, wall {worst['wall']:.2f} (target <= 1.5); fastest of "
          f"{args.runs} runs each, small and large measured alternately")
    if args.keep:
        print(f"kept {tmp}")
    else:
        import shutil

        connection.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
