"""Two-factor sign-in (TOTP, django-otp): who must use it, enrolment, recovery codes, disabling; each write audited.

A user's authenticator is one TOTPDevice; their recovery codes are the tokens of one StaticDevice. django-otp
keeps static tokens in clear, so a recovery code is stored only as a hash: the codes are random (80 bits), so a
plain SHA-256 cut to 96 bits needs no key and no salt to resist guessing, and the stored value still fits
StaticToken's 16 characters. django-otp's devices still do the rest: a recovery code is deleted once used, and
both kinds of device throttle repeated wrong codes.

TWO_FACTOR_REQUIRED (settings): "admins" (the default: admins need it, others may), "all", or "none".
"""

from __future__ import annotations

import base64
import hashlib
import math
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from lvsadmin.audit.log import Actor, record

from .users import ROLES, stored_role

RECOVERY_CODES = 10
REQUIRED_CHOICES = ("admins", "all", "none")
WRONG_CODE = "That code is not right (or was used already): check your authenticator's clock and try again."


def required(user) -> bool:
    """Whether `user` must sign in with a second factor (settings.TWO_FACTOR_REQUIRED)."""
    rule = settings.TWO_FACTOR_REQUIRED
    if rule == "all":
        return True
    return rule == "admins" and stored_role(user) == ROLES[-1]


def authenticator(user, confirmed: bool = True) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=confirmed).order_by("pk").first()


def enabled(user) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def recovery_codes_left(user) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def normalise(code: str) -> str:
    """A code as typed: spaces and dashes (the groups it is shown in) and case do not matter."""
    return "".join(str(code or "").split()).replace("-", "").lower()[:64]


def recovery_hash(code: str) -> str:
    digest = hashlib.sha256(b"lvsadmin-recovery-code:" + normalise(code).encode()).digest()
    return base64.b32encode(digest).decode()[:16].lower()


def new_recovery_code() -> str:
    """16 base32 characters (80 random bits), shown in four groups: 'k3vq-7mzp-2xha-q4ne'."""
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


def verify(user, code: str):
    """The device that accepts `code` (the authenticator's current code, or an unused recovery code, which is
    then used up), or None. Wrong codes count towards each device's own throttle."""
    code = normalise(code)
    if not code:
        return None
    with transaction.atomic():
        if code.isdigit():
            device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
            return device if device is not None and device.verify_token(code) else None
        device = StaticDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
        return device if device is not None and device.verify_token(recovery_hash(code)) else None


def throttled_for(user) -> int:
    """Seconds before a code may be tried again (django-otp's back-off after wrong codes doubles each time)."""
    now, waits = timezone.now(), [0]
    for device in (authenticator(user), StaticDevice.objects.filter(user=user, confirmed=True).first()):
        allowed, why = device.verify_is_allowed() if device is not None else (True, None)
        if not allowed and why and why.get("locked_until"):
            waits.append(math.ceil((why["locked_until"] - now).total_seconds()))
    return max(waits)


def is_recovery_code(device) -> bool:
    return isinstance(device, StaticDevice)


def _record(actor: Actor, user, before: dict, after: dict) -> None:
    record(actor, "update", user, object_type="user", object_repr=user.get_username(), before=before, after=after)


def _state(user) -> dict:
    return {"two_factor": "on" if enabled(user) else "off", "recovery_codes": recovery_codes_left(user)}


def _new_recovery_codes(user) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name="recovery codes", confirmed=True)
    codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=recovery_hash(c)) for c in codes])
    return codes


@transaction.atomic
def start_enrolment(user) -> TOTPDevice:
    """A new authenticator secret, unconfirmed (it does nothing until a code from it is confirmed): replaces any
    earlier unconfirmed one."""
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)


@transaction.atomic
def confirm_enrolment(actor: Actor, user, code: str) -> tuple[TOTPDevice, list[str]]:
    """Turn the pending authenticator on with a code from it; returns it and the new recovery codes (shown once).
    A wrong code: ValidationError on `code`, nothing changed."""
    device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).order_by("-pk").first()
    if device is None:
        raise ValidationError({"code": ["Nothing to confirm: start the set-up again."]})
    if not normalise(code).isdigit() or not device.verify_token(normalise(code)):
        raise ValidationError({"code": [WRONG_CODE]})
    before = _state(user)
    TOTPDevice.objects.filter(user=user, confirmed=True).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    codes = _new_recovery_codes(user)
    _record(actor, user, before, _state(user))
    return device, codes


def _check_code(user, code: str) -> None:
    """A change to a user's two-factor set-up needs a current code (the authenticator's, or a recovery code).
    Checked in a transaction of its own, before the change's: a refused code still counts towards the throttle."""
    if verify(user, code) is None:
        raise ValidationError({"code": [WRONG_CODE]})


def regenerate_recovery_codes(actor: Actor, user, code: str) -> list[str]:
    """New recovery codes (shown once) in place of the old ones, with a current code."""
    _check_code(user, code)
    with transaction.atomic():
        before = _state(user)
        codes = _new_recovery_codes(user)
        _record(actor, user, before, dict(_state(user), recovery_codes_regenerated=True))
    return codes


def disable(actor: Actor, user, code: str | None = None, *, check: bool = True) -> None:
    """Remove the authenticator and the recovery codes. `check=False` (an administrator's reset of a user who lost
    both, from the command line) skips the code."""
    if check:
        _check_code(user, code or "")
    with transaction.atomic():
        before = _state(user)
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()
        _record(actor, user, before, _state(user))


def base32_secret(device: TOTPDevice) -> str:
    """The authenticator's secret as apps take it typed in (base32, no padding)."""
    return base64.b32encode(device.bin_key).decode().rstrip("=")
