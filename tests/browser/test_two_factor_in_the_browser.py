"""Two-factor sign-in in a real browser: an admin is sent to set it up, scans (reads) the secret, confirms, keeps the
recovery codes, then signs in with password and code; the QR code passes the Content-Security-Policy."""

from __future__ import annotations

import base64
import time

import pytest
from playwright.sync_api import expect

from tests.helpers import PASSWORD

pytestmark = pytest.mark.browser

REPORTER = """document.addEventListener('securitypolicyviolation', e => window.cspViolation(
    [e.violatedDirective, e.blockedURI].join(' ')));"""


class Clock:
    """The time django-otp checks codes at (the live server runs in this process) and the "app" makes them at:
    each code is good once, so the next sign-in's code is the next 30-second step's, without waiting for it."""

    def __init__(self):
        self.now = time.time()

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch, settings):
    from django_otp.plugins.otp_totp import models

    settings.TWO_FACTOR_REQUIRED = "admins"  # tests/settings.py turns it off for the other browser tests
    clock = Clock()
    monkeypatch.setattr(models, "time", clock)
    return clock


def app_code(secret: str, clock: Clock) -> str:
    """What an authenticator app shows for the secret the page printed (base32, in groups of four)."""
    from django_otp.oath import TOTP

    key = secret.replace(" ", "")
    totp = TOTP(base64.b32decode(key + "=" * (-len(key) % 8)))
    totp.time = clock.time()
    return f"{totp.token():06d}"


def test_an_admin_sets_up_an_authenticator_then_signs_in_with_password_and_code(site, page, settled, shot, clock):
    base = site["url"]
    violations = []
    page.expose_function("cspViolation", lambda text: violations.append(text))
    page.add_init_script(REPORTER)

    page.goto(f"{base}/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    page.wait_for_url(f"{base}/account/two-factor/")  # before anything else
    expect(page.locator("#two-factor-state")).to_contain_text("Your account requires it")
    page.goto(f"{base}/audit/")
    page.wait_for_url(f"{base}/account/two-factor/")

    page.get_by_role("button", name="Set up two-factor sign-in").click()
    expect(page.locator("figure.qr svg")).to_be_visible()
    assert page.locator("figure.qr svg").bounding_box()["width"] > 100
    secret = page.locator("#totp-secret").inner_text()
    shot(page, "two-factor-enrol")
    page.fill("#id_code", app_code(secret, clock))
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    recovery = page.locator("#recovery-codes li").first.inner_text()
    page.get_by_role("link", name="Go on to the dashboard").click()
    page.wait_for_url(f"{base}/")
    settled(page)

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{base}/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    page.wait_for_url(f"{base}/login/code/")
    page.fill("#id_code", "000000" if app_code(secret, clock) != "000000" else "111111")
    page.press("#id_code", "Enter")
    expect(page.locator("#f-code .error")).to_contain_text("That code is not right")
    clock.now += 30  # the app's next code
    page.wait_for_timeout(1100)  # a person retypes slower than django-otp's back-off after a wrong code (1 s)
    page.fill("#id_code", app_code(secret, clock))
    page.press("#id_code", "Enter")
    page.wait_for_url(f"{base}/")
    expect(page.locator(".who .user")).to_have_text("ada")

    # a recovery code instead of the app, once
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{base}/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    page.wait_for_url(f"{base}/login/code/")
    page.fill("#id_code", recovery)
    page.press("#id_code", "Enter")
    page.wait_for_url(f"{base}/")
    expect(page.locator("#messages")).to_contain_text("recovery code")
    page.wait_for_timeout(200)
    assert violations == []
