"""Live refresh, keyboard use and the look of the pages, in the browser."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_the_counters_refresh_themselves_every_five_seconds(site, page, sign_in):
    from django.utils import timezone

    from lvsadmin.core.models import ServiceSample, VirtualService

    base = site["url"]
    sign_in(page, base, "vera")
    svc = VirtualService.objects.get(address="10.0.0.53")
    lb1 = site["cluster"].balancers.get(name="lb1")
    page.goto(f"{base}/clusters/web/")
    expect(page.locator(f"#ca{svc.pk}")).to_have_text("0")
    ServiceSample.objects.create(balancer=lb1, service_key=svc.key_text, sampled_at=timezone.now(),
                                 data={"active_conns": 321, "inactive_conns": 5, "cps": 7})
    with page.expect_request(lambda r: r.headers.get("x-poll") == "1", timeout=8000):
        pass
    expect(page.locator(f"#ca{svc.pk}")).to_have_text("321", timeout=8000)
    expect(page.locator("#counters")).to_contain_text("321")


def test_the_keyboard_reaches_the_page_with_a_visible_focus(site, page, sign_in):
    base = site["url"]
    page.goto(f"{base}/login/")
    expect(page.locator("#id_username")).to_be_focused()  # the sign-in form starts in the user name
    page.keyboard.type("otto")
    page.keyboard.press("Tab")
    page.keyboard.type("correct horse battery")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/")
    page.keyboard.press("Tab")
    skip = page.locator("a.skip")
    expect(skip).to_be_focused()
    outline = skip.evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('main') !== null")
