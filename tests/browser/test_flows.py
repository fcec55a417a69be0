"""The main flows, as a user walks them in a real browser."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

SAVE_WITH_ERROR = """-A -t 10.0.0.80:80 -s wrr
-a -t 10.0.0.80:80 -r 192.0.2.81:80 -g -w 1
-A -t 10.0.0.443:443 -s rr
"""
SAVE = """-A -u 10.0.0.53:53 -s rr
-a -u 10.0.0.53:53 -r 192.0.2.53:53 -g -w 1
-A -t 10.0.0.80:80 -s wrr
-a -t 10.0.0.80:80 -r 192.0.2.81:80 -g -w 1
-a -t 10.0.0.80:80 -r 192.0.2.82:80 -g -w 2
"""


def test_an_operator_adds_a_service_and_servers_reviews_the_plan_applies_and_finds_it_audited(
        site, page, sign_in, shot, sent, settled):
    from lvsadmin.audit.models import ChangeRecord
    from lvsadmin.core.models import RealServer, ServiceSample, VirtualService

    base = site["url"]
    sign_in(page, base, "otto")
    expect(page.locator("h1")).to_have_text("Dashboard")
    expect(page.locator("text=in sync").first).to_be_visible()
    shot(page, "dashboard")

    # A service: a bad address first, the error appears next to the field without a page load.
    page.click("text=web")
    page.click("text=Add service")
    settled(page)
    page.fill("#id_address", "10.0.0.300")
    page.fill("#id_port", "80")
    page.select_option("#id_scheduler", "wrr")
    page.fill("#id_name", "http")
    page.click("button:has-text('Add service')")
    error = page.locator("#f-address .error")
    expect(error).to_contain_text("is not an IPv4 or IPv6 address")
    expect(page.locator("#id_address")).to_have_attribute("aria-invalid", "true")
    settled(page)
    page.fill("#id_address", "10.0.0.1")
    page.press("#id_address", "Enter")
    page.wait_for_url(re.compile(r"/services/\d+/$"))
    expect(page.locator("h1")).to_contain_text("TCP 10.0.0.1:80")
    svc = VirtualService.objects.get(address="10.0.0.1")

    # Two real servers; the second with a port the service forbids, then fixed.
    page.click("text=Add real server")
    settled(page)
    page.fill("#id_address", "192.0.2.11")
    page.fill("#id_weight", "10")
    page.click("button:has-text('Add real server')")
    page.wait_for_url(f"{base}/services/{svc.pk}/")
    page.click("text=Add real server")
    settled(page)
    page.fill("#id_address", "192.0.2.12")
    page.fill("#id_port", "8080")
    page.click("button:has-text('Add real server')")
    expect(page.locator("#f-port .error")).to_contain_text("the service's port (80)")
    settled(page)
    page.fill("#id_port", "")
    page.click("button:has-text('Add real server')")
    page.wait_for_url(f"{base}/services/{svc.pk}/")
    expect(page.locator("tbody tr[id^=rs-]")).to_have_count(2)

    # Weight in place: type and press Enter; the row is swapped, not the page.
    rs2 = RealServer.objects.get(address="192.0.2.12")
    weight = page.locator(f"#rs-{rs2.pk} input[name=weight]")
    weight.fill("70000")
    weight.press("Enter")
    expect(page.locator(f"#rs-{rs2.pk} .error")).to_contain_text("65535")
    page.locator(f"#rs-{rs2.pk} input[name=weight]").fill("5")
    page.locator(f"#rs-{rs2.pk} input[name=weight]").press("Enter")
    expect(page.locator(f"#rs-{rs2.pk} .error")).to_have_count(0)
    assert RealServer.objects.get(pk=rs2.pk).weight == 5

    # Drain the first one: the browser asks first.
    rs1 = RealServer.objects.get(address="192.0.2.11")
    dialogs = []
    page.once("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    page.click(f"#rs-{rs1.pk} button:has-text('Drain')")
    expect(page.locator(f"#rs-{rs1.pk}")).to_have_class(re.compile("state-draining"))
    assert dialogs and dialogs[0].startswith("Drain 192.0.2.11:80?")
    assert RealServer.objects.get(pk=rs1.pk).state == "draining"

    # Live counters, as if lb1 had reported.
    lb1 = site["cluster"].balancers.get(name="lb1")
    from django.utils import timezone

    ServiceSample.objects.create(balancer=lb1, service_key=svc.key_text, sampled_at=timezone.now(), data={
        "active_conns": 12, "inactive_conns": 30, "cps": 4, "inbps": 1200, "outbps": 56000,
        "dests": {"192.0.2.11|80": {"active_conns": 2, "inactive_conns": 10},
                  "192.0.2.12|80": {"active_conns": 10, "inactive_conns": 20, "cps": 4}}})
    page.reload()
    expect(page.locator("#svc-counters")).to_contain_text("12")
    shot(page, "service")

    page.goto(f"{base}/clusters/web/")
    expect(page.locator(f"#ca{svc.pk}")).to_have_text("12")
    shot(page, "cluster")

    # The plan: what applying would change on each balancer; apply it.
    page.click("text=Plan & apply")
    expect(page.locator("h1")).to_contain_text("Plan for cluster web")
    expect(page.locator("#plan")).to_contain_text("add service")
    expect(page.locator("#plan")).to_contain_text("TCP 10.0.0.1:80 → 192.0.2.12:80")
    shot(page, "plan")
    page.once("dialog", lambda d: d.accept())
    page.click("button:has-text('Apply revision')")
    expect(page.locator(".msg-success")).to_contain_text("sent to 2 balancers")
    assert sent == [(site["cluster"].pk, "apply")]
    assert ChangeRecord.objects.filter(action="apply", username="otto").count() == 1

    # The audit log: every step, with its diff.
    page.click("text=Audit log")
    records = page.locator("#records")
    expect(records).to_contain_text("apply")
    row = records.locator("tr", has_text="192.0.2.12:80").filter(has_text="update").first
    expect(row.locator("del")).to_have_text("1")
    expect(row.locator("ins")).to_have_text("5")
    expect(records.locator("tr", has_text="draining").first).to_be_visible()
    shot(page, "audit")


def test_a_plan_computed_before_a_newer_edit_is_refused_and_the_page_says_so(site, page, sign_in, sent):
    from lvsadmin.audit.log import Actor
    from lvsadmin.core import services
    from lvsadmin.core.models import RealServer

    base = site["url"]
    sign_in(page, base, "otto")
    page.goto(f"{base}/clusters/web/plan/")
    reviewed = site["cluster"].desired_revision
    expect(page.locator("button:has-text('Apply revision')")).to_have_text(f"Apply revision {reviewed}")
    services.update_real_server(Actor(username="someone"), RealServer.objects.get(address="192.0.2.53"), weight=9)
    page.once("dialog", lambda d: d.accept())
    with page.expect_response(lambda r: r.url.endswith("/plan/") and r.request.method == "POST") as info:
        page.click("button:has-text('Apply revision')")
    assert info.value.status == 409
    expect(page.locator("#plan .callout.bad")).to_contain_text("the desired state changed since this plan")
    expect(page.locator("button:has-text('Apply revision')")).to_have_text(f"Apply revision {reviewed + 1}")
    assert sent == []


def test_an_import_with_an_error_names_the_line_then_a_correct_one_is_confirmed(site, page, sign_in, shot, settled):
    from lvsadmin.audit.models import ChangeRecord
    from lvsadmin.core.models import VirtualService

    base = site["url"]
    sign_in(page, base, "otto")
    page.goto(f"{base}/clusters/web/")
    page.click("text=Import")
    settled(page)
    page.fill("#id_text", SAVE_WITH_ERROR)
    page.click("button:has-text('Preview')")
    expect(page.locator("#f-text .error")).to_contain_text("line 3:")
    assert not VirtualService.objects.filter(address="10.0.0.80").exists()

    settled(page)
    page.fill("#id_text", SAVE)
    page.click("button:has-text('Preview')")
    expect(page.locator("#result")).to_contain_text("1 service created, 2 real servers created")
    shot(page, "import")
    page.once("dialog", lambda d: d.accept())
    page.click("button:has-text('Import:')")
    page.wait_for_url(f"{base}/clusters/web/plan/")
    expect(page.locator(".msg-success")).to_contain_text("Import: 1 service created")
    assert VirtualService.objects.get(address="10.0.0.80").real_servers.count() == 2
    assert ChangeRecord.objects.filter(action="import", username="otto").count() == 1


def test_the_ipvsadm_console_previews_and_commits_commands(site, page, sign_in):
    from lvsadmin.core.models import RealServer

    base = site["url"]
    sign_in(page, base, "otto")
    page.goto(f"{base}/clusters/web/console/")
    page.fill("#id_text", "-a -u 10.0.0.53:53 -r 192.0.2.54:53 -g -w 3")
    page.click("button:has-text('Preview')")
    expect(page.locator("#result")).to_contain_text("1 real server created")
    page.click("button:has-text('Commit')")
    page.wait_for_url(f"{base}/clusters/web/plan/")
    assert RealServer.objects.get(address="192.0.2.54").weight == 3


def test_a_viewer_finds_no_editing_control_and_every_unsafe_url_refused(site, page, sign_in):
    from django.urls import URLPattern, get_resolver

    from lvsadmin.core.models import RealServer, VirtualService

    base = site["url"]
    sign_in(page, base, "vera")
    svc = VirtualService.objects.get(address="10.0.0.53")
    rs = RealServer.objects.get(address="192.0.2.53")
    pages = ["/", "/clusters/web/", f"/services/{svc.pk}/", "/balancers/lb1/", "/clusters/web/plan/",
             "/audit/", "/clusters/web/ipvsadm/"]
    controls = ["a[href$='/services/new/']", "a[href$='/servers/new/']", "a[href$='/edit/']", "a[href$='/delete/']",
                "input[name=weight]", "button:text-is('Drain')", "button:text-is('Disable')",
                "button:has-text('Apply revision')", "a[href$='/import/']", "a[href$='/console/']",
                "a[href$='/settings/']", "a[href$='/balancers/new/']", "a[href='/clusters/new/']", "a[href='/users/']",
                "main form[method=post]"]
    for path in pages:
        page.goto(base + path)
        expect(page.locator("main")).to_be_visible()
        for control in controls:
            expect(page.locator(control), f"{control} on {path}").to_have_count(0)

    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    objects = {"<slug:name>": "web", "<int:pk>": None}
    refused = 0
    for pattern in get_resolver().url_patterns:
        if str(pattern.pattern) == "api/":
            continue  # the REST API takes tokens, not the browser's session (tests/unit/test_api_access.py)
        for p in getattr(pattern, "url_patterns", [pattern]):
            if not isinstance(p, URLPattern) or p.callback.lvs_policy.get("public"):
                continue
            route = "/" + str(p.pattern)
            pk = {"/services/": svc.pk, "/servers/": rs.pk, "/users/": 1, "/backups/": 1, "/tokens/": 1}.get(
                route[: route.find("/", 1) + 1])
            url = route.replace("<slug:name>", "lb1" if route.startswith("/balancers/") else objects["<slug:name>"])
            url = url.replace("<int:pk>", str(pk))
            if p.callback.lvs_policy["write"] is None and p.callback.lvs_policy["read"] in ("viewer", "signed_in"):
                continue  # read-only for everyone: no unsafe method at all (405)
            if p.callback.lvs_policy["write"] in ("signed_in", "viewer"):
                continue  # one's own password, two-factor and API tokens (scoped to one's role)
            response = page.request.post(base + url, headers={"X-CSRFToken": token, "HX-Request": "true"},
                                         form={"weight": "1", "state": "disabled"})
            assert response.status == 403, url
            refused += 1
    assert refused >= 15
    assert RealServer.objects.get(pk=rs.pk).state == "active"
    assert page.request.get(f"{base}/users/").status == 403
