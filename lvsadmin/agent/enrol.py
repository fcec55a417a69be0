"""Enrol this balancer's agent with the panel: exchange a one-time token for the panel's public key, registering
this agent's own (made here when missing). No Django: plain HTTP(S) to the panel's /enrol/.

    python -m lvsadmin.agent.enrol --panel https://panel.example --balancer lb1 --token TOKEN \\
        [--key /var/lib/lvsadmin-agent/agent_ed25519] [--panel-key /var/lib/lvsadmin-agent/panel_ed25519.pub]

Prints the fingerprints of both keys (compare the panel's with the one its operators see); exit status 0 when
enrolled, 1 when the panel refused (the token wrong, used or expired), 2 on bad use.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from lvsadmin import signing


def enrol(panel: str, balancer: str, token: str, key_path: Path, panel_key_path: Path, timeout: float = 30) -> dict:
    """Register this agent's key (made when missing) with the panel; writes the panel's public key; its answer."""
    key = signing.load_private_key(key_path) if key_path.exists() else signing.write_private_key(key_path)
    body = json.dumps({"balancer": balancer, "token": token, "public_key": signing.public_text(key)}).encode()
    request = urllib.request.Request(panel.rstrip("/") + "/enrol/", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (the operator's URL)
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error")
        except ValueError:
            reason = None
        raise RuntimeError(f"the panel refused: {reason or exc}") from None
    panel_key = signing.parse_public(answer["panel_public_key"])  # ValueError for anything but a key
    panel_key_path.parent.mkdir(parents=True, exist_ok=True)
    panel_key_path.write_text(signing.public_text(panel_key) + "\n")
    return answer


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lvsadmin.agent.enrol", description=__doc__.split("\n\n")[0])
    parser.add_argument("--panel", required=True, help="the panel's URL")
    parser.add_argument("--balancer", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--key", default="/var/lib/lvsadmin-agent/agent_ed25519", type=Path)
    parser.add_argument("--panel-key", default="/var/lib/lvsadmin-agent/panel_ed25519.pub", type=Path)
    args = parser.parse_args(argv)
    try:
        answer = enrol(args.panel, args.balancer, args.token, args.key, args.panel_key)
    except (RuntimeError, OSError, ValueError, KeyError, signing.KeyFileError) as exc:
        print(f"enrolment of {args.balancer} failed: {exc}", file=sys.stderr)
        return 1
    print(f"enrolled {answer['balancer']}: this agent's key {answer['fingerprint']} ({args.key}); the panel's key "
          f"{signing.fingerprint(answer['panel_public_key'])} ({args.panel_key})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
