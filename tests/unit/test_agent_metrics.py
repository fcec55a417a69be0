"""The agent's /metrics (lvsadmin.agent.metrics): what a Prometheus scrape of a balancer returns.

The kernel tier (tests/kernel/test_metrics_against_node_exporter.py) holds the node_ipvs_* families to Debian's
node_exporter on a real kernel; here: the hand-written exposition is byte for byte prometheus-client's, the
lvsadmin_* families follow what the agent feeds them, and the server answers as a scrape target should.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from lvsadmin.agent.kernel import MemoryBackend
from lvsadmin.agent.metrics import AgentMetrics, MetricsServer, settings
from lvsadmin.agent.metrics_text import Writer, library_families, read_totals, value_text
from lvsadmin.ipvs.model import Destination, Service, Stats, Table

BIG = 2**64 - 1


def stats(seed: int) -> Stats:
    return Stats(seed, seed * 7, seed * 5, seed * 1_000_003, seed * 999_983, 1, 2, 3, 4, 5)


def dest(address: str, port: int, weight: int = 1, seed: int = 1, active: int = 0, inactive: int = 0) -> Destination:
    d = Destination(address, port, weight=weight, stats=stats(seed))
    d.active_conns, d.inactive_conns = active, inactive
    return d


def sample_table() -> Table:
    web = Service("tcp", "10.0.0.1", 80, stats=stats(3), destinations=[
        dest("192.0.2.1", 8080, weight=3, seed=1, active=4, inactive=12),
        dest("192.0.2.2", 8080, weight=0, seed=2_000_000_000)])
    dns = Service("udp", "10.0.0.2", 53, stats=Stats(conns=BIG, inbytes=2**53 + 1, outbytes=10**16),
                  destinations=[dest("192.0.2.3", 53, weight=65535, seed=999_999)])
    mark = Service("fwmark", fwmark=10, stats=stats(1), destinations=[dest("192.0.2.4", 0, seed=0)])
    mark6 = Service("fwmark", fwmark=0xABC, fwmark_family=6, destinations=[dest("2001:db8::10", 0)])
    v6 = Service("tcp", "2001:db8::1", 443, stats=stats(5), destinations=[
        dest("2001:db8:0:1::20", 443, seed=6), dest("::ffff:198.51.100.7", 443, seed=7)])
    sctp = Service("sctp", "10.0.0.3", 3868, destinations=[Destination("192.0.2.5", 3868)])  # no counters read
    return Table(services=[web, dns, mark, mark6, v6, sctp])


def library_text(table, totals) -> bytes:
    class Families:
        def collect(self):
            return library_families(table, totals)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families())
    return generate_latest(registry)


def samples(text, name: str) -> dict:
    """{labels as a sorted tuple: value} of one sample name."""
    text = text.decode() if isinstance(text, bytes) else text
    return {tuple(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == name}


# --- the hand-written families ---------------------------------------------------------------------------------


def test_the_hand_written_families_are_byte_identical_to_prometheus_clients():
    table, totals = sample_table(), (1, 2_000_000, 3, BIG, 5)
    writer = Writer()
    assert writer.text(table, totals).encode() == library_text(table, totals)


def test_a_later_scrape_with_changed_counters_and_objects_is_still_byte_identical():
    writer, table = Writer(), sample_table()
    writer.text(table, None)  # the label blocks are kept from this scrape
    table.services[0].destinations[0].active_conns = 99
    table.services[0].destinations[1].stats = stats(123_456_789)
    table.services.pop(2)
    table.services[0].destinations.append(dest("192.0.2.9", 8080, weight=9))
    assert writer.text(table, None).encode() == library_text(table, None)
    assert "192.0.2.4" not in writer.text(table, None)  # a removed server is gone from the next scrape


@pytest.mark.parametrize("value", [0, 1, 999_999, 1_000_000, 1_000_001, 1_234_567_890, 10**15, 2**53 - 1, 2**53,
                                   2**53 + 1, 10**16, BIG, 12.5])
def test_a_value_is_written_as_prometheus_client_writes_it(value):
    assert value_text(value) == floatToGoString(value)


def test_node_ipvs_labels_are_spelled_as_node_exporter_spells_them():
    weights = samples(Writer().text(sample_table(), None), "node_ipvs_backend_weight")
    by_remote = {dict(labels)["remote_address"]: dict(labels) for labels in weights}
    assert by_remote["192.0.2.4"] == {"local_address": "", "local_port": "0", "local_mark": "0000000A",
                                      "proto": "FWM", "remote_address": "192.0.2.4", "remote_port": "0"}
    assert by_remote["2001:db8::10"]["local_mark"] == "00000ABC"
    assert by_remote["2001:db8:0:1::20"]["local_address"] == "2001:db8::1"
    # Go's net.IP prints an IPv4-mapped IPv6 address as the IPv4 address.
    assert "198.51.100.7" in by_remote
    assert by_remote["192.0.2.3"]["proto"] == "UDP" and by_remote["192.0.2.1"]["local_port"] == "80"
    assert weights[tuple(sorted(by_remote["192.0.2.3"].items()))] == 65535


def test_real_servers_with_the_same_labels_are_summed_as_node_exporter_sums_them():
    # An IPv4 server behind both the IPv4 and the IPv6 service of one mark (tunnelled): the same labels.
    first = Service("fwmark", fwmark=1, destinations=[dest("192.0.2.1", 0, weight=2, active=1)])
    second = Service("fwmark", fwmark=1, fwmark_family=6, destinations=[dest("192.0.2.1", 0, weight=3, active=4)])
    table = Table(services=[first, second])
    text = Writer().text(table, None)
    assert list(samples(text, "node_ipvs_backend_weight").values()) == [5]
    assert list(samples(text, "node_ipvs_backend_connections_active").values()) == [5]
    assert text.encode() == library_text(table, None)


def test_per_service_and_per_real_server_traffic_is_labelled_by_the_ipvsadm_names():
    text = Writer().text(sample_table(), None)
    services = samples(text, "lvsadmin_service_incoming_bytes_total")
    assert services[(("service", "TCP 10.0.0.1:80"),)] == 3 * 1_000_003
    assert services[(("service", "FWM 2748 IPv6"),)] == 0  # no counters read: 0
    servers = samples(text, "lvsadmin_real_server_connections_total")
    assert servers[(("server", "[2001:db8:0:1::20]:443"), ("service", "TCP [2001:db8::1]:443"))] == 6
    assert servers[(("server", "192.0.2.2:8080"), ("service", "TCP 10.0.0.1:80"))] == 2_000_000_000


def test_the_totals_are_read_from_the_kernels_ip_vs_stats(tmp_path):
    proc = tmp_path / "ip_vs_stats"
    proc.write_text("   Total Incoming Outgoing         Incoming         Outgoing\n"
                    "   Conns  Packets  Packets            Bytes            Bytes\n"
                    "       5       19        0              5DC                0\n\n"
                    " Conns/s   Pkts/s   Pkts/s          Bytes/s          Bytes/s\n"
                    "       0        0        0                0                0\n")
    assert read_totals(str(proc)) == (5, 0x19, 0, 0x5DC, 0)
    assert read_totals(str(tmp_path / "missing")) is None
    proc.write_text("garbage\n")
    with pytest.raises(ValueError, match="unexpected layout"):
        read_totals(str(proc))


# --- what the agent feeds ------------------------------------------------------------------------------------


def scrape(metrics: AgentMetrics, table: Table | None = None, proc: str = "/nonexistent") -> str:
    backend = MemoryBackend()
    backend.set_table(table or Table())
    return metrics.exposition(backend, proc).decode()


def test_reconcile_durations_are_counted_by_outcome_and_only_success_moves_the_last_success_time():
    metrics = AgentMetrics()
    metrics.observe_report({"outcome": "ok", "durations": {"total": 0.3}})
    metrics.observe_report({"outcome": "noop", "durations": {"noop_check": 0.01}})
    metrics.observe_report({"outcome": "error", "durations": {"total": 2.0}})
    metrics.observe_report({"outcome": "stale", "durations": {}})  # ignored: nothing was reconciled
    text = scrape(metrics)
    counts = samples(text, "lvsadmin_reconcile_duration_seconds_count")
    assert counts == {(("outcome", "ok"),): 1, (("outcome", "noop"),): 1, (("outcome", "error"),): 1}
    assert samples(text, "lvsadmin_reconcile_duration_seconds_sum")[(("outcome", "error"),)] == 2.0
    last = samples(text, "lvsadmin_last_successful_reconcile_timestamp_seconds")[()]
    assert abs(last - datetime.now(UTC).timestamp()) < 60


def test_a_failed_reconcile_leaves_the_last_success_time_unset():
    metrics = AgentMetrics()
    metrics.observe_reconcile(1.0, "error")
    assert samples(scrape(metrics), "lvsadmin_last_successful_reconcile_timestamp_seconds") == {(): 0.0}


def test_the_programming_latency_is_the_time_since_the_revision_was_created_once_the_kernel_holds_it():
    metrics = AgentMetrics()
    created = (datetime.now(UTC) - timedelta(seconds=42)).isoformat()
    metrics.observe_report({"outcome": "ok", "durations": {"total": 0.5}}, {"revision": 3, "revision_time": created})
    metrics.observe_report({"outcome": "noop", "durations": {"total": 0.1}})  # the same revision again: no latency
    metrics.observe_report({"outcome": "error", "durations": {"total": 0.1}}, {"revision_time": created})
    text = scrape(metrics)
    assert samples(text, "lvsadmin_network_programming_latency_seconds_count") == {(): 1}
    assert 42 <= samples(text, "lvsadmin_network_programming_latency_seconds_sum")[()] < 100
    assert samples(text, "lvsadmin_network_programming_latency_seconds_bucket")[(("le", "30.0"),)] == 0
    assert samples(text, "lvsadmin_network_programming_latency_seconds_bucket")[(("le", "45.0"),)] == 1


def test_an_unreadable_revision_time_is_no_latency_and_no_error():
    metrics = AgentMetrics()
    metrics.observe_reconcile(0.2, "ok", revision_time="yesterday")
    assert samples(scrape(metrics), "lvsadmin_network_programming_latency_seconds_count") == {(): 0}


def test_the_applied_revision_is_read_at_each_scrape():
    held = {"revision": 4}
    metrics = AgentMetrics(revision=lambda: held["revision"])
    assert samples(scrape(metrics), "lvsadmin_applied_revision") == {(): 4}
    held["revision"] = 5
    assert samples(scrape(metrics), "lvsadmin_applied_revision") == {(): 5}


def test_health_follows_the_checker_and_counts_every_transition_even_between_heartbeats():
    metrics = AgentMetrics()
    web, six = "tcp|10.0.0.1|80", "fwmark|6|7"
    metrics.set_health({"servers": {web: {"192.0.2.1|8080": {"state": "up"}, "192.0.2.2|8080": {"state": "up"}},
                                    six: {"2001:db8::5|0": {"state": "down"}}}})
    flap = [{"service": web, "server": "192.0.2.1|8080", "from": "up", "to": "down"},
            {"service": web, "server": "192.0.2.1|8080", "from": "down", "to": "up"},
            {"service": web, "server": "", "from": "ok", "to": "lost"}]  # service-wide: not a server's
    metrics.count_transitions(flap)
    metrics.set_health({web: {"192.0.2.1|8080": {"state": "up"}}})  # the servers mapping alone; 192.0.2.2 left
    text = scrape(metrics)
    up = samples(text, "lvsadmin_health_up")
    assert up == {(("server", "192.0.2.1:8080"), ("service", "TCP 10.0.0.1:80")): 1}
    assert samples(text, "lvsadmin_health_transitions_total") == {
        (("server", "192.0.2.1:8080"), ("service", "TCP 10.0.0.1:80")): 2}
    metrics.set_health({six: {"2001:db8::5|0": {"state": "down"}}})
    assert samples(scrape(metrics), "lvsadmin_health_up") == {
        (("server", "[2001:db8::5]:0"), ("service", "FWM 7 IPv6")): 0}


def test_a_kernel_that_cannot_be_read_still_answers_and_says_so():
    class Broken:
        def dump(self, counters=True):
            raise OSError("netlink: permission denied")

    metrics = AgentMetrics(revision=lambda: 2)
    text = metrics.exposition(Broken(), "/nonexistent").decode()
    assert samples(text, "lvsadmin_ipvs_scrape_success") == {(): 0}
    assert samples(text, "lvsadmin_applied_revision") == {(): 2}
    assert "node_ipvs_backend_weight" not in text


# --- the server and its settings ----------------------------------------------------------------------------


@pytest.fixture
def server():
    backend = MemoryBackend()
    backend.set_table(sample_table())
    running = MetricsServer(AgentMetrics(revision=lambda: 9), "127.0.0.1", 0, lambda: backend).start()
    yield running
    running.stop()


def test_the_server_answers_a_scrape_in_the_text_format(server):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = response.read().decode()
    assert samples(text, "lvsadmin_applied_revision") == {(): 9}
    assert len(samples(text, "node_ipvs_backend_weight")) == 8


def test_the_server_answers_404_elsewhere_and_405_to_a_post(server):
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=10)
    assert missing.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as post:
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", data=b"x", timeout=10)
    assert post.value.code == 405


def test_metrics_listen_on_the_loopback_port_9114_unless_told_otherwise():
    assert settings({}) == ("127.0.0.1", 9114)
    assert settings({"LVSADMIN_METRICS_ADDRESS": "::1", "LVSADMIN_METRICS_PORT": "0"}) == ("::1", 0)


@pytest.mark.parametrize(("env", "message"), [
    ({"LVSADMIN_METRICS_PORT": "http"}, "LVSADMIN_METRICS_PORT must be a port number"),
    ({"LVSADMIN_METRICS_PORT": "70000"}, "LVSADMIN_METRICS_PORT must be a port number"),
    ({"LVSADMIN_METRICS_ADDRESS": "lb1.example"}, "LVSADMIN_METRICS_ADDRESS must be an IP address"),
])
def test_a_bad_metrics_setting_is_refused_naming_it(env, message):
    with pytest.raises(ValueError, match=message):
        settings(env)


# --- the panel's side of the latency -------------------------------------------------------------------------


def test_a_snapshot_carries_when_the_panel_created_its_revision(actor, cluster):
    from django.utils import timezone

    from lvsadmin.core import services
    from lvsadmin.core.selectors import snapshot

    before = timezone.now()
    services.create_service(actor, cluster, protocol="tcp", address="10.0.0.1", port=80)
    first = snapshot(cluster)
    assert before <= datetime.fromisoformat(first["revision_time"]) <= timezone.now()
    services.create_service(actor, cluster, protocol="tcp", address="10.0.0.2", port=80)
    second = snapshot(cluster)
    assert second["revision"] == first["revision"] + 1
    assert second["revision_time"] >= first["revision_time"]
