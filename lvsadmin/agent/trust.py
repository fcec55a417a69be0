"""The agent's side of the trust between the panel and its balancers: its key, the panel's, and the gate.

Anything that reaches the broker can put a message on this balancer's queue, so the agent believes a message
only when it is signed by the panel's key (lvsadmin.signing), addressed to this balancer, for the task it came
as, not expired, not seen before, and not older than the revision the agent holds. Anything else changes
nothing, and is reported to the control side as a security event: once per reason every REPORT_EVERY seconds
with a count (a flood of forged messages is one event, not a flood of events). What it sends back, it signs
with its own key, whose public half the panel holds with the balancer.

Environment (the agent refuses to start without both keys):
  LVSADMIN_AGENT_KEY         this agent's private key file (default: agent_ed25519 beside the state file);
                             `python -m lvsadmin.agent.trust keygen PATH` makes one and prints its public key
  LVSADMIN_PANEL_PUBLIC_KEY  the panel's public key: its text ('ed25519:…') or a file holding it
                             (default: panel_ed25519.pub beside the state file)
  LVSADMIN_MESSAGE_TTL       seconds a report or backup this agent sends stays valid (default 900)
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lvsadmin import signing
from lvsadmin.protocol import HEARTBEAT_TASK, RECONCILE_TASK, SECURITY_EVENT_TASK, SecurityReport

log = logging.getLogger(__name__)

REPORT_EVERY = 600.0  # seconds between two security events of one reason
DEFAULT_TTL = 900.0


@dataclass
class AgentKeys:
    signer: signing.Signer
    panel: dict  # {fingerprint: the panel's public key}
    path: Path | None = None  # this agent's key file (its rotation: `pending_path`)


def pending_path(key_path: str | os.PathLike) -> Path:
    """Where `python -m lvsadmin.agent.rekey` keeps the new key until the panel confirms it."""
    return Path(f"{key_path}.new")


def key_paths(state_path: str | os.PathLike) -> tuple[Path, str]:
    """(this agent's key file, the panel's public key as configured) for a state file."""
    beside = Path(state_path).parent
    own = Path(os.environ.get("LVSADMIN_AGENT_KEY") or beside / "agent_ed25519")
    panel = os.environ.get("LVSADMIN_PANEL_PUBLIC_KEY") or str(beside / "panel_ed25519.pub")
    return own, panel


def load_keys(state_path: str | os.PathLike) -> AgentKeys:
    """The agent's key pair and the panel's public key; KeyFileError saying what is missing."""
    own, panel = key_paths(state_path)
    try:
        signer = signing.Signer(signing.load_private_key(own))
    except signing.KeyFileError as exc:
        raise signing.KeyFileError(
            f"{exc}. The agent needs a key pair of its own (LVSADMIN_AGENT_KEY): make one with "
            f"`python -m lvsadmin.agent.trust keygen {own}` and register its public key with the balancer "
            "in the panel") from None
    try:
        public = signing.load_public(panel)
    except signing.KeyFileError as exc:
        raise signing.KeyFileError(
            f"{exc}. The agent needs the panel's public key (LVSADMIN_PANEL_PUBLIC_KEY: the key's text or a "
            "file holding it; the panel's is var/panel_ed25519.pub where scripts/setup ran)") from None
    return AgentKeys(signer=signer, panel={signing.fingerprint(public): public}, path=own)


def message_ttl() -> float:
    return float(os.environ.get("LVSADMIN_MESSAGE_TTL") or DEFAULT_TTL)


class Gate:
    """Opens what the panel sends, signs what goes back, and reports what it refused (once per reason)."""

    def __init__(self, name: str, keys: AgentKeys, send: Callable[..., None], clock: Callable[[], float] = time.time,
                 report_every: float = REPORT_EVERY):
        self.name, self.keys, self.send, self.clock = name, keys, send, clock
        self.report_every = report_every
        self.nonces = signing.NonceMemory()
        self._lock = threading.Lock()
        self._reported: dict[str, float] = {}  # reason -> when it was last reported
        self._unreported: dict[str, int] = {}  # reason -> refusals since then

    def open(self, task: str, message, newest_revision: Callable[[], int] | None = None,
             lineage: Callable[[], str] | None = None) -> dict | None:
        """The body of a message the panel signed for this balancer; None (reported) for anything else.

        newest_revision: the revision the agent holds (of `lineage()`); a reconcile of that lineage older than it
        is a replay: reported, and its body still returned so that the agent answers it as stale, changing
        nothing. (One of a new lineage is the panel taking the balancer back: the agent starts over.)
        """
        now = self.clock()
        try:
            opened = signing.open_envelope(message, self.keys.panel, task=task, to=self.name, now=now)
            body = opened.body
            if body.get("balancer") not in (None, "", self.name):
                raise signing.Refused(signing.WRONG_BALANCER, f"a body for balancer {body.get('balancer')!r}")
            if task == RECONCILE_TASK and opened.revision != int(body.get("revision") or 0):
                raise signing.Refused(signing.BAD_SIGNATURE, "the envelope's revision is not the snapshot's")
            with self._lock:
                self.nonces.check(opened, now)
        except signing.Refused as refused:
            log.error("refused a %s message: %s", task, refused)
            self.refused(refused, task)
            return None
        held = lineage() if lineage is not None else ""
        same_lineage = not opened.lineage or not held or opened.lineage == held
        if task == RECONCILE_TASK and newest_revision is not None and same_lineage and \
                opened.revision < newest_revision():
            self.refused(signing.Refused(signing.REPLAYED, f"revision {opened.revision}, older than revision "
                                                           f"{newest_revision()} held"), task)
        return body

    def refused(self, refused: signing.Refused, task: str) -> None:
        """Count a refusal; report it when its reason was not reported in the last `report_every` seconds."""
        now = self.clock()
        with self._lock:
            count = self._unreported.get(refused.reason, 0) + 1
            last = self._reported.get(refused.reason)
            if last is not None and now - last < self.report_every:
                self._unreported[refused.reason] = count
                return
            self._reported[refused.reason] = now
            self._unreported[refused.reason] = 0
        report = SecurityReport(balancer=self.name, reason=refused.reason, task=task, detail=refused.detail,
                                count=count)
        try:
            self.send(SECURITY_EVENT_TASK, self.seal(SECURITY_EVENT_TASK, report.to_dict()))
        except Exception:
            log.exception("could not report a refused message")

    def switch_key(self, fingerprint: str) -> bool:
        """The panel confirmed this agent's new key (`fingerprint`): sign with it from now on, and keep it as this
        agent's key file. False (nothing changes) when no pending key of that fingerprint is here."""
        if self.keys.path is None:
            return False
        pending = pending_path(self.keys.path)
        with self._lock:
            if self.keys.signer.fingerprint == fingerprint:
                return True
            try:
                key = signing.load_private_key(pending)
            except signing.KeyFileError:
                log.error("the panel confirmed key %s, but no new key is pending at %s", fingerprint, pending)
                return False
            if signing.fingerprint(key) != fingerprint:
                log.error("the panel confirmed key %s, not the pending one (%s)", fingerprint,
                          signing.fingerprint(key))
                return False
            os.replace(pending, self.keys.path)
            Path(f"{self.keys.path}.pub").write_text(signing.public_text(key) + "\n")
            Path(f"{pending}.pub").unlink(missing_ok=True)
            self.keys.signer = signing.Signer(key)
        log.warning("this agent now signs with its new key %s", fingerprint)
        return True

    def seal(self, task: str, body: dict, ttl: float | None = None) -> dict:
        """`body` signed by this agent, from this balancer."""
        if ttl is None:
            ttl = message_ttl()
        revision = body.get("applied_revision") if task == HEARTBEAT_TASK else body.get("revision")
        return self.keys.signer.seal(task, body, origin=self.name, revision=int(revision or 0), ttl=ttl,
                                     now=self.clock())


if __name__ == "__main__":
    sys.exit(signing.main(sys.argv[1:]))
