"""LDAP sign-in against a real directory: Debian's slapd, started by the test on a loopback port with a directory
of its own (people, and groups for the panel's roles). Group → role, refreshed at each sign-in; a user taken out
of the groups, or deleted, loses access, sessions included."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import ldap
import ldap.modlist
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured

from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import directory
from lvsadmin.web.roles import role_of

pytestmark = pytest.mark.django_db

SLAPD = "/usr/sbin/slapd"
BASE = "dc=example,dc=org"
ROOT_DN, ROOT_PASSWORD = f"cn=admin,{BASE}", "root-secret"
PANEL_DN, PANEL_PASSWORD = f"cn=panel,{BASE}", "panel-secret"
PASSWORD = "directory password"
GROUPS = {"admins": ["alice"], "operators": ["bob"], "viewers": ["carol", "alice"], "other": ["dave"]}
CONFIG = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {dir}/slapd.pid
database mdb
maxsize 10485760
directory {dir}/db
suffix "{base}"
rootdn "{root}"
rootpw {root_password}
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
"""


def person(uid: str) -> tuple[str, dict]:
    return f"uid={uid},ou=people,{BASE}", {"objectClass": [b"inetOrgPerson"], "uid": [uid.encode()],
                                          "cn": [uid.title().encode()], "sn": [b"Example"],
                                          "givenName": [uid.title().encode()],
                                          "mail": [f"{uid}@example.org".encode()],
                                          "userPassword": [PASSWORD.encode()]}


def entries() -> list[tuple[str, dict]]:
    found = [(BASE, {"objectClass": [b"dcObject", b"organization"], "dc": [b"example"], "o": [b"Example"]}),
             (f"ou=people,{BASE}", {"objectClass": [b"organizationalUnit"], "ou": [b"people"]}),
             (f"ou=groups,{BASE}", {"objectClass": [b"organizationalUnit"], "ou": [b"groups"]}),
             (PANEL_DN, {"objectClass": [b"organizationalRole", b"simpleSecurityObject"], "cn": [b"panel"],
                         "userPassword": [PANEL_PASSWORD.encode()]})]
    found += [person(uid) for uid in ("alice", "bob", "carol", "dave", "erin")]
    found += [(f"cn=lvs-{name},ou=groups,{BASE}",
               {"objectClass": [b"groupOfNames"], "cn": [f"lvs-{name}".encode()],
                # groupOfNames needs a member: the panel's own account stays in each when people leave
                "member": [PANEL_DN.encode()] + [f"uid={m},ou=people,{BASE}".encode() for m in members]})
              for name, members in GROUPS.items()]
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    """A directory of our own on a loopback port, for this module."""
    assert Path(SLAPD).exists(), "slapd is missing: scripts/setup installs the Debian packages slapd and ldap-utils"
    where = tmp_path_factory.mktemp("slapd")
    (where / "db").mkdir()
    (where / "slapd.conf").write_text(CONFIG.format(dir=where, base=BASE, root=ROOT_DN, root_password=ROOT_PASSWORD))
    uri = f"ldap://127.0.0.1:{free_port()}/"
    proc = subprocess.Popen([SLAPD, "-h", uri, "-f", str(where / "slapd.conf"), "-d", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        conn = _connect(uri, proc)
        for dn, attrs in entries():
            conn.add_s(dn, ldap.modlist.addModlist(attrs))
        yield uri
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(where, ignore_errors=True)


def _connect(uri: str, proc):
    deadline = time.monotonic() + 15
    while True:
        try:
            conn = ldap.initialize(uri)
            conn.simple_bind_s(ROOT_DN, ROOT_PASSWORD)
            return conn
        except ldap.SERVER_DOWN:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"slapd did not start: {proc.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.1)


@pytest.fixture
def admin_conn(slapd):
    conn = ldap.initialize(slapd)
    conn.simple_bind_s(ROOT_DN, ROOT_PASSWORD)
    return conn


def ldap_conf(uri: str, **extra) -> dict:
    conf = {"SERVER_URI": uri, "BIND_DN": PANEL_DN, "BIND_PASSWORD": PANEL_PASSWORD,
            "USER_DN_TEMPLATE": f"uid=%(user)s,ou=people,{BASE}", "USER_SEARCH": "", "USER_FILTER": "",
            "GROUP_SEARCH": f"ou=groups,{BASE}", "GROUP_TYPE": "groupOfNames",
            "VIEWER_GROUP": f"cn=lvs-viewers,ou=groups,{BASE}",
            "OPERATOR_GROUP": f"cn=lvs-operators,ou=groups,{BASE}",
            # spelt differently from the directory's DN: compared as the directory compares them
            "ADMIN_GROUP": f"CN=lvs-admins, OU=groups, {BASE.upper()}", "START_TLS": False}
    return dict(conf, **extra)


@pytest.fixture
def with_ldap(settings, slapd):
    settings.LDAP = ldap_conf(slapd)
    settings.AUTHENTICATION_BACKENDS = [settings.AUTHENTICATION_BACKENDS[0], "lvsadmin.core.directory.DirectoryBackend",
                                        *settings.AUTHENTICATION_BACKENDS[1:]]
    cache.clear()
    yield settings
    cache.clear()


def sign_in(client, username: str, password: str = PASSWORD):
    return client.post("/login/", {"username": username, "password": password})


def user(name: str):
    return get_user_model().objects.get(username=name)


@pytest.mark.parametrize("lookup", ["template", "search"])
def test_directory_groups_give_the_panels_roles_at_sign_in(client, with_ldap, slapd, lookup):
    if lookup == "search":
        with_ldap.LDAP = ldap_conf(slapd, USER_DN_TEMPLATE="", USER_SEARCH=f"ou=people,{BASE}")
    for name, role in (("alice", "admin"), ("bob", "operator"), ("carol", "viewer")):
        response = sign_in(client, name)
        assert response.status_code == 302 and response["Location"] == "/", name
        assert role_of(user(name)) == role
        assert client.get("/").status_code == 200
        client.post("/logout/")
    alice = user("alice")
    assert alice.email == "alice@example.org" and not alice.has_usable_password()
    login = ChangeRecord.objects.filter(action="login", username="alice").get()
    assert login.after["backend"] == "ldap"
    given = ChangeRecord.objects.get(action="update", username="directory", object_repr="alice")
    assert given.before["roles"] == [] and given.after["roles"] == ["admin"]


def test_a_wrong_password_or_a_user_in_no_mapped_group_cannot_sign_in(client, with_ldap):
    assert sign_in(client, "bob", "not the password").status_code == 422
    assert sign_in(client, "dave").status_code == 422  # in the directory, but in none of the panel's groups
    assert sign_in(client, "nobody").status_code == 422
    assert role_of(user("dave")) is None
    assert client.get("/")["Location"].startswith("/login/")


def test_a_role_change_in_the_directory_is_taken_at_the_next_sign_in(client, with_ldap, admin_conn):
    sign_in(client, "erin")  # in no group yet
    assert client.get("/")["Location"].startswith("/login/")
    group = f"cn=lvs-operators,ou=groups,{BASE}"
    admin_conn.modify_s(group, [(ldap.MOD_ADD, "member", [f"uid=erin,ou=people,{BASE}".encode()])])
    try:
        assert sign_in(client, "erin").status_code == 302
        assert role_of(user("erin")) == "operator"
    finally:
        admin_conn.modify_s(group, [(ldap.MOD_DELETE, "member", [f"uid=erin,ou=people,{BASE}".encode()])])


def test_a_user_removed_from_the_group_loses_access_and_their_session(client, with_ldap, admin_conn):
    group = f"cn=lvs-operators,ou=groups,{BASE}"
    assert sign_in(client, "bob").status_code == 302
    admin_conn.modify_s(group, [(ldap.MOD_DELETE, "member", [f"uid=bob,ou=people,{BASE}".encode()])])
    try:
        assert client.get("/").status_code == 200  # checked again only after LDAP_RECHECK_SECONDS
        cache.clear()  # ... which have passed
        assert client.get("/")["Location"].startswith("/login/")
        assert role_of(user("bob")) is None
        assert sign_in(client, "bob").status_code == 422
        taken = ChangeRecord.objects.filter(action="update", username="directory", object_repr="bob").latest("id")
        assert taken.before["roles"] == ["operator"] and taken.after["roles"] == []
    finally:
        admin_conn.modify_s(group, [(ldap.MOD_ADD, "member", [f"uid=bob,ou=people,{BASE}".encode()])])


def test_a_user_deleted_from_the_directory_cannot_sign_in_and_their_session_ends(client, with_ldap, admin_conn):
    assert sign_in(client, "carol").status_code == 302
    dn, attrs = person("carol")
    # Deleted, but still named in the viewers' group (no referential integrity in this directory): the entry
    # itself is what counts.
    admin_conn.delete_s(dn)
    try:
        cache.clear()
        assert client.get("/")["Location"].startswith("/login/")
        assert sign_in(client, "carol").status_code == 422
    finally:
        admin_conn.add_s(dn, ldap.modlist.addModlist(attrs))


def test_a_session_goes_on_while_the_directory_cannot_be_reached(client, with_ldap):
    assert sign_in(client, "bob").status_code == 302
    with_ldap.LDAP = ldap_conf(f"ldap://127.0.0.1:{free_port()}/")  # nothing listens there
    cache.clear()
    assert client.get("/").status_code == 200
    assert role_of(user("bob")) == "operator"


def test_a_local_account_still_signs_in_with_its_own_password(client, with_ldap):
    from tests.helpers import PASSWORD as LOCAL_PASSWORD
    from tests.helpers import make_user

    make_user("otto", "operator")
    assert sign_in(client, "otto", LOCAL_PASSWORD).status_code == 302
    assert ChangeRecord.objects.get(action="login", username="otto").after["backend"] == "local"


def test_an_incomplete_configuration_is_refused_naming_the_variables(slapd):
    with pytest.raises(ImproperlyConfigured, match="LDAP_USER_DN_TEMPLATE"):
        directory.auth_ldap_settings(ldap_conf(slapd, USER_DN_TEMPLATE=""))
    with pytest.raises(ImproperlyConfigured, match="LDAP_GROUP_SEARCH"):
        directory.auth_ldap_settings(ldap_conf(slapd, VIEWER_GROUP="", OPERATOR_GROUP="", ADMIN_GROUP=""))
    with pytest.raises(ImproperlyConfigured, match="LDAP_GROUP_TYPE"):
        directory.auth_ldap_settings(ldap_conf(slapd, GROUP_TYPE="memberOf"))
    assert settings.LDAP_RECHECK_SECONDS == 60
