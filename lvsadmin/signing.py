"""Signed messages between the panel and its balancers: Ed25519 envelopes around the protocol's bodies. No Django.

Anyone who can reach the broker can put a message on any queue (every balancer must reach it), so a message is
believed for its signature, not for where it was found. The panel signs what it sends to an agent with its own
key (a file made by scripts/setup, never in the database); each agent signs what it reports with a key of its
own, whose public half the panel holds with the balancer. An envelope is the message's body with what the
signature also covers:

    {"v": 2, "task": task name, "to": balancer (panel -> agent) or "", "from": balancer (agent -> panel) or "",
     "revision": int, "lineage": the cluster's lineage id, "expires": unix time, "nonce": random hex,
     "key": the signer's fingerprint, "body": the protocol message as a JSON text, "sig": Ed25519 over the rest}

The signature is over the canonical JSON of everything but "sig" (sorted keys, no spaces, UTF-8), with the body
text replaced by its SHA-256: what a receiver re-serializes from the parsed message, whatever the broker's JSON
did to spacing or key order. The body travels as the JSON text it was signed as: the receiver hashes that text and
parses it once (instead of re-serializing a snapshot of 11,000 objects to check it), so signing costs the agent
next to nothing (`make bench`: signing-overhead). Version 1 signed the body text itself: re-encoding a 1 MB text
and signing it cost 14 ms where hashing it costs 0.7; it is still believed, so agents and panel need not be
upgraded at the same moment. The task name is signed too, so a body signed for one task cannot be replayed
as another.

`open_envelope` refuses (raises `Refused` with a `reason` of REASONS) anything unsigned, signed by a key it was
not given, altered, for another task or balancer, or expired; replays within the expiry are the receiver's to
refuse (revisions only move forward; nonces it has seen).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

VERSION = 2
BELIEVED_VERSIONS = (1, VERSION)  # 1: the body text itself signed (see signed_bytes)
PUBLIC_PREFIX = "ed25519:"

UNSIGNED = "unsigned"
UNKNOWN_KEY = "unknown-key"
BAD_SIGNATURE = "bad-signature"
WRONG_TASK = "wrong-task"
WRONG_BALANCER = "wrong-balancer"
EXPIRED = "expired"
REPLAYED = "replayed"
REVOKED = "revoked"
REASONS = (UNSIGNED, UNKNOWN_KEY, BAD_SIGNATURE, WRONG_TASK, WRONG_BALANCER, EXPIRED, REPLAYED, REVOKED)


class Refused(Exception):
    """A message that is not to be believed; `reason` is one of REASONS, `detail` says what was wrong."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class KeyFileError(ValueError):
    pass


# --- keys --------------------------------------------------------------------------------------------------


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def development_key() -> Ed25519PrivateKey:
    """A publicly known key, for DEBUG without a key file only."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"lvsadmin development panel key").digest())


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_private_key(path: str | os.PathLike, key: Ed25519PrivateKey | None = None) -> Ed25519PrivateKey:
    """Write a (new) private key to `path`, readable by its owner only, and its public text to `path`.pub."""
    key = key or generate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem(key))
    os.replace(tmp, path)
    Path(f"{path}.pub").write_text(public_text(key.public_key()) + "\n")
    return key


def load_private_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read the key file {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} holds no private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def public_text(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """'ed25519:' and the raw 32 bytes in base64: what the panel stores and an operator pastes."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PUBLIC_PREFIX + base64.b64encode(raw).decode()


def parse_public(text: str) -> Ed25519PublicKey:
    """A public key from its text ('ed25519:BASE64'); ValueError for anything else."""
    text = (text or "").strip()
    if not text.startswith(PUBLIC_PREFIX):
        raise ValueError(f"a public key starts with {PUBLIC_PREFIX!r}")
    try:
        raw = base64.b64decode(text[len(PUBLIC_PREFIX):], validate=True)
    except ValueError:
        raise ValueError("the public key is not base64") from None
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_public(value: str) -> Ed25519PublicKey:
    """A public key given as its text, or as the path of a file holding it."""
    value = (value or "").strip()
    if not value.startswith(PUBLIC_PREFIX):
        try:
            value = Path(value).read_text().strip()
        except OSError as exc:
            raise KeyFileError(f"cannot read the public key file {value}: {exc.strerror or exc}") from None
    try:
        return parse_public(value)
    except ValueError as exc:
        raise KeyFileError(str(exc)) from None


def fingerprint(key: Ed25519PublicKey | Ed25519PrivateKey | str) -> str:
    """'SHA256:' and the base64 of the raw public key's SHA-256, as ssh-keygen -l prints one."""
    if isinstance(key, str):
        key = parse_public(key)
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


# --- envelopes ---------------------------------------------------------------------------------------------


def canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def signed_bytes(signed: dict) -> bytes:
    """What the signature covers: the envelope without "sig", its body text as its SHA-256 (version 1: the text)."""
    if signed.get("v") == 1:
        return canonical(signed)
    body = signed.get("body")
    digest = hashlib.sha256(body.encode()).hexdigest() if isinstance(body, str) else None
    return canonical({**signed, "body": digest})


class Signer:
    """One private key, and its fingerprint worked out once."""

    def __init__(self, key: Ed25519PrivateKey):
        self.key = key
        self.public = key.public_key()
        self.fingerprint = fingerprint(self.public)

    def seal(self, task: str, body: dict, *, to: str = "", origin: str = "", revision: int = 0, lineage: str = "",
             ttl: float = 3600.0, now: float | None = None) -> dict:
        """The envelope of `body` for `task`, valid for `ttl` seconds."""
        now = time.time() if now is None else now
        signed = {"v": VERSION, "task": task, "to": to, "from": origin, "revision": int(revision or 0),
                  "lineage": lineage or "", "expires": round(now + ttl, 3), "nonce": secrets.token_hex(12),
                  "key": self.fingerprint, "body": json.dumps(body, separators=(",", ":"), allow_nan=False)}
        signed["sig"] = base64.b64encode(self.key.sign(signed_bytes(signed))).decode()
        return signed


@dataclass(frozen=True)
class Opened:
    """A verified envelope: its body and what the signature covered with it."""

    task: str
    to: str
    origin: str
    revision: int
    lineage: str
    expires: float
    nonce: str
    key: str
    body: dict


def is_envelope(message) -> bool:
    return isinstance(message, dict) and "sig" in message and "body" in message


def open_envelope(message, keys: dict[str, Ed25519PublicKey], *, task: str, to: str | None = None,
                  now: float | None = None) -> Opened:
    """Verify `message` against the public keys it may be signed with ({fingerprint: key}); its body if good.

    task: the task it must be signed for; to: the balancer it must be addressed to (an agent's name), if any.
    Raises Refused.
    """
    if not is_envelope(message) or not isinstance(message.get("body"), str):
        raise Refused(UNSIGNED, f"an unsigned message for {task}")
    signed = {k: v for k, v in message.items() if k != "sig"}
    fp = signed.get("key")
    public = keys.get(fp) if isinstance(fp, str) else None
    if public is None:
        raise Refused(UNKNOWN_KEY, f"signed by a key not trusted here ({str(fp)[:60]})")
    try:
        sig = base64.b64decode(str(message["sig"]), validate=True)
        public.verify(sig, signed_bytes(signed))
    except (InvalidSignature, ValueError, TypeError):
        raise Refused(BAD_SIGNATURE, f"the signature of a {task} message does not match its content") from None
    if signed.get("v") not in BELIEVED_VERSIONS:
        raise Refused(UNSIGNED, f"envelope version {signed.get('v')!r} is not one of {BELIEVED_VERSIONS}")
    if signed.get("task") != task:
        raise Refused(WRONG_TASK, f"signed for {signed.get('task')!r}, delivered as {task}")
    if to is not None and signed.get("to") != to:
        raise Refused(WRONG_BALANCER, f"addressed to balancer {signed.get('to')!r}, delivered to {to}")
    now = time.time() if now is None else now
    expires = signed.get("expires")
    if not isinstance(expires, (int, float)) or isinstance(expires, bool) or expires < now:
        raise Refused(EXPIRED, f"a {task} message that expired at {expires} (now {now:.0f})")
    try:
        body = json.loads(signed["body"])
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Refused(UNSIGNED, f"a {task} message whose signed body is no JSON object")
    return Opened(task=task, to=str(signed.get("to") or ""), origin=str(signed.get("from") or ""),
                  revision=int(signed.get("revision") or 0), lineage=str(signed.get("lineage") or ""),
                  expires=float(expires), nonce=str(signed.get("nonce") or ""), key=fp, body=body)


def peek_origin(message) -> str:
    """The balancer an (unverified) envelope says it comes from: only to know which key to check it with."""
    if not isinstance(message, dict):
        return ""
    return str(message.get("from") or message.get("balancer") or "")[:100]


def main(argv: list[str]) -> int:
    """`python -m lvsadmin.signing keygen PATH`: a new key pair (PATH, PATH.pub) unless PATH exists; prints the
    public key."""
    if len(argv) != 2 or argv[0] != "keygen":
        print("usage: python -m lvsadmin.signing keygen PATH", file=sys.stderr)
        return 2
    path = Path(argv[1])
    key = load_private_key(path) if path.exists() else write_private_key(path)
    if not Path(f"{path}.pub").exists():
        Path(f"{path}.pub").write_text(public_text(key) + "\n")
    print(public_text(key))
    return 0


class NonceMemory:
    """Nonces seen until their messages expire: a replay of a message within its expiry is recognised."""

    def __init__(self, limit: int = 100_000):
        self.limit = limit
        self._seen: dict[str, float] = {}

    def check(self, opened: Opened, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if len(self._seen) >= self.limit:
            self._seen = {n: e for n, e in self._seen.items() if e >= now}
        if opened.nonce in self._seen:
            raise Refused(REPLAYED, f"a {opened.task} message seen before (nonce {opened.nonce[:12]})")
        self._seen[opened.nonce] = opened.expires


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
