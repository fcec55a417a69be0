"""LDAP sign-in (django-auth-ldap): the LDAP_* settings made into its configuration, and the directory's groups
made into the panel's roles.

The directory decides at every sign-in: the password is checked by binding as the user, and the role is the
highest of the groups LDAP_ADMIN_GROUP, LDAP_OPERATOR_GROUP, LDAP_VIEWER_GROUP the user is a member of, written to
the user's role group (audited as the user `directory` when it changes). A user in none of them is refused, loses
the role they had and their sessions end. A user deleted from the directory cannot bind, so cannot sign in; a
session they already have is checked against the directory again every LDAP_RECHECK_SECONDS (60) and ends at
the next request after they left it or its groups.

A user first signing in through LDAP gets a local account with no usable password (name, e-mail from the
directory); local accounts with a password of their own (the first admin) still sign in with it.
"""

from __future__ import annotations

import logging

import ldap
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django_auth_ldap.backend import LDAPBackend, LDAPSettings
from django_auth_ldap.config import GroupOfNamesType, GroupOfUniqueNamesType, LDAPSearch, PosixGroupType

from lvsadmin.audit.log import Actor, record

from .users import ROLES, end_sessions, user_snapshot

log = logging.getLogger(__name__)
GROUP_TYPES = {"groupofnames": GroupOfNamesType, "groupofuniquenames": GroupOfUniqueNamesType,
               "posixgroup": PosixGroupType}
RECHECK_KEY = "lvsadmin:ldap-checked:{}"  # True: still in the directory; GONE: refused, until a new sign-in
GONE = "gone"


def normalise_dn(dn: str) -> str:
    """DNs compared as the directory does for these groups: case and spaces around separators do not matter."""
    return ",".join("=".join(part.strip() for part in rdn.split("=", 1)) for rdn in dn.lower().split(","))


def role_groups(conf: dict) -> dict[str, str]:
    """{normalised group DN: role} for the roles that have a group."""
    return {normalise_dn(conf[f"{role.upper()}_GROUP"]): role for role in ROLES if conf.get(f"{role.upper()}_GROUP")}


def role_for(group_dns, conf: dict) -> str | None:
    """The highest role whose group is among `group_dns` (None: none)."""
    mapped = role_groups(conf)
    held = {mapped[dn] for dn in map(normalise_dn, group_dns) if dn in mapped}
    return next((role for role in reversed(ROLES) if role in held), None)


def auth_ldap_settings(conf: dict) -> dict:
    """django-auth-ldap's settings (without the AUTH_LDAP_ prefix) from settings.LDAP; a setting missing or wrong
    is refused naming the variable."""
    if not conf.get("USER_DN_TEMPLATE") and not conf.get("USER_SEARCH"):
        raise ImproperlyConfigured("LDAP_SERVER_URI is set: also set LDAP_USER_DN_TEMPLATE "
                                   "(uid=%(user)s,ou=people,dc=example,dc=org) or LDAP_USER_SEARCH (a base DN)")
    if not conf.get("GROUP_SEARCH") or not role_groups(conf):
        raise ImproperlyConfigured("LDAP_SERVER_URI is set: also set LDAP_GROUP_SEARCH (the groups' base DN) and at "
                                   "least one of LDAP_VIEWER_GROUP, LDAP_OPERATOR_GROUP, LDAP_ADMIN_GROUP")
    kind = (conf.get("GROUP_TYPE") or "groupOfNames").lower()
    if kind not in GROUP_TYPES:
        raise ImproperlyConfigured(f"LDAP_GROUP_TYPE: {conf['GROUP_TYPE']!r} is not one of groupOfNames, "
                                   "groupOfUniqueNames, posixGroup")
    group_type = GROUP_TYPES[kind]()
    values = {
        "SERVER_URI": conf["SERVER_URI"],
        "BIND_DN": conf.get("BIND_DN", ""),
        "BIND_PASSWORD": conf.get("BIND_PASSWORD", ""),
        "START_TLS": bool(conf.get("START_TLS")),
        "CONNECTION_OPTIONS": {ldap.OPT_REFERRALS: 0, ldap.OPT_NETWORK_TIMEOUT: 5, ldap.OPT_TIMEOUT: 10},
        "GROUP_SEARCH": LDAPSearch(conf["GROUP_SEARCH"], ldap.SCOPE_SUBTREE, f"(objectClass={kind})"),
        "GROUP_TYPE": group_type,
        "USER_ATTR_MAP": {"first_name": "givenName", "last_name": "sn", "email": "mail"},
        "ALWAYS_UPDATE_USER": True,
    }
    if conf.get("USER_DN_TEMPLATE"):
        values["USER_DN_TEMPLATE"] = conf["USER_DN_TEMPLATE"]
    else:
        values["USER_SEARCH"] = LDAPSearch(conf["USER_SEARCH"], ldap.SCOPE_SUBTREE,
                                           conf.get("USER_FILTER") or "(uid=%(user)s)")
    return values


@transaction.atomic
def set_role(user, role: str | None, *, reason: str, end_sessions_too: bool = True) -> bool:
    """Give `user` exactly `role` (None: no role, and their sessions end), audited as `directory` when it changes.
    Returns whether it changed."""
    before = user_snapshot(user)
    groups = Group.objects.filter(name__in=ROLES)
    user.groups.remove(*[g for g in groups if g.name != role])
    if role is not None:
        user.groups.add(Group.objects.get(name=role))
    after = user_snapshot(user)
    if before == after:
        return False
    record(Actor.system("directory"), "update", user, object_type="user", object_repr=user.get_username(),
           before=before, after=after, comment=reason)
    if role is None and end_sessions_too:
        end_sessions(user)
    return True


class DirectoryBackend(LDAPBackend):
    """django-auth-ldap's backend, configured from settings.LDAP, with the groups made into roles."""

    settings_prefix = "LVSADMIN_LDAP_UNUSED_"  # every setting comes from auth_ldap_settings, none from its own names

    @property
    def settings(self):
        if self._settings is None:
            self._settings = LDAPSettings(self.settings_prefix, auth_ldap_settings(settings.LDAP))
        return self._settings

    @settings.setter
    def settings(self, value):
        self._settings = value

    def authenticate_ldap_user(self, ldap_user, password):
        user = super().authenticate_ldap_user(ldap_user, password)
        if user is None:
            return None
        role = role_for(ldap_user.group_dns, settings.LDAP)
        set_role(user, role, reason="directory groups at sign-in")
        if role is None:
            log.info("LDAP sign-in of %s refused: in none of the panel's groups", user.get_username())
            return None
        cache.set(RECHECK_KEY.format(user.pk), True, settings.LDAP_RECHECK_SECONDS)
        return user

    def get_user(self, user_id):
        """A session's user, checked against the directory again once every LDAP_RECHECK_SECONDS: gone from it, or
        from every mapped group, ends the session here. If the directory cannot be reached, the session goes on."""
        user = super().get_user(user_id)
        checked = cache.get(RECHECK_KEY.format(user_id))
        if user is None or checked is True:
            return user
        if checked == GONE:
            return None
        try:
            role = self._current_role(user.ldap_user)
        except ldap.LDAPError as exc:
            log.warning("LDAP: cannot recheck %s (%s); the session goes on", user.get_username(), exc)
            return user
        # (The request's own session cannot be deleted under it: the "gone" mark refuses it and the others.)
        set_role(user, role, reason="directory groups, rechecked during a session", end_sessions_too=False)
        if role is None:
            cache.set(RECHECK_KEY.format(user.pk), GONE, settings.LDAP_RECHECK_SECONDS)
            return None
        cache.set(RECHECK_KEY.format(user.pk), True, settings.LDAP_RECHECK_SECONDS)
        return user

    @staticmethod
    def _current_role(ldap_user) -> str | None:
        """The role the directory gives the user now (None: gone from it, or in no mapped group). Raises LDAPError
        when the directory cannot be asked (django-auth-ldap's own searches would take that for "not found")."""
        connection = ldap_user.connection  # binds as LDAP_BIND_DN
        dn = ldap_user.dn
        if dn is None:
            return None
        try:
            connection.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["1.1"])
        except ldap.NO_SUCH_OBJECT:
            return None
        return role_for(ldap_user.group_dns, settings.LDAP)
