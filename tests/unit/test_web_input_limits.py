"""Input that only PostgreSQL refuses (NUL bytes, text over a column's length) gets a 4xx, never a 500.

SQLite stores a NUL byte or a 1 MB string in a 255-character column without a word; PostgreSQL raises. These
tests run on both (DATABASE_URL=postgres://… for PostgreSQL); on SQLite they also check that nothing oversized
is stored.
"""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core.models import Cluster
from tests.helpers import PASSWORD

pytestmark = pytest.mark.django_db

HOSTILE_USERNAMES = ["x" * 300, "x" * (1024 * 1024), "ot\x00to", "\x00"]


@pytest.mark.parametrize("username", HOSTILE_USERNAMES, ids=["300 chars", "1 MB", "NUL inside", "only NUL"])
def test_a_sign_in_with_an_overlong_or_nul_username_is_refused_with_422_not_500(client, operator, username):
    response = client.post("/login/", {"username": username, "password": "wrong password"})
    assert response.status_code == 422
    assert b"Wrong user name or password" in response.content
    for attempt in AccessAttempt.objects.all():
        assert len(attempt.username) <= 255 and "\x00" not in attempt.username


@pytest.mark.parametrize("username", HOSTILE_USERNAMES[:2], ids=["300 chars", "1 MB"])
def test_repeated_sign_ins_with_a_hostile_username_lock_out_with_429_and_an_audit_record(client, operator,
                                                                                         username):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert client.post("/login/", {"username": username, "password": "wrong"}).status_code == 422
    assert client.post("/login/", {"username": username, "password": "wrong"}).status_code == 429
    assert client.post("/login/", {"username": username, "password": "wrong"}).status_code == 429
    record = ChangeRecord.objects.get(action="login_failed")
    assert "\x00" not in record.object_repr + record.username and len(record.object_repr) <= 255
    # the real user is not locked by someone else's junk
    assert client.post("/login/", {"username": "otto", "password": PASSWORD}).status_code == 302


def test_a_username_with_a_nul_byte_is_refused_by_the_form_and_never_reaches_the_log(client, operator):
    records = ChangeRecord.objects.count()
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        assert client.post("/login/", {"username": "otto\x00", "password": "wrong"}).status_code == 422
    assert ChangeRecord.objects.count() == records
    assert not AccessAttempt.objects.exists()


SAVE = "-A -t 10.9.0.1:80 -s rr\n-a -t 10.9.0.1:80 -r 192.0.2.90:80 -g -w 1\n"


def _upload(client, text: bytes, step: str, revision: int):
    return client.post("/clusters/web/import/", {
        "upload": SimpleUploadedFile("saved.rules", text, content_type="text/plain"),
        "step": step, "revision": revision})


@pytest.mark.parametrize("step", ["preview", "commit"])
def test_an_uploaded_import_file_with_a_nul_byte_is_refused_like_pasted_text(web, operator_client, step):
    revision = Cluster.objects.get(name="web").desired_revision
    records = ChangeRecord.objects.count()
    pasted = operator_client.post("/clusters/web/import/", {"text": SAVE + "# \x00\n", "step": step,
                                                            "revision": revision})
    assert pasted.status_code == 422 and b"Null characters are not allowed" in pasted.content
    uploaded = _upload(operator_client, (SAVE + "# a comment \x00\n").encode(), step, revision)
    assert uploaded.status_code == 422
    assert "the file contains a NUL byte (line 3)" in uploaded.content.decode()
    assert Cluster.objects.get(name="web").desired_revision == revision
    assert ChangeRecord.objects.count() == records


def test_an_uploaded_import_file_without_a_nul_byte_still_commits(web, operator_client):
    revision = Cluster.objects.get(name="web").desired_revision
    response = _upload(operator_client, SAVE.encode(), "commit", revision)
    assert response.status_code == 302
    assert Cluster.objects.get(name="web").desired_revision > revision
