"""Item 3 of issue 15: enrolment an operator can follow. A one-time token (balancer page, `manage.py enrol`) that
the agent (`python -m lvsadmin.agent.enrol`, run by scripts/run-agent) exchanges for the panel's public key,
registering its own."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from lvsadmin import signing
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import services, trust
from lvsadmin.core.models import Balancer

AGENT = signing.Signer(signing.generate())


@pytest.fixture
def balancer(cluster, actor):
    return services.create_balancer(actor, cluster, name="lb1")


def post(client, **data):
    return client.post(reverse("enrol"), json.dumps(data), content_type="application/json")


def test_a_token_enrols_the_agent_once_and_answers_the_panels_key(balancer, actor, client):
    token = services.issue_enrolment_token(actor, balancer)
    assert Balancer.objects.get(pk=balancer.pk).enrol_token_hash != token  # only its hash is kept
    response = post(client, balancer="lb1", token=token, public_key=signing.public_text(AGENT.public))
    assert response.status_code == 200
    assert response.json() == {"balancer": "lb1", "fingerprint": AGENT.fingerprint,
                               "panel_public_key": trust.panel_public_key()}
    b = Balancer.objects.get(pk=balancer.pk)
    assert b.key_fingerprint == AGENT.fingerprint and b.enrol_token_hash == ""
    rec = ChangeRecord.objects.filter(object_id=b.pk, comment="agent key enrolled with a one-time token").get()
    assert rec.username == "enrolment:lb1"
    again = post(client, balancer="lb1", token=token, public_key=signing.public_text(signing.generate().public_key()))
    assert again.status_code == 403 and "used or expired" in again.json()["error"]
    assert Balancer.objects.get(pk=balancer.pk).key_fingerprint == AGENT.fingerprint


@pytest.mark.parametrize("case", ["wrong token", "other balancer", "expired", "bad key", "not json", "no token"])
def test_an_enrolment_that_is_not_right_changes_nothing(balancer, cluster, actor, client, case):
    services.create_balancer(actor, cluster, name="lb2")
    token = services.issue_enrolment_token(actor, balancer)
    if case == "expired":
        Balancer.objects.filter(pk=balancer.pk).update(enrol_token_expires=timezone.now() - timedelta(seconds=1))
    key = signing.public_text(AGENT.public)
    response = {
        "wrong token": lambda: post(client, balancer="lb1", token=token + "x", public_key=key),
        "other balancer": lambda: post(client, balancer="lb2", token=token, public_key=key),
        "expired": lambda: post(client, balancer="lb1", token=token, public_key=key),
        "bad key": lambda: post(client, balancer="lb1", token=token, public_key="ssh-ed25519 AAAA"),
        "not json": lambda: client.post(reverse("enrol"), {"balancer": "lb1"}),
        "no token": lambda: post(client, balancer="lb1", public_key=key),
    }[case]()
    assert response.status_code in (400, 403) and response.json()["error"]
    assert Balancer.objects.filter(public_key="").count() == 2


def test_manage_py_enrol_prints_a_token_that_works(balancer, client):
    out, err = io.StringIO(), io.StringIO()
    call_command("enrol", "lb1", "--panel-url", "https://panel.example", stdout=out, stderr=err)
    token = out.getvalue().strip()
    assert f"LVSADMIN_ENROL_TOKEN={token} scripts/run-agent lb1" in err.getvalue()
    assert post(client, balancer="lb1", token=token, public_key=signing.public_text(AGENT.public)).status_code == 200


def test_the_balancer_page_issues_a_token_shown_once(balancer, group_admin_client):
    page = group_admin_client.get(reverse("balancer", args=["lb1"]))
    assert b"Enrolment token" in page.content
    response = group_admin_client.post(reverse("enrolment_token", args=["lb1"]))
    assert response.status_code == 200 and b"LVSADMIN_ENROL_TOKEN=" in response.content
    assert ChangeRecord.objects.filter(comment="enrolment token issued").exists()


@pytest.mark.django_db(transaction=True)
def test_the_agents_enrol_command_registers_its_key_and_keeps_the_panels(live_server, tmp_path):
    from lvsadmin.agent import enrol
    from lvsadmin.audit.log import Actor

    cluster = services.create_cluster(Actor.system("t"), name="web")
    balancer = services.create_balancer(Actor.system("t"), cluster, name="lb1")
    token = services.issue_enrolment_token(Actor.system("t"), balancer)
    key, panel_key = tmp_path / "agent_ed25519", tmp_path / "panel_ed25519.pub"
    status = enrol.main(["--panel", live_server.url, "--balancer", "lb1", "--token", token, "--key", str(key),
                         "--panel-key", str(panel_key)])
    assert status == 0 and key.exists()
    assert panel_key.read_text().strip() == trust.panel_public_key()
    assert Balancer.objects.get(name="lb1").key_fingerprint == signing.fingerprint(signing.load_private_key(key))
    assert enrol.main(["--panel", live_server.url, "--balancer", "lb1", "--token", token, "--key", str(key),
                       "--panel-key", str(panel_key)]) == 1  # once only
