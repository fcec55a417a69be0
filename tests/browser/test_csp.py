"""The pages pass their Content-Security-Policy and Permissions-Policy in a real browser: no violation at all.

Chromium fires a `securitypolicyviolation` event for every blocked script, style, handler or connection (and
logs it on the console); an init script, which Playwright runs outside the page's policy, reports each one.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

REPORTER = """document.addEventListener('securitypolicyviolation', e => window.cspViolation(
    [e.violatedDirective, e.blockedURI, e.sourceFile + ':' + e.lineNumber, e.sample].join(' ')));"""


@pytest.fixture
def violations(page):
    found = []
    page.expose_function("cspViolation", lambda text: found.append(f"{page.url}: {text}"))
    page.add_init_script(REPORTER)
    page.on("console", lambda msg: found.append(f"{page.url}: console: {msg.text}")
            if "Policy" in msg.text else None)
    return found


def visit(page, settled, url: str) -> None:
    page.goto(url)
    settled(page)
    page.wait_for_timeout(200)  # events are dispatched asynchronously


def test_the_main_pages_and_an_htmx_swap_cause_no_policy_violation(site, page, sign_in, settled, violations):
    from lvsadmin.core.models import VirtualService

    base = site["url"]
    visit(page, settled, f"{base}/login/")
    sign_in(page, base, "ada")
    service = VirtualService.objects.get(address="10.0.0.53")
    for path in ("/", "/clusters/web/", "/clusters/web/plan/", "/clusters/web/import/", "/clusters/web/console/",
                 f"/services/{service.pk}/", "/balancers/lb1/", "/balancers/lb1/backups/", "/audit/", "/users/",
                 "/users/new/", "/password/", "/clusters/web/edit/", "/no-such-page/"):
        visit(page, settled, base + path)
    # an htmx swap with its busy indicator: a form refused inline (422) is swapped in place
    visit(page, settled, f"{base}/users/new/")
    page.fill("#id_username", "x")
    page.press("#id_username", "Enter")
    page.wait_for_selector(".errorlist, .error")
    settled(page)
    assert violations == []


def test_a_violation_would_be_seen(site, page, settled, violations):
    # the check itself: an inline <style> element is refused by the policy, and reported here
    visit(page, settled, f"{site['url']}/login/")
    page.evaluate("document.head.appendChild(Object.assign(document.createElement('style'), {textContent: 'p{}'}))")
    page.wait_for_timeout(300)
    assert any("style-src" in v for v in violations), violations
