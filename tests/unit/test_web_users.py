"""Users for admins: the superuser's protections, sessions ended on deactivation, password rules, lock-outs."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from lvsadmin.audit.models import ChangeRecord
from tests.helpers import PASSWORD, client_for, make_user
from tests.unit.test_web_auth import edit_user

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture
def root(db):
    return User.objects.create_superuser("root", "", PASSWORD)


def test_changing_the_superusers_role_is_refused_with_a_message_not_a_false_saved(admin, root):
    response = edit_user(client_for(admin), root, role="viewer", is_active="on")
    assert response.status_code == 422
    assert "root is a superuser and so always an admin: the role cannot change." in response.content.decode()
    root.refresh_from_db()
    assert root.is_superuser and not root.groups.exists()
    assert not ChangeRecord.objects.filter(object_type="user", object_id=root.pk, action="update").exists()


def test_saving_the_superuser_unchanged_as_admin_is_fine(admin, root):
    assert edit_user(client_for(admin), root, role="admin", is_active="on").status_code == 302


def test_an_admin_who_is_not_a_superuser_cannot_deactivate_the_superuser(admin, root):
    response = edit_user(client_for(admin), root, role="admin", is_active="")
    assert response.status_code == 422
    assert "Only a superuser can deactivate the superuser root." in response.content.decode()
    root.refresh_from_db()
    assert root.is_active


def test_a_superuser_may_deactivate_another_superuser(root):
    other = User.objects.create_superuser("root2", "", PASSWORD)
    assert edit_user(client_for(root), other, role="admin", is_active="").status_code == 302
    other.refresh_from_db()
    assert not other.is_active


def test_deactivating_a_user_ends_their_sessions_so_reactivating_does_not_revive_an_old_cookie(admin, operator):
    theirs = Client()
    assert theirs.post("/login/", {"username": "otto", "password": PASSWORD}).status_code == 302
    mine = client_for(admin)
    assert theirs.get("/").status_code == 200
    assert edit_user(mine, operator, role="operator", is_active="").status_code == 302
    assert edit_user(mine, operator, role="operator", is_active="on").status_code == 302
    assert theirs.get("/").status_code == 302  # the old cookie signs nobody in
    assert mine.get("/").status_code == 200  # the admin's own session is untouched


@pytest.mark.parametrize("password, message", [
    ("493817256084", "This password is entirely numeric."),
    ("operations-lead-2", "The password is too similar to the username."),
    ("short secret", None),  # 12 characters: long enough
    ("eleven char", "This password is too short. It must contain at least 12 characters."),
])
def test_new_users_passwords_must_be_12_characters_not_all_digits_and_not_like_the_user_name(admin, password,
                                                                                          message):
    response = client_for(admin).post("/users/new/", {"username": "operations-lead", "role": "viewer",
                                                      "password1": password, "password2": password})
    if message is None:
        assert response.status_code == 302
    else:
        assert response.status_code == 422 and message in response.content.decode()
        assert not User.objects.filter(username="operations-lead").exists()


def test_changing_ones_password_applies_the_same_rules(viewer):
    client = client_for(viewer)
    for password in ("5550123498761", "eleven char"):
        response = client.post("/password/", {"old_password": PASSWORD, "new_password1": password,
                                              "new_password2": password})
        assert response.status_code == 422
    viewer.refresh_from_db()
    assert viewer.check_password(PASSWORD)


def test_ensure_admin_prints_a_generated_password_that_passes_the_validators(db):
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    password = re.search(r"password '([^']+)'", out.getvalue()).group(1)
    user = User.objects.get(username="admin")
    assert user.check_password(password) and len(password) >= 12
    validate_password(password, user)


def test_the_password_rules_are_djangos_validators_with_a_minimum_of_12():
    names = [v["NAME"].rsplit(".", 1)[1] for v in settings.AUTH_PASSWORD_VALIDATORS]
    assert {"NumericPasswordValidator", "UserAttributeSimilarityValidator", "CommonPasswordValidator"} <= set(names)
    with pytest.raises(ValidationError):
        validate_password("x" * 11)


def lock_out(username="otto", address="127.0.0.1"):
    client = Client(REMOTE_ADDR=address)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/login/", {"username": username, "password": "wrong password"})
    assert client.post("/login/", {"username": username, "password": PASSWORD}).status_code == 429
    return client


def test_the_users_page_shows_who_is_locked_out_and_for_how_long(admin, operator):
    lock_out()
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=3))
    html = client_for(admin).get("/users/").content.decode()
    assert "Locked out" in html
    assert re.search(r"otto</td>\s*<td>127\.0\.0\.1</td>\s*<td>5</td>\s*<td>12 minutes</td>", html), html


def test_an_admin_unlocks_a_user_who_can_then_sign_in_and_the_unlock_is_audited(admin, operator):
    locked = lock_out()
    response = client_for(admin).post("/users/", {"username": "otto", "address": "127.0.0.1"})
    assert response.status_code == 302 and response["Location"] == "/users/"
    assert client_for(admin).get("/users/").content.decode().count("Unlock") == 0
    assert locked.post("/login/", {"username": "otto", "password": PASSWORD}).status_code == 302
    rec = ChangeRecord.objects.filter(object_type="user", object_id=operator.pk, action="update").last()
    assert rec.username == "ada" and rec.after == {"locked_out": []}
    assert rec.before["locked_out"][0]["address"] == "127.0.0.1"


def test_unlocking_someone_who_is_not_locked_says_so_and_writes_nothing(admin, operator):
    records = ChangeRecord.objects.count()
    response = client_for(admin).post("/users/", {"username": "otto", "address": "127.0.0.1"}, follow=True)
    assert "otto was not locked out" in response.content.decode()
    assert ChangeRecord.objects.count() == records


def test_only_admins_can_unlock(operator_client, operator):
    lock_out()
    assert operator_client.post("/users/", {"username": "otto", "address": "127.0.0.1"}).status_code == 403
    assert AccessAttempt.objects.filter(username="otto").exists()


def test_a_nobody_without_a_role_cannot_see_lockouts(operator):
    lock_out()
    nobody = make_user("nobody", None)
    assert client_for(nobody).get("/users/").status_code == 403
