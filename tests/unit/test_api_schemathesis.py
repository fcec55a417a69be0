"""Every GET of the API's own OpenAPI schema, fuzzed by schemathesis against the panel on a live server with an
admin's token: no 5xx, and every answer (status, content type, headers, body) is what the schema says.

Kept small (a few derandomized examples per operation) so the whole run stays well under a minute."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from lvsadmin.api import tokens
from lvsadmin.audit.log import Actor
from lvsadmin.core import services, users

EXAMPLES = 8


@pytest.fixture
def role_groups(transactional_db):
    """The role groups again: a transactional test flushes what the data migration made."""
    from django.contrib.auth.models import Group

    for role in users.ROLES:
        Group.objects.get_or_create(name=role)


@pytest.fixture
def panel(role_groups, live_server):
    actor = Actor.system("test")
    cluster = services.create_cluster(actor, name="web")
    services.create_balancer(actor, cluster, name="lb1", address="198.51.100.1")
    svc = services.create_service(actor, cluster, protocol="tcp", address="10.0.0.1", port=80, scheduler="wrr")
    services.create_real_server(actor, svc, address="192.0.2.11", port=80, weight=10)
    admin = users.create_user(actor, username="ada", password="correct horse battery", role="admin")
    _, text = tokens.create_token(actor, admin, name="fuzz", scopes=["read", "write", "apply", "admin"])
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {text}"
    # One request per connection, as the remote command makes: the live server's threads then share the test's
    # (in-memory SQLite) connection only as Django means them to.
    session.headers["Connection"] = "close"
    raw = session.get(f"{live_server.url}/api/v1/schema/?format=json", timeout=30)
    assert raw.status_code == 200
    return live_server.url, session, schemathesis.openapi.from_dict(raw.json())


def test_every_get_of_the_schema_answers_as_the_schema_says_and_never_5xx(panel):
    url, session, schema = panel
    checked, failed = [], {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() != "GET":
            continue

        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def fuzz(case):
            response = case.call(base_url=url, session=session)
            case.validate_response(response)

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis's FailureGroup: each operation's
            failed[operation.label] = exc
        checked.append(operation.label)
    assert not failed, "\n\n".join(f"{label}: {exc}" for label, exc in failed.items())
    assert "GET /api/v1/clusters/" in checked and len(checked) >= 15, checked
