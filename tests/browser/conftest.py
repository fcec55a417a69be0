"""Browser tests: Debian's Chromium driven by Playwright against pytest-django's live server.

Never `playwright install`: the browser is /usr/bin/chromium. No agent runs: applying is accepted, audited and
queued through a patched `dispatch.send_reconcile` that records what would have been sent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import PASSWORD

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def chromium():
    """One browser per module, closed with it: later tests must not run beside Playwright's event loop."""
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium at /usr/bin/chromium")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=15_000)

    # Playwright's sync API keeps an event loop in this thread; the tests' own ORM calls are still synchronous.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 900}, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(30_000)  # generous: CI machines also run the IPVS VM
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


@pytest.fixture
def shot():
    SHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def sent(monkeypatch):
    """What applying would have sent to the agents (cluster id, trigger), instead of ringing Redis."""
    from lvsadmin.core import dispatch

    calls = []
    monkeypatch.setattr(dispatch, "send_reconcile",
                        lambda cluster_id, trigger="apply", balancers=None: calls.append((cluster_id, trigger)))
    return calls


@pytest.fixture
def people(transactional_db):
    """A viewer, an operator and an admin (the role groups again: a transactional test flushes them)."""
    from django.contrib.auth.models import Group

    from lvsadmin.audit.log import Actor
    from lvsadmin.core import users

    for role in users.ROLES:
        Group.objects.get_or_create(name=role)
    setup = Actor.system("setup")
    return {role: users.create_user(setup, username=name, password=PASSWORD, role=role)
            for role, name in (("viewer", "vera"), ("operator", "otto"), ("admin", "ada"))}


@pytest.fixture
def site(people, live_server):
    """A cluster `web` with two balancers that report now and then, and one service already there."""
    from django.utils import timezone

    from lvsadmin.audit.log import Actor
    from lvsadmin.core import services
    from lvsadmin.core.models import Balancer

    setup = Actor.system("setup")
    cluster = services.create_cluster(setup, name="web", description="front-end VIPs, active/backup pair")
    lb1 = services.create_balancer(setup, cluster, name="lb1", address="198.51.100.1")
    services.create_balancer(setup, cluster, name="lb2", address="198.51.100.2")
    dns = services.create_service(setup, cluster, protocol="udp", address="10.0.0.53", port=53, scheduler="rr",
                                  name="resolver")
    services.create_real_server(setup, dns, address="192.0.2.53", port=53, weight=1)
    cluster.refresh_from_db()
    Balancer.objects.filter(pk=lb1.pk).update(
        last_seen=timezone.now(), status="in_sync", applied_revision=cluster.desired_revision,
        status_detail=f"revision {cluster.desired_revision} applied",
        facts={"kernel_release": "6.1.0-56-amd64", "ipvs_version": "1.2.1", "conn_tab_size": 4096,
               "schedulers": ["rr", "wrr", "lc", "wlc", "sh", "mh"]})
    return {"url": live_server.url, "cluster": cluster}


@pytest.fixture
def sign_in():
    def go(page, base: str, username: str, password: str = PASSWORD):
        page.goto(f"{base}/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.press("#id_password", "Enter")  # forms submit with Enter
        page.wait_for_url(f"{base}/")

    return go


@pytest.fixture
def settled():
    return wait_settled


def wait_settled(page) -> None:
    """Wait until the page is loaded, its autofocus has happened and htmx has finished swapping and settling.

    htmx settles a swapped form in two steps: the new inputs first carry the old ones' attributes, and get their
    own a moment later (its settle delay). Typing into a field inside that moment can be undone by the second
    step; a person cannot type that fast, a test can.
    """
    page.wait_for_load_state("load")
    page.wait_for_function("""() => {
        if (document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling, .htmx-added')) return false;
        const auto = document.querySelector('[autofocus]');
        return !auto || document.activeElement === auto || document.activeElement !== document.body;
    }""")
