"""Signing in and out, throttling, sessions, production settings, passwords, users and roles."""

from __future__ import annotations

import os
import re
import runpy
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from lvsadmin.audit.models import ChangeRecord
from lvsadmin.web.roles import role_of
from tests.helpers import PASSWORD, client_for, form_version, make_user, version_in

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def sign_in(client, username, password=PASSWORD):
    return client.post("/login/", {"username": username, "password": password})


def edit_user(client, user, **fields):
    """POST the user's edit form as a person would: loaded first, so it carries whatever the page put in it."""
    page = client.get(f"/users/{user.pk}/").content.decode()
    data = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))
    data.pop("csrfmiddlewaretoken", None)
    data.update(fields)
    return client.post(f"/users/{user.pk}/", data)


def test_signing_in_lands_on_the_dashboard_and_is_audited(client, operator):
    response = sign_in(client, "otto")
    assert response.status_code == 302 and response["Location"] == "/"
    rec = ChangeRecord.objects.get(action="login")
    assert rec.username == "otto" and rec.object_type == "user" and rec.after["address"] == "127.0.0.1"
    assert client.get("/").status_code == 200


def test_a_failed_sign_in_is_refused_inline_and_writes_no_audit_record(client, operator):
    # anyone can fail to sign in: the log records lock-outs, not every miss
    records = ChangeRecord.objects.count()
    response = sign_in(client, "otto", "wrong password")
    assert response.status_code == 422 and b"Wrong user name or password" in response.content
    response = sign_in(client, "nobody-at-all", "wrong password")
    assert response.status_code == 422
    assert ChangeRecord.objects.count() == records


def test_signing_out_is_audited_and_ends_the_session(client, operator):
    sign_in(client, "otto")
    response = client.post("/logout/")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert ChangeRecord.objects.filter(action="logout", username="otto").count() == 1
    assert client.get("/").status_code == 302


def test_repeated_failures_lock_the_account_for_that_address_and_the_lock_out_is_audited_once(client, operator):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "otto", "wrong password")
    response = sign_in(client, "otto")  # even the right password, now
    assert response.status_code == 429 and b"Too many failed sign-ins" in response.content
    assert b"locked for 15 minutes more" in response.content  # the cool-off is 0.25 hours
    assert client.get("/").status_code == 302
    rec = ChangeRecord.objects.get(action="login_failed")
    assert rec.username == "otto" and rec.after["reason"] == f"locked out after {settings.AXES_FAILURE_LIMIT} failures"
    assert rec.after["address"] == "127.0.0.1"


def test_trying_again_during_a_lock_out_does_not_restart_it_and_the_page_says_what_is_left(client, operator):
    from axes.models import AccessAttempt

    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "otto", "wrong password")
    # ten minutes into the lock-out of fifteen
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=10))
    for password in ("wrong password", PASSWORD, "wrong again"):
        response = sign_in(client, "otto", password)
        assert response.status_code == 429 and b"locked for 5 minutes more" in response.content
    # once the cool-off of the first lock has passed, the right password works
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=15, seconds=1))
    assert sign_in(client, "otto").status_code == 302
    assert ChangeRecord.objects.filter(action="login_failed").count() == 1


def test_a_deactivated_user_cannot_sign_in(client, operator, admin):
    from lvsadmin.audit.log import Actor
    from lvsadmin.core import users

    users.update_user(Actor.for_user(admin), operator, is_active=False)
    assert sign_in(client, "otto").status_code == 422


def test_sessions_expire_after_thirty_idle_minutes():
    assert settings.SESSION_COOKIE_AGE == 30 * 60
    assert settings.SESSION_SAVE_EVERY_REQUEST is True


def test_production_settings_pass_the_deployment_checks_without_a_warning():
    env = {k: v for k, v in os.environ.items()
           if k not in ("DEBUG", "SECURE", "SECURE_SSL_REDIRECT", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env.update(SECRET_KEY=secrets.token_urlsafe(64), ALLOWED_HOSTS="lvs.example.net",
               DJANGO_SETTINGS_MODULE="lvsadmin.settings")
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def _production_settings(monkeypatch, tmp_path, **env) -> dict:
    """lvsadmin/settings.py run afresh with DEBUG off, no SECRET_KEY and no key file, plus `env`."""
    for name in ("DEBUG", "SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECRET_KEY_FILE", str(tmp_path / "no-such-file"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "lvsadmin" / "settings.py"))


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE")}
    env.update(SECRET_KEY_FILE=str(tmp_path / "no-such-file"))
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set: with DEBUG off, lvsadmin needs a secret key" in result.stderr
    assert "secrets.token_urlsafe(50)" in result.stderr  # how to make one


@pytest.mark.parametrize("key", ["insecure-dev-key", "lvsadmin-dev-" + "x" * 50])
def test_production_refuses_the_development_keys_of_earlier_versions(monkeypatch, tmp_path, key):
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY is a publicly known development key"):
        _production_settings(monkeypatch, tmp_path, SECRET_KEY=key)


def test_production_reads_the_key_file_that_setup_writes_when_SECRET_KEY_is_unset(monkeypatch, tmp_path):
    (tmp_path / "secret_key").write_text(secrets.token_urlsafe(50) + "\n")
    key = _production_settings(monkeypatch, tmp_path, SECRET_KEY_FILE=str(tmp_path / "secret_key"))["SECRET_KEY"]
    assert key == (tmp_path / "secret_key").read_text().strip()
    assert _production_settings(monkeypatch, tmp_path, SECRET_KEY_FILE=str(tmp_path / "secret_key"),
                                SECRET_KEY="from-the-environment")["SECRET_KEY"] == "from-the-environment"


def test_debug_without_a_secret_key_falls_back_to_a_development_key(monkeypatch, tmp_path):
    assert _production_settings(monkeypatch, tmp_path, DEBUG="1")["SECRET_KEY"] == "insecure-dev-key"


def test_production_settings_use_secure_cookies_and_hsts():
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECURE")}
    env.update(SECRET_KEY=secrets.token_urlsafe(64), ALLOWED_HOSTS="a.example,b.example",
               DJANGO_SETTINGS_MODULE="lvsadmin.settings")
    code = ("from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
            "s.SECURE_HSTS_SECONDS >= 31536000, s.SECURE_SSL_REDIRECT, s.ALLOWED_HOSTS)")
    result = subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "True True True True ['a.example', 'b.example']", result.stderr


def test_changing_ones_password_checks_the_old_one_and_is_audited(client, viewer):
    client.force_login(viewer)
    bad = client.post("/password/", {"old_password": "nope", "new_password1": "a new long secret",
                                     "new_password2": "a new long secret"})
    assert bad.status_code == 422 and b"incorrect" in bad.content
    good = client.post("/password/", {"old_password": PASSWORD, "new_password1": "a new long secret",
                                      "new_password2": "a new long secret"})
    assert good.status_code == 302
    viewer.refresh_from_db()
    assert viewer.check_password("a new long secret")
    rec = ChangeRecord.objects.filter(action="update", object_type="user").last()
    assert rec.after == {"password": "(changed)"} and "secret" not in str(rec.before) + str(rec.after)
    assert client.get("/").status_code == 200  # still signed in


def test_superusers_count_as_admin_and_groups_give_the_other_roles(admin_user, viewer, operator, admin):
    assert [role_of(u) for u in (admin_user, viewer, operator, admin)] == ["admin", "viewer", "operator", "admin"]
    nobody = make_user("nobody", None)
    assert role_of(nobody) is None


def test_an_admin_creates_a_user_with_a_role(admin):
    client = client_for(admin)
    bad = client.post("/users/new/", {"username": "newbie", "role": "operator", "password1": "short",
                                      "password2": "short"})
    assert bad.status_code == 422 and b"too short" in bad.content
    response = client.post("/users/new/", {"username": "newbie", "role": "operator",
                                           "password1": "long enough secret", "password2": "long enough secret"})
    assert response.status_code == 302
    user = get_user_model().objects.get(username="newbie")
    assert role_of(user) == "operator"
    rec = ChangeRecord.objects.get(action="create", object_type="user", object_repr="newbie")
    assert rec.username == "ada" and rec.after["roles"] == ["operator"] and "password" not in rec.after


def test_an_admin_changes_a_role_and_deactivates_a_user(admin, viewer):
    client = client_for(admin)
    page = client.get(f"/users/{viewer.pk}/")
    assert b'value="viewer" selected' in page.content
    response = client.post(f"/users/{viewer.pk}/", {"role": "operator", "is_active": "",
                                                    "version": version_in(page.content.decode())})
    assert response.status_code == 302
    viewer.refresh_from_db()
    assert not viewer.is_active and set(viewer.groups.values_list("name", flat=True)) == {"operator"}
    rec = ChangeRecord.objects.filter(action="update", object_type="user").last()
    assert rec.before["roles"] == ["viewer"] and rec.after["roles"] == ["operator"] and rec.after["is_active"] is False


def test_an_admin_cannot_lock_themselves_out(admin):
    client = client_for(admin)
    response = client.post(f"/users/{admin.pk}/", {"role": "admin", "is_active": "",
                                                   "version": form_version(client, f"/users/{admin.pk}/")})
    assert response.status_code == 422 and b"cannot deactivate your own account" in response.content
    admin.refresh_from_db()
    assert admin.is_active


def test_the_users_page_lists_every_user_with_their_role(admin, viewer, operator):
    html = client_for(admin).get("/users/").content.decode()
    for name in ("ada", "vera", "otto"):
        assert name in html
    assert "operator" in html and "viewer" in html


def test_automatic_refreshes_do_not_keep_an_idle_session_alive(web, viewer_client):
    from django.contrib.sessions.models import Session

    from tests.helpers import htmx

    key = viewer_client.session.session_key
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() + timedelta(minutes=5))
    poll = viewer_client.get("/clusters/web/", HTTP_X_POLL="1", **htmx("counters"))
    assert poll.status_code == 200 and "sessionid" not in poll.cookies
    expiry = Session.objects.get(session_key=key).expire_date
    assert expiry < timezone.now() + timedelta(minutes=6)
    viewer_client.get("/clusters/web/")  # a person clicking: 30 more idle minutes
    assert Session.objects.get(session_key=key).expire_date > timezone.now() + timedelta(minutes=29)
    assert 'hx-headers=\'{"X-Poll": "1"}\'' in viewer_client.get("/clusters/web/").content.decode()


def test_an_expired_session_sends_a_polling_page_to_sign_in(web, viewer_client):
    from django.contrib.sessions.models import Session

    from tests.helpers import htmx

    Session.objects.all().update(expire_date=timezone.now() - timedelta(seconds=1))
    poll = viewer_client.get("/clusters/web/", HTTP_X_POLL="1", **htmx("counters"))
    assert poll["HX-Redirect"] == "/login/?next=%2Fclusters%2Fweb%2F"
