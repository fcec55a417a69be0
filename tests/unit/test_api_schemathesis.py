"""The API's own OpenAPI schema, fuzzed by schemathesis against the panel on a live server with an admin's token:
every GET, then every write (POST, PUT, PATCH, DELETE): no 5xx, and every answer (status, content type, headers,
body) is what the schema says.

A write with no If-Match is a 428 and one with a random one a 409, and a random object rarely names a real
cluster: neither reaches the validation behind. So half the write examples aim: at the panel's real objects
(its cluster, balancer, service, real server, a backup, a spare token) with the ETag a GET just gave, with the
fields a new object needs and the revision an apply, restore or ipvsadm edit is based on, drawn from a few
plausible values; the rest of their bodies stays random. Some examples of every operation are what the schema
refuses (schemathesis's negative cases: a body that is not JSON, a filter out of bounds): a documented 4xx.

The writes run in a transactional test (flushed after it, as the GETs'), with nothing sent to agents; the deletes
after the rest, the tokens' last (a random id may be the fuzzing token's own). Kept small (a few derandomized
examples per operation: about 20 s in all) so the whole run stays well under a minute."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lvsadmin.api import tokens
from lvsadmin.audit.log import Actor
from lvsadmin.core import services, users
from lvsadmin.core.models import Balancer, Cluster, RealServer, VirtualService
from tests.unit.test_web_backups import store

EXAMPLES = 10
WRITE_EXAMPLES = 25
WRITES = ("POST", "PUT", "PATCH", "DELETE")
# The order of the writes within a method: the objects others hang on (and the fuzzing token) last.
ORDER = ("services", "real-servers", "backups", "clusters", "balancers", "tokens")
# Not checked: that every body the schema allows is accepted, nor every request it refuses refused. The schema
# says the fields and their types; the service layer's rules (an address in the cluster once, a key that is an
# agent's, the revision reviewed) are beyond it, and their refusal is the documented 422 problem, which the other
# checks hold to the schema. And a request "without" its Authorization header still has the session's.
EXCLUDED = [schemathesis.checks.positive_data_acceptance, schemathesis.checks.negative_data_rejection]


@pytest.fixture
def role_groups(transactional_db):
    """The role groups again: a transactional test flushes what the data migration made."""
    from django.contrib.auth.models import Group

    for role in users.ROLES:
        Group.objects.get_or_create(name=role)


@pytest.fixture
def no_agents(monkeypatch):
    """What the writes send to agents (applies, backup requests) goes nowhere: no broker in the unit tests."""
    from lvsadmin.celery import app

    monkeypatch.setattr(app, "send_task", lambda *args, **kwargs: None)


class Targets:
    """The panel's objects a write may aim at, found again (or made again) each time: a write before may have
    renamed, emptied or deleted them."""

    def __init__(self, actor, admin):
        self.actor = actor
        self.cluster = services.create_cluster(actor, name="web")
        self.balancer = services.create_balancer(actor, self.cluster, name="lb1", address="198.51.100.1")
        self.spare, _ = tokens.create_token(actor, admin, name="spare", scopes=["read"])
        self.real_server()

    def path_value(self, first: str):
        """The path parameter of an operation under /api/v1/<first>/."""
        return {"clusters": lambda: Cluster.objects.get(pk=self.cluster.pk).name,
                "balancers": lambda: Balancer.objects.get(pk=self.balancer.pk).name,
                "services": self.service, "real-servers": self.real_server,
                "backups": lambda: store(self.actor, Balancer.objects.get(pk=self.balancer.pk)).pk,
                "tokens": lambda: self.spare.pk}[first]()

    def service(self) -> int:
        svc = VirtualService.objects.filter(cluster=self.cluster.pk).first() or services.create_service(
            self.actor, Cluster.objects.get(pk=self.cluster.pk), protocol="tcp", address="10.0.0.1", port=80)
        return svc.pk

    def real_server(self) -> int:
        rs = RealServer.objects.filter(service__cluster=self.cluster.pk).first() or services.create_real_server(
            self.actor, VirtualService.objects.get(pk=self.service()), address="192.0.2.11", port=80, weight=10)
        return rs.pk

    def revision(self) -> int:
        return Cluster.objects.get(pk=self.cluster.pk).desired_revision

    def body_fields(self, path: str) -> dict:
        """The fields a random body of this operation lacks more often than not, as strategies."""
        cluster = st.builds(lambda: Cluster.objects.get(pk=self.cluster.pk).name)
        address = st.sampled_from(["10.0.0.1", "10.0.0.2", "2001:db8::1", "192.0.2.300", ""])
        port = st.sampled_from([80, 443, 0, 70000])
        revision = st.builds(self.revision) | st.just(0)
        kind = st.sampled_from(["tcp", "http", "https", "dns", "misc", "none", "inherit", "ftp"])
        commands = st.sampled_from(["-A -t 10.0.0.2:80 -s rr", "-a -t 10.0.0.1:80 -r 192.0.2.12:80 -m -w 3",
                                    "-D -t 10.0.0.1:80", "-C", "-A -t 10.0.0.3:80\n-a -t 10.0.0.3:80 -r 192.0.2.9",
                                    "-E -t 10.0.0.9:80 -s nope", "-S -n"])
        return {
            "/api/v1/clusters/": {"name": st.sampled_from(["edge", "web", "Not a slug", "e" * 65])},
            "/api/v1/balancers/": {"cluster": cluster, "name": st.sampled_from(["lb2", "lb1", "-"])},
            "/api/v1/services/": {"cluster": cluster, "protocol": st.sampled_from(["tcp", "udp", "fwmark"]),
                                  "address": address, "port": port},
            "/api/v1/real-servers/": {"service": st.builds(self.service), "address": address, "port": port},
            "/api/v1/services/{id}/check/": {"kind": kind},
            "/api/v1/real-servers/{id}/check/": {"kind": kind},
            "/api/v1/clusters/{name}/apply/": {"revision": revision, "confirm_large": st.booleans()},
            "/api/v1/backups/{id}/restore/": {"revision": revision, "dry_run": st.booleans()},
            "/api/v1/clusters/{name}/ipvsadm/": {"commands": commands, "dry_run": st.booleans(),
                                                 "revision": st.none() | revision},
        }.get(path, {})


@pytest.fixture
def panel(role_groups, no_agents, live_server):
    actor = Actor.system("test")
    admin = users.create_user(actor, username="ada", password="correct horse battery", role="admin")
    targets = Targets(actor, admin)
    _, text = tokens.create_token(actor, admin, name="fuzz", scopes=["read", "write", "apply", "admin"])
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {text}"
    # One request per connection, as the remote command makes: the live server's threads then share the test's
    # (in-memory SQLite) connection only as Django means them to. And a new connection for the next request:
    # the server closes this one after its answer, which does not say so, and a request sent on it would fail.
    session.headers["Connection"] = "close"
    session.hooks["response"].append(lambda response, **kwargs: response.connection.close())
    raw = session.get(f"{live_server.url}/api/v1/schema/?format=json", timeout=30)
    assert raw.status_code == 200
    return live_server.url, session, schemathesis.openapi.from_dict(raw.json()), targets


def first(operation) -> str:
    """The first part of an operation's path after /api/v1/: "clusters", "services" …"""
    return operation.path.split("/")[3]


def aim(case, url: str, session, targets: Targets, data) -> None:
    """Point the case at a real object with its current ETag, and fill in the fields its body lacks."""
    try:
        value = targets.path_value(first(case.operation))
    except Cluster.DoesNotExist:  # deleted by an earlier example: the random path stays
        return
    for name in case.path_parameters or {}:
        case.path_parameters[name] = value
    current = session.get(url + case.formatted_path, timeout=30)
    if current.headers.get("ETag"):
        case.headers = {**(case.headers or {}), "If-Match": current.headers["ETag"]}
    if isinstance(case.body, dict):
        for field, strategy in targets.body_fields(case.operation.path).items():
            case.body.setdefault(field, data.draw(strategy, label=field))
        if case.method.upper() == "PUT" and current.headers.get("Content-Type") == "application/json":
            for field, value in current.json().items():  # PUT replaces every field: the others as they are
                case.body.setdefault(field, value)


def fuzz_all(url: str, session, schema, methods, examples: int, targets: Targets | None = None,
             negative: bool = False) -> list[str]:
    """Fuzz each operation of `methods` (in that order); fail naming every operation that broke, and how."""
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = sorted((op for op in operations if op.method.upper() in methods),
                        key=lambda op: (methods.index(op.method.upper()), (*ORDER, first(op)).index(first(op))))
    checked, failed = [], {}
    for operation in operations:

        cases = st.tuples(operation.as_strategy(), st.booleans() if targets else st.just(False))
        if negative:  # bodies, parameters and headers the schema refuses: never aimed, which would mend them
            cases |= st.tuples(operation.as_strategy(schemathesis.GenerationMode.NEGATIVE), st.just(False))

        @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case_aimed=cases, data=st.data())
        def fuzz(case_aimed, data):
            case, aimed = case_aimed
            if aimed:
                aim(case, url, session, targets, data)
            response = case.call(base_url=url, session=session)
            case.validate_response(response, excluded_checks=EXCLUDED)

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis's FailureGroup: each operation's
            failed[operation.label] = exc
        checked.append(operation.label)
    assert not failed, "\n\n".join(f"{label}: {exc}" for label, exc in failed.items())
    return checked


def test_every_get_of_the_schema_answers_as_the_schema_says_and_never_5xx(panel):
    url, session, schema, _ = panel
    checked = fuzz_all(url, session, schema, ("GET",), EXAMPLES, negative=True)
    assert "GET /api/v1/clusters/" in checked and len(checked) >= 15, checked


def test_every_write_of_the_schema_answers_as_the_schema_says_and_never_5xx(panel):
    url, session, schema, targets = panel
    checked = fuzz_all(url, session, schema, WRITES, WRITE_EXAMPLES, targets, negative=True)
    for label in ("POST /api/v1/services/", "PUT /api/v1/real-servers/{id}/", "PATCH /api/v1/clusters/{name}/",
                  "DELETE /api/v1/services/{id}/", "POST /api/v1/clusters/{name}/apply/",
                  "POST /api/v1/clusters/{name}/ipvsadm/", "PUT /api/v1/services/{id}/check/",
                  "POST /api/v1/backups/{id}/restore/", "DELETE /api/v1/tokens/{id}/"):
        assert label in checked, checked
