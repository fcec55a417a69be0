"""Rotate this balancer's agent key without losing a heartbeat: `python -m lvsadmin.agent.rekey`
(or `scripts/run-agent --rekey NAME`), with the agent's environment (LVSADMIN_BALANCER, the broker, the state file,
LVSADMIN_AGENT_KEY, LVSADMIN_PANEL_PUBLIC_KEY: lvsadmin.agent.app, lvsadmin.agent.trust).

It makes a new key pair beside the current one (KEY.new, kept for a retry until the panel confirms) and sends the
new public key to the panel in a `rekey` message signed by the CURRENT key. The panel (only when that key is the
balancer's and not revoked) makes the new key the balancer's, keeps believing the old one until the first message
signed by the new one (or PANEL_MESSAGE_TTL), audits it, and confirms to the running agent, signed; the agent then
signs with the new key and moves it to KEY. Nothing signed in between is refused: no heartbeat is lost.
"""

from __future__ import annotations

import sys

from lvsadmin import signing
from lvsadmin.protocol import REKEY_TASK

from .trust import pending_path


def main(argv: list[str]) -> int:
    if argv:
        print("usage: python -m lvsadmin.agent.rekey  (with the agent's environment)", file=sys.stderr)
        return 2
    from .app import GATE, NAME, _post  # refuses to start (SystemExit) without the agent's keys

    if GATE.keys.path is None:
        print("no agent key file", file=sys.stderr)
        return 1
    pending = pending_path(GATE.keys.path)
    key = signing.load_private_key(pending) if pending.exists() else signing.write_private_key(pending)
    _post(REKEY_TASK, GATE.seal(REKEY_TASK, {"balancer": NAME, "public_key": signing.public_text(key)}))
    print(f"{NAME}: sent the new key {signing.fingerprint(key)} ({pending}), signed by the current key "
          f"{GATE.keys.signer.fingerprint}; the agent switches to it when the panel confirms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
