"""API tokens: the audited writes (create, revoke) and the check of a presented token.

A token's scopes never exceed its user's role: checked when it is made, and again on every request (`allowed`),
because an admin can lower a user's role after the token was made; the token then keeps only what the role still
allows. Scopes map to the panel's roles:

    read   viewer    GET everything the API shows
    write  operator  edit the desired state (services, real servers, health checks)
    apply  operator  plan and apply
    admin  admin     clusters, balancers, users
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from lvsadmin.audit.log import Actor, record
from lvsadmin.web.roles import ADMIN, OPERATOR, RANK, VIEWER, role_of

from .models import SCOPES, ApiToken

SCOPE_ROLE = {"read": VIEWER, "write": OPERATOR, "apply": OPERATOR, "admin": ADMIN}
TOKEN_PREFIX = "lvs_"
LAST_USED_EVERY = timedelta(minutes=1)  # last-used time and address: written at most this often per token
MAX_NETWORKS = 50


def scopes_for_role(role: str | None) -> tuple[str, ...]:
    """The scopes a user of this role may give a token (and a token of theirs may use)."""
    return tuple(s for s in SCOPES if RANK[role] >= RANK[SCOPE_ROLE[s]])


def allowed(token: ApiToken, scope: str) -> bool:
    """The token has the scope, and its user's role, as it is now, still allows it."""
    return scope in token.scopes and scope in scopes_for_role(role_of(token.user))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_networks(text_or_list) -> list[str]:
    """An allow-list as given (comma/space/newline-separated text, or a list) in canonical form; a bad entry is
    refused, named, on the field `allowed_networks`."""
    items = text_or_list.replace(",", " ").split() if isinstance(text_or_list, str) else list(text_or_list or [])
    if len(items) > MAX_NETWORKS:
        raise ValidationError({"allowed_networks": [f"at most {MAX_NETWORKS} addresses or networks"]})
    out = []
    for item in items:
        try:
            out.append(str(ipaddress.ip_network(str(item).strip(), strict=False)))
        except ValueError:
            raise ValidationError({"allowed_networks": [
                f"{str(item)[:60]!r} is not an address or a network (e.g. 192.0.2.7, 10.0.0.0/24, 2001:db8::/64)"]})
    return out


def _token_snapshot(token: ApiToken) -> dict:
    """A token in the audit log: never its secret nor its hash."""
    return {"name": token.name, "user": token.user.get_username(), "key_id": token.key_id,
            "scopes": list(token.scopes), "allowed_networks": list(token.allowed_networks),
            "expires": token.expires.isoformat() if token.expires else None,
            "revoked": token.revoked.isoformat() if token.revoked else None}


@transaction.atomic
def create_token(actor: Actor, user, *, name: str, scopes, expires: datetime | None = None,
                 allowed_networks=()) -> tuple[ApiToken, str]:
    """Make a token for `user`; returns it and its text, which is shown once and kept nowhere."""
    errors: dict[str, list[str]] = {}
    name = (name or "").strip()
    if not name or len(name) > 100 or "\x00" in name:
        errors["name"] = ["a name of 1 to 100 characters, to tell your tokens apart"]
    scopes = list(dict.fromkeys(scopes or []))
    may = scopes_for_role(role_of(user))
    if not scopes:
        errors["scopes"] = ["choose at least one scope"]
    elif unknown := [s for s in scopes if s not in SCOPES]:
        errors["scopes"] = [f"unknown scope {unknown[0]!r}: use {', '.join(SCOPES)}"]
    elif beyond := [s for s in scopes if s not in may]:
        errors["scopes"] = [f"your role ({role_of(user) or 'none'}) does not allow the scope {beyond[0]!r}: "
                            f"you may give {', '.join(may) or 'no scope'}"]
    if expires is not None and expires <= timezone.now():
        errors["expires"] = ["the expiry must be in the future"]
    try:
        networks = parse_networks(allowed_networks)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, key_id=key_id, secret_hash=hash_secret(secret),
                                    scopes=[s for s in SCOPES if s in scopes], allowed_networks=networks,
                                    expires=expires)
    record(actor, "create", token, object_type="apitoken", object_repr=f"API token {name!r} of {user}",
           after=_token_snapshot(token))
    return token, f"{TOKEN_PREFIX}{key_id}_{secret}"


@transaction.atomic
def revoke_token(actor: Actor, token: ApiToken) -> ApiToken:
    """Revoke a token: refused from the next request on. Revoking a revoked token changes nothing."""
    token = ApiToken.objects.select_for_update().select_related("user").get(pk=token.pk)
    if token.revoked is not None:
        return token
    before = _token_snapshot(token)
    token.revoked = timezone.now()
    token.save(update_fields=["revoked"])
    record(actor, "update", token, object_type="apitoken", object_repr=f"API token {token.name!r} of {token.user}",
           before=before, after=_token_snapshot(token))
    return token


class Refused(Exception):
    """A presented token is not accepted; the message says why, without telling a guesser which part was wrong."""


def check(text: str, address: str | None, now: datetime | None = None) -> ApiToken:
    """The token `text` presented from `address`, if it is accepted now (else Refused)."""
    now = now or timezone.now()
    key_id, secret = _split(text)
    token = ApiToken.objects.select_related("user").filter(key_id=key_id).first()
    # Hash and compare even when no row matched, so that the time taken does not tell whether the id exists.
    expected = token.secret_hash if token else "0" * 64
    if not hmac.compare_digest(hash_secret(secret), expected) or token is None:
        raise Refused("invalid token")
    if token.revoked is not None:
        raise Refused("this token was revoked")
    if token.is_expired(now):
        raise Refused("this token has expired")
    if not token.user.is_active:
        raise Refused("the token's user is inactive")
    if token.allowed_networks and not _address_in(address, token.allowed_networks):
        raise Refused("this token may not be used from this address")
    _touch(token, address, now)
    return token


def _split(text: str) -> tuple[str, str]:
    if not text.startswith(TOKEN_PREFIX) or len(text) > 200:
        raise Refused("invalid token")
    key_id, _, secret = text[len(TOKEN_PREFIX):].partition("_")
    if not key_id or not secret:
        raise Refused("invalid token")
    return key_id, secret


def _address_in(address: str | None, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n) for n in networks)


def _touch(token: ApiToken, address: str | None, now: datetime) -> None:
    """Record the last use, at most once a minute per token: one UPDATE, skipped when recent (and, under
    concurrent requests, made by one of them only)."""
    if token.last_used is not None and now - token.last_used < LAST_USED_EVERY:
        return
    (ApiToken.objects.filter(pk=token.pk)
     .exclude(last_used__gt=now - LAST_USED_EVERY)
     .update(last_used=now, last_used_from=(address or "")[:45]))
    token.last_used, token.last_used_from = now, (address or "")[:45]
