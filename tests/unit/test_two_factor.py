"""Two-factor sign-in: setting up an authenticator, the code step after the password, recovery codes used once,
required for admins (or everyone), turning it off; each audited, wrong codes counted towards the lock-out."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from lvsadmin.audit.log import Actor
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import two_factor
from tests.helpers import PASSWORD, client_for, htmx

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def production_rule(settings):
    settings.TWO_FACTOR_REQUIRED = "admins"  # tests/settings.py turns it off for the rest of the suite


class Clock:
    """The time the authenticator and django-otp's TOTP check both see; a code is good once, so a test that signs
    in twice waits for the next 30-second step: `clock.tick()`."""

    def __init__(self):
        self.now = time.time()

    def time(self) -> float:
        return self.now

    def tick(self, seconds: float = 30) -> None:
        self.now += seconds


CLOCK = Clock()


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    from django_otp.plugins.otp_totp import models

    CLOCK.now = time.time()
    monkeypatch.setattr(models, "time", CLOCK)
    return CLOCK


def code(device: TOTPDevice, *, wait: bool = True) -> str:
    """What the authenticator app shows, by default at its next 30-second step (each code is good only once)."""
    if wait:
        CLOCK.tick()
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = CLOCK.time()
    return f"{totp.token():0{device.digits}d}"


def enrol(user) -> tuple[TOTPDevice, list[str]]:
    device = two_factor.start_enrolment(user)
    return two_factor.confirm_enrolment(Actor.for_user(user), user, code(device))


def sign_in(client, username: str, password: str = PASSWORD):
    return client.post("/login/", {"username": username, "password": password})


def test_an_admin_without_an_authenticator_is_sent_to_set_one_up_before_anything_else(client, admin):
    assert sign_in(client, "ada").status_code == 302
    for url in ("/", "/users/", "/audit/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"] == "/account/two-factor/", url
    assert client.get("/", **htmx("main")).headers["HX-Redirect"] == "/account/two-factor/"
    assert client.post("/users/new/", {"username": "eve"}).status_code == 302  # no write either
    page = client.get("/account/two-factor/")
    assert page.status_code == 200 and b"Your account requires it" in page.content
    assert client.post("/logout/").status_code == 302  # and leaving is allowed


def test_others_may_go_without_unless_everyone_must(client, viewer, settings):
    sign_in(client, "vera")
    assert client.get("/").status_code == 200
    settings.TWO_FACTOR_REQUIRED = "all"
    assert client.get("/")["Location"] == "/account/two-factor/"


def test_setting_up_shows_a_qr_code_and_the_secret_and_a_code_from_the_app_turns_it_on(client, admin):
    sign_in(client, "ada")
    page = client.post("/account/two-factor/", {"action": "start"})
    html = page.content.decode()
    assert page.status_code == 200 and "<svg" in html and "data:" not in html
    device = TOTPDevice.objects.get(user=admin, confirmed=False)
    shown = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', html).group(1).replace(" ", "")
    assert shown == two_factor.base32_secret(device)

    wrong = client.post("/account/two-factor/", {"action": "confirm", "code": "000000"})
    assert wrong.status_code == 422 and b"That code is not right" in wrong.content and b"<svg" in wrong.content
    assert not two_factor.enabled(admin)

    done = client.post("/account/two-factor/", {"action": "confirm", "code": code(device)})
    codes = re.findall(r"<li><code>([a-z2-7-]+)</code></li>", done.content.decode())
    assert done.status_code == 200 and len(codes) == 10 and done["Cache-Control"] == "no-store"
    assert two_factor.enabled(admin)
    assert client.get("/").status_code == 200  # this session showed the code: it goes on
    rec = ChangeRecord.objects.filter(action="update", object_type="user").latest("id")
    assert rec.before["two_factor"] == "off" and rec.after == {"two_factor": "on", "recovery_codes": 10}


def test_recovery_codes_are_not_stored_as_shown(admin):
    _, codes = enrol(admin)
    stored = set(StaticToken.objects.filter(device__user=admin).values_list("token", flat=True))
    assert len(stored) == 10 and not stored & {c.replace("-", "") for c in codes} and not stored & set(codes)


def test_signing_in_asks_for_the_code_after_the_password_and_a_wrong_one_is_refused_and_audited(client, admin):
    device, _ = enrol(admin)
    response = sign_in(client, "ada")
    assert response.status_code == 302 and response["Location"] == "/login/code/"
    assert client.get("/").status_code == 302 and client.get("/")["Location"].startswith("/login/")  # not yet

    wrong = client.post("/login/code/", {"code": "123456" if code(device, wait=False) != "123456" else "654321"})
    assert wrong.status_code == 422 and b"That code is not right" in wrong.content
    failed = ChangeRecord.objects.get(action="login_failed")
    assert failed.username == "ada" and failed.after["reason"] == "wrong two-factor code"
    assert not ChangeRecord.objects.filter(action="login").exists()

    let_the_back_off_pass()
    right = client.post("/login/code/", {"code": code(device)})
    assert right.status_code == 302 and right["Location"] == "/"
    assert client.get("/").status_code == 200
    login = ChangeRecord.objects.get(action="login")
    assert login.username == "ada" and login.after["second_factor"] == "authenticator"
    assert login.after["backend"] == "local"


def test_a_code_is_good_only_once(client, admin):
    device, _ = enrol(admin)
    used = code(device)
    sign_in(client, "ada")
    assert client.post("/login/code/", {"code": used}).status_code == 302
    other = client_for(None)
    sign_in(other, "ada")
    assert other.post("/login/code/", {"code": used}).status_code == 422


def test_the_code_step_goes_back_to_the_page_asked_for_but_never_off_site(client, admin):
    device, _ = enrol(admin)
    client.post("/login/?next=/audit/", {"username": "ada", "password": PASSWORD, "next": "/audit/"})
    assert client.post("/login/code/", {"code": code(device)})["Location"] == "/audit/"
    other = client_for(None)
    other.post("/login/", {"username": "ada", "password": PASSWORD, "next": "https://evil.example/"})
    assert other.post("/login/code/", {"code": code(device)})["Location"] == "/"


def test_a_recovery_code_signs_in_once_only(client, admin):
    _, codes = enrol(admin)
    sign_in(client, "ada")
    response = client.post("/login/code/", {"code": codes[3].upper()})  # case and dashes do not matter
    assert response.status_code == 302
    assert ChangeRecord.objects.get(action="login").after["second_factor"] == "recovery code"
    assert two_factor.recovery_codes_left(admin) == 9
    client.post("/logout/")

    sign_in(client, "ada")
    again = client.post("/login/code/", {"code": codes[3]})
    assert again.status_code == 422
    assert client.get("/")["Location"].startswith("/login/")


def test_wrong_codes_count_towards_the_lock_out_and_the_right_code_then_waits_too(client, admin):
    device, _ = enrol(admin)
    sign_in(client, "ada")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        let_the_back_off_pass()
        response = client.post("/login/code/", {"code": "not-a-code"})
    assert response.status_code == 429 and b"Too many failed sign-ins" in response.content
    assert "locked out after" in ChangeRecord.objects.filter(action="login_failed").latest("id").after["reason"]
    assert sign_in(client, "ada").status_code == 429  # the password alone is locked out too
    assert client.post("/login/code/", {"code": code(device)}).status_code == 302  # no code step left
    assert client.get("/")["Location"].startswith("/login/")


def let_the_back_off_pass() -> None:
    """As if the person took longer to retype than django-otp's back-off after a wrong code (1, 2, 4 … s)."""
    long_ago = timezone.now() - timedelta(hours=1)
    for model in (TOTPDevice, StaticDevice):
        model.objects.filter(throttling_failure_count__gt=0).update(throttling_failure_timestamp=long_ago)


def test_a_code_typed_again_within_the_back_off_is_told_to_wait_and_not_counted_as_a_failure(client, admin):
    device, _ = enrol(admin)
    sign_in(client, "ada")
    client.post("/login/code/", {"code": "000000" if code(device, wait=False) != "000000" else "111111"})
    response = client.post("/login/code/", {"code": code(device)})  # the right one, but within the second
    assert response.status_code == 422 and b"Wrong codes in a row: wait 1 second" in response.content
    assert ChangeRecord.objects.filter(action="login_failed").count() == 1
    assert AccessAttempt.objects.get().failures_since_start == 1
    let_the_back_off_pass()
    assert client.post("/login/code/", {"code": code(device, wait=False)}).status_code == 302


def test_the_code_step_expires(client, admin, settings):
    device, _ = enrol(admin)
    settings.TWO_FACTOR_CODE_SECONDS = -1
    sign_in(client, "ada")
    response = client.post("/login/code/", {"code": code(device)})
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert client.get("/")["Location"].startswith("/login/")


def test_regenerating_recovery_codes_needs_a_code_and_the_old_ones_stop_working(client, admin):
    device, old = enrol(admin)
    sign_in(client, "ada")
    client.post("/login/code/", {"code": code(device)})
    refused = client.post("/account/two-factor/", {"action": "regenerate", "code": "000000"})
    assert refused.status_code == 422 and b"That code is not right" in refused.content
    let_the_back_off_pass()
    page = client.post("/account/two-factor/", {"action": "regenerate", "code": code(device)})
    new = re.findall(r"<li><code>([a-z2-7-]+)</code></li>", page.content.decode())
    assert len(new) == 10 and not set(new) & set(old)
    assert two_factor.verify(admin, new[0]) is not None and two_factor.verify(admin, old[0]) is None
    assert ChangeRecord.objects.filter(action="update", after__recovery_codes_regenerated=True).count() == 1


def test_turning_it_off_needs_a_current_code_is_audited_and_an_admin_must_set_it_up_again(client, admin):
    device, _ = enrol(admin)
    sign_in(client, "ada")
    client.post("/login/code/", {"code": code(device)})
    assert client.post("/account/two-factor/", {"action": "disable", "code": ""}).status_code == 422
    assert two_factor.enabled(admin)
    response = client.post("/account/two-factor/", {"action": "disable", "code": code(device)})
    assert response.status_code == 302 and not two_factor.enabled(admin)
    assert two_factor.recovery_codes_left(admin) == 0
    rec = ChangeRecord.objects.filter(action="update", object_type="user").latest("id")
    assert rec.before["two_factor"] == "on" and rec.after == {"two_factor": "off", "recovery_codes": 0}
    assert client.get("/")["Location"] == "/account/two-factor/"


def test_an_optional_user_signs_in_with_a_code_once_they_set_one_up(client, viewer):
    device, _ = enrol(viewer)
    assert sign_in(client, "vera")["Location"] == "/login/code/"
    assert client.post("/login/code/", {"code": code(device)}).status_code == 302
    assert client.get("/").status_code == 200


def test_an_admin_session_not_verified_by_the_authenticator_they_have_is_ended(admin):
    enrol(admin)
    old_session = client_for(admin)  # signed in before the authenticator (as force_login does)
    response = old_session.get("/")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert old_session.get("/account/two-factor/").status_code == 302  # signed out now


def test_the_code_step_without_a_password_first_goes_back_to_sign_in(client):
    assert client.get("/login/code/")["Location"] == "/login/"
    assert client.post("/login/code/", {"code": "123456"})["Location"] == "/login/"


def test_an_administrator_can_reset_a_user_who_lost_both_authenticator_and_codes(admin):
    from io import StringIO

    from django.core.management import call_command

    enrol(admin)
    out = StringIO()
    call_command("two_factor_reset", "ada", stdout=out)
    assert "turned off" in out.getvalue() and "must set it up again" in out.getvalue()
    assert not two_factor.enabled(admin) and two_factor.recovery_codes_left(admin) == 0
    rec = ChangeRecord.objects.filter(action="update", object_type="user").latest("id")
    assert rec.username == "manage.py two_factor_reset" and rec.after["two_factor"] == "off"
