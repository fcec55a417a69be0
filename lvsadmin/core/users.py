"""Users: their roles and the audited writes to them (create, update, change a password), and sign-in
throttling as the panel sees it: the name a failed sign-in is kept under, who is locked out and for how long,
and the audited unlock an admin can give.

django-axes counts failures per (user name, address) in its AccessAttempt table. A user name comes straight
from the sign-in form, so before axes stores it (and before the audit log records a lock-out) it is made
storable everywhere: no NUL byte (PostgreSQL refuses them) and no longer than any account name can be (axes's
column holds 255 characters; SQLite would keep a 1 MB name whole). No real account is affected: Django's user
names are at most 150 characters and cannot contain NUL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from lvsadmin.audit.log import Actor, record

from . import versions

# The panel's roles, lowest first; each is an auth group of that name (created by the web app's migration).
ROLES = ("viewer", "operator", "admin")
NAME_LENGTH = 150  # django.contrib.auth's username max_length


def stored_role(user) -> str | None:
    """The role a user holds: admin for a superuser, else the highest of its role groups (None: none).

    Whether the user may use it (signed in, active) is the access check's business (`web.roles.role_of`).
    Reads the user's groups through `user.groups.all()`, so a prefetch of them is used."""
    if user.is_superuser:
        return ROLES[-1]
    names = {group.name for group in user.groups.all()}
    return next((role for role in reversed(ROLES) if role in names), None)


def sign_in_name(raw: object) -> str:
    """A user name typed at sign-in, made safe to store: NUL shown as \\x00, cut to an account name's length."""
    return str(raw or "").replace("\x00", "\\x00")[:NAME_LENGTH]


def axes_username(request, credentials: dict | None = None) -> str | None:
    """AXES_USERNAME_CALLABLE: the name axes counts failures under (see the module docstring)."""
    field = settings.AXES_USERNAME_FORM_FIELD
    raw = (credentials or {}).get(field)
    if raw is None and request is not None:
        raw = getattr(request, "data", request.POST).get(field)
    return None if raw is None else sign_in_name(raw)


def cool_off() -> timedelta:
    return get_cool_off() or timedelta(0)


@dataclass(frozen=True)
class Lockout:
    username: str
    address: str | None
    failures: int
    until: datetime

    @property
    def remaining(self) -> timedelta:
        return max(self.until - timezone.now(), timedelta(0))

    @property
    def remaining_text(self) -> str:
        return remaining_text(self.remaining)


def remaining_text(delta: timedelta) -> str:
    """'14 minutes', '1 minute', 'less than a minute': how long a lock-out still lasts, rounded up."""
    minutes = -(-int(delta.total_seconds()) // 60)
    if minutes <= 0:
        return "less than a minute"
    return f"{minutes} minute{'' if minutes == 1 else 's'}"


def _locked_attempts():
    # A failure during the lock-out does not move attempt_time (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT is
    # off), so the lock ends a cool-off after the failure that set it.
    return AccessAttempt.objects.filter(failures_since_start__gte=settings.AXES_FAILURE_LIMIT,
                                        attempt_time__gt=timezone.now() - cool_off())


def _lockout(attempt: AccessAttempt) -> Lockout:
    return Lockout(username=attempt.username or "", address=attempt.ip_address,
                   failures=attempt.failures_since_start, until=attempt.attempt_time + cool_off())


def lockouts() -> list[Lockout]:
    """Every (user name, address) locked out now, newest first."""
    return [_lockout(a) for a in _locked_attempts().order_by("-attempt_time")]


def lockout_for(username: str | None, address: str | None) -> Lockout | None:
    attempt = _locked_attempts().filter(username=username, ip_address=address).order_by("-attempt_time").first()
    return _lockout(attempt) if attempt else None


@transaction.atomic
def unlock(actor: Actor, *, username: str, address: str | None = None) -> int:
    """Lift the lock-outs of a user name (from one address, or from all): audited, returns how many were lifted."""
    locked = _locked_attempts().filter(username=username)
    if address:
        locked = locked.filter(ip_address=address)
    attempts = list(locked.select_for_update())
    if not attempts:
        return 0
    found = [_lockout(a) for a in attempts]
    AccessAttempt.objects.filter(pk__in=[a.pk for a in attempts]).delete()
    user = get_user_model().objects.filter(username=username).first()
    record(actor, "update", user, object_type="user", object_repr=username,
           before={"locked_out": [{"address": f.address, "failures": f.failures,
                                   "until": f.until.isoformat()} for f in found]},
           after={"locked_out": []})
    return len(found)


# --- users and roles: the audited writes ----------------------------------------------------------------


def user_snapshot(user) -> dict:
    """A user as JSON for the audit log (and the version its edit form carries)."""
    roles = sorted(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    return {"username": user.get_username(), "email": user.email, "is_active": user.is_active,
            "is_superuser": user.is_superuser, "roles": roles}


def _user_record(actor: Actor, action: str, user, before=None, after=None) -> None:
    record(actor, action, user, object_type="user", object_repr=user.get_username(), before=before, after=after)


def _set_role(user, role: str) -> None:
    if role not in ROLES:
        raise ValidationError({"role": [f"unknown role {role!r}: use one of {', '.join(ROLES)}"]})
    groups = Group.objects.filter(name__in=ROLES)
    user.groups.remove(*[g for g in groups if g.name != role])
    user.groups.add(Group.objects.get(name=role))


@transaction.atomic
def create_user(actor: Actor, *, username: str, password: str, role: str, email: str = ""):
    User = get_user_model()
    user = User(username=username, email=email)
    try:
        user.full_clean(exclude=["password"])
    except ValidationError as exc:
        raise ValidationError({k: v for k, v in exc.message_dict.items() if k in ("username", "email")} or exc)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages})
    user.set_password(password)
    user.save()
    _set_role(user, role)
    _user_record(actor, "create", user, after=user_snapshot(user))
    return user


@transaction.atomic
def update_user(actor: Actor, user, *, role: str | None = None, is_active: bool | None = None,
                expected_version: str | None = None):
    """Change a user's role and whether they may sign in, as one audited change."""
    user = type(user).objects.select_for_update().get(pk=user.pk)
    versions.check(expected_version, user_snapshot(user), object_type="user", object_id=user.pk)
    check_update(actor, user, role=role, is_active=is_active)
    before = user_snapshot(user)
    if role is not None and not user.is_superuser:
        _set_role(user, role)
    if is_active is not None and user.is_active != is_active:
        user.is_active = is_active
        user.save(update_fields=["is_active"])
        if not is_active:
            end_sessions(user)
    after = user_snapshot(user)
    if before != after:
        _user_record(actor, "update", user, before=before, after=after)
    return user


@transaction.atomic
def change_password(actor: Actor, user, new_password: str):
    """Set a new password (the password form checked it too); the audit says it changed, never what to."""
    validate_password(new_password, user)
    user.set_password(new_password)
    user.save(update_fields=["password"])
    _user_record(actor, "update", user, before={"password": "(old)"}, after={"password": "(changed)"})
    return user


# --- rules of user edits ---------------------------------------------------------------------------------


def check_update(actor: Actor, user, *, role: str | None, is_active: bool | None) -> None:
    """Refuse, naming the field, an edit of a user the actor may not make (nothing is written then)."""
    name = user.get_username()
    if is_active is False and actor.user_id == user.pk:
        raise ValidationError({"is_active": ["You cannot deactivate your own account."]})
    if role is not None and role != "admin" and user.is_superuser:
        # A superuser holds every permission whatever its groups: a role would change nothing.
        raise ValidationError({"role": [f"{name} is a superuser and so always an admin: the role cannot change."]})
    if role is not None and actor.user_id == user.pk and role != "admin":
        raise ValidationError({"role": ["You cannot take the admin role from yourself."]})
    if is_active is False and user.is_superuser and user.is_active and not _is_superuser(actor):
        raise ValidationError({"is_active": [f"Only a superuser can deactivate the superuser {name}."]})


def _is_superuser(actor: Actor) -> bool:
    return actor.user_id is not None and get_user_model().objects.filter(pk=actor.user_id,
                                                                        is_superuser=True).exists()


def end_sessions(user) -> int:
    """Delete every session signed in as `user`: a deactivated account's old cookie must not work again if the
    account is reactivated (Django only refuses it while the account is inactive)."""
    ended = [s.pk for s in Session.objects.filter(expire_date__gt=timezone.now())
             if s.get_decoded().get(SESSION_KEY) == str(user.pk)]
    Session.objects.filter(pk__in=ended).delete()
    return len(ended)
