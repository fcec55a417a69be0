"""`lvsadmin --cluster NAME [--url URL] [--token TOKEN] [--dry-run] ARGS…`: ipvsadm against a panel, over its API.

    lvsadmin --cluster web -A -t 10.0.0.1:80 -s rr      edit the desired state (-A -E -D -C -a -e -d --set)
    lvsadmin --cluster web -Ln | -S -n                   list it, save it
    lvsadmin --cluster web -R [--dry-run] < saved        replace it with a save
    lvsadmin --cluster web plan                          what applying would change on each balancer
    lvsadmin --cluster web apply [--revision N] [--wait SECONDS]
    lvsadmin backup list [--balancer NAME]               backups, newest first (no --cluster needed)
    lvsadmin backup show ID                              one backup's ipvsadm -S -n text, hash checked
    lvsadmin backup take BALANCER [--wait SECONDS]       ask the balancer's agent for a backup now

The output and exit codes are manage.py ipvsadm's (0 ok, 2 bad input), and manage.py backups' for `backup`;
1: the panel could not be reached or refused the request, or an apply or a backup failed or did not finish
within --wait. The panel and the token come from
--url/--token, else LVSADMIN_URL/LVSADMIN_TOKEN, else ~/.config/lvsadmin/config (`url = …`, `token = …`; it
must not be readable by group or others). A client only: the standard library, nothing of Django.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

OWN_VALUED = ("--cluster", "--url", "--token", "--revision", "--wait", "--balancer")
OWN_FLAGS = ("--dry-run",)
ACTIONS = ("plan", "apply")


class Failure(Exception):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def split_argv(argv: list[str]) -> tuple[dict, list[str]]:
    """Our options wherever they stand (`--name value` or `--name=value`); the rest is ipvsadm's, in order."""
    own: dict = {}
    rest: list[str] = []
    words = iter(argv)
    for word in words:
        name, eq, value = word.partition("=")
        if name not in OWN_VALUED and name not in OWN_FLAGS:
            rest.append(word)
            continue
        if name in own:
            raise Failure(f"ipvsadm: {name} given twice", 2)
        if name in OWN_FLAGS:
            own[name] = True
            continue
        if not eq:
            value = next(words, None)
            if value is None:
                raise Failure(f"ipvsadm: {name} needs a value", 2)
        own[name] = value
    if "--cluster" not in own and rest[:1] != ["backup"]:
        raise Failure("ipvsadm: --cluster NAME is required", 2)
    if "--balancer" in own and rest[:2] != ["backup", "list"]:
        raise Failure("lvsadmin: --balancer is for `backup list`", 2)
    return own, rest


def read_config(path: Path) -> dict:
    if not path.exists():
        return {}
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise Failure(f"lvsadmin: {path} holds a token and is readable by others: chmod 600 {path}")
    out = {}
    for line in path.read_text().splitlines():
        key, eq, value = line.partition("=")
        if eq and not line.lstrip().startswith("#"):
            out[key.strip()] = value.strip()
    return out


def settings(own: dict) -> tuple[str, str]:
    config = read_config(Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "lvsadmin" / "config")
    url = own.get("--url") or os.environ.get("LVSADMIN_URL") or config.get("url")
    token = own.get("--token") or os.environ.get("LVSADMIN_TOKEN") or config.get("token")
    if not url or not token:
        raise Failure("lvsadmin: no panel to talk to: give --url and --token, set LVSADMIN_URL and LVSADMIN_TOKEN, "
                      "or write them in ~/.config/lvsadmin/config")
    return url.rstrip("/"), token


class Api:
    # The problems that are bad input (exit 2, named as the command does): a backup command adds 409, a corrupt
    # backup, which manage.py backups refuses with 2 too.
    def __init__(self, url: str, token: str, cluster: str, program: str = "ipvsadm", bad_input=(404, 422)):
        self.base, self.token = f"{url}/api/v1", token
        self.cluster = urllib.parse.quote(cluster, safe="")
        self.program, self.bad_input = program, bad_input

    def call(self, method: str, path: str, body: dict | None = None, query: list | None = None):
        url = f"{self.base}/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                text = response.read().decode()
                return json.loads(text) if response.headers.get_content_type() == "application/json" else text
        except urllib.error.HTTPError as exc:
            problem = _problem(exc)
            detail = problem.get("detail") or exc.reason
            if exc.code in self.bad_input:  # bad input, as manage.py ipvsadm (or backups) says it
                raise Failure(f"{self.program}: {detail}", 2) from None
            raise Failure(f"lvsadmin: {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise Failure(f"lvsadmin: cannot reach {self.base}: {getattr(exc, 'reason', exc)}") from None

    def cluster_path(self, *parts: str) -> str:
        return "/".join(("clusters", self.cluster, *parts)) + "/"


def _problem(exc: urllib.error.HTTPError) -> dict:
    try:
        body = json.loads(exc.read().decode())
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def kind_of(words: list[str]) -> str:
    """Which endpoint the line goes to (the panel checks the whole line): list, save, restore or edit."""
    for word in words:
        if word.startswith("--"):
            return {"--list": "list", "--save": "save", "--restore": "restore"}.get(word.partition("=")[0], "edit")
        if word.startswith("-") and len(word) > 1:
            return {"L": "list", "l": "list", "S": "save", "R": "restore"}.get(word[1], "edit")
    return "edit"


def ipvsadm(api: Api, words: list[str], dry_run: bool) -> str:
    kind = kind_of(words)
    if kind in ("list", "save"):
        return api.call("GET", api.cluster_path("ipvsadm", kind), query=[("arg", w) for w in words])
    if kind == "restore":
        body = {"restore": True, "argv": words, "commands": sys.stdin.buffer.read().decode("utf-8", "replace")}
    elif not words:
        raise Failure("ipvsadm: no command given (try -Ln, -S -n, -R, -A, -a …)", 2)
    else:
        body = {"argv": words}
    return api.call("POST", api.cluster_path("ipvsadm"), {**body, "dry_run": dry_run})["output"]


def show_plan(plan: dict) -> str:
    out = [f"cluster {plan['cluster']} at revision {plan['revision']}"]
    for b in plan["balancers"]:
        reported = b["reported"]
        source = f"against the table from {reported['source']}" if reported else "no table reported: assumed empty"
        out.append(f"{b['balancer']}: {b['total']} change(s), {source}")
        out += [f"  {line['action']:8} {line['what']} {line['label']}" + (f"  ({line['note']})" if line["note"] else "")
                for line in b["lines"]]
        if b["hidden"]:
            out.append(f"  … and {b['hidden']} more")
    return "\n".join(out) + "\n"


def apply(api: Api, own: dict) -> int:
    revision = own.get("--revision")
    if revision is None:
        revision = api.call("GET", api.cluster_path("plan"))["revision"]
    elif not revision.isdigit():
        raise Failure("ipvsadm: --revision takes a whole number", 2)
    sent = api.call("POST", api.cluster_path("apply"), {"revision": int(revision)})
    print(f"apply of revision {sent['revision']} sent to {', '.join(sent['balancers']) or 'no balancer'}")
    if own.get("--wait") is None:
        return 0
    try:
        deadline = time.monotonic() + float(own["--wait"])
    except ValueError:
        raise Failure("ipvsadm: --wait takes seconds", 2) from None
    return wait(api, sent["revision"], deadline)


def wait(api: Api, revision: int, deadline: float) -> int:
    """Poll until every balancer reports the revision; 1 when one fails or the time runs out."""
    while True:
        rows = api.call("GET", "balancers/", query=[("cluster", urllib.parse.unquote(api.cluster)),
                                                    ("limit", "1000")])["results"]
        failed = [b for b in rows if b["status"] in ("error", "offline")]
        for b in failed:
            print(f"{b['name']}: {b['status']}: {b['status_detail']}", file=sys.stderr)
        if failed:
            return 1
        waiting = [b["name"] for b in rows if b["applied_revision"] < revision]
        if not waiting:
            print(f"every balancer is at revision {revision}")
            return 0
        if time.monotonic() >= deadline:
            print(f"lvsadmin: not at revision {revision} in time: {', '.join(waiting)}", file=sys.stderr)
            return 1
        time.sleep(1)


def backup(own: dict, words: list[str]) -> int:
    """`backup list|show|take`: manage.py backups' verbs and output, over the API."""
    verb, args = (words[1] if len(words) > 1 else ""), words[2:]
    api = Api(*settings(own), "", program="lvsadmin", bad_input=(404, 409, 422))
    if verb == "list" and not args:
        sys.stdout.write(backup_list(api, own.get("--balancer")))
        return 0
    if verb == "show" and len(args) == 1 and args[0].isascii() and args[0].isdigit():
        sys.stdout.write(api.call("GET", f"backups/{int(args[0])}/", query=[("format", "text")]))
        return 0
    if verb == "take" and len(args) == 1:
        return backup_take(api, args[0], own.get("--wait"))
    raise Failure("lvsadmin: backup list [--balancer NAME] | backup show ID | backup take BALANCER [--wait S]", 2)


def backup_list(api: Api, balancer: str | None) -> str:
    query = [("limit", "50")] + ([("balancer", balancer)] if balancer else [])
    rows = api.call("GET", "backups/", query=query)["results"]
    if balancer and not rows and not api.call("GET", "balancers/", query=[("name", balancer)])["results"]:
        raise Failure(f"lvsadmin: no balancer named {balancer!r}", 2)
    out = [f"{'ID':>6}  {'TAKEN (UTC)':19}  {'BALANCER':16} {'TRIGGER':15} {'SVC':>5} {'RS':>6}  SHA256"]
    for b in rows:
        taken = datetime.fromisoformat(b["taken_at"]).astimezone(UTC)
        out.append(f"{b['id']:>6}  {taken:%Y-%m-%d %H:%M:%S}  {b['balancer']:16} {b['trigger']:15} "
                   f"{b['services']:>5} {b['real_servers']:>6}  {b['sha256'][:16]}")
    return "\n".join(out) + "\n"


def backup_take(api: Api, balancer: str, wait: str | None) -> int:
    sent = api.call("POST", f"balancers/{urllib.parse.quote(balancer, safe='')}/backups/")
    print(f"backup of {sent['balancer']} requested")
    if wait is None:
        return 0
    try:
        deadline = time.monotonic() + float(wait)
    except ValueError:
        raise Failure("lvsadmin: --wait takes seconds", 2) from None
    while True:
        rows = api.call("GET", "backups/", query=[("balancer", balancer), ("ordering", "-id"), ("limit", "1")])
        newest = rows["results"][0] if rows["results"] else None
        if newest and newest["id"] > (sent["newest"] or 0):
            print(f"backup {newest['id']} taken: {newest['services']} services, sha256 {newest['sha256']}")
            return 0
        if time.monotonic() >= deadline:
            print(f"lvsadmin: no backup arrived from {balancer} within {float(wait):g} s (is its agent running?)",
                  file=sys.stderr)
            return 1
        time.sleep(0.5)


def run(argv: list[str]) -> int:
    if argv in (["--help"], ["-h"]):
        print(__doc__.strip())
        return 0
    own, words = split_argv(argv)
    if words[:1] == ["backup"]:
        return backup(own, words)
    api = Api(*settings(own), own["--cluster"])
    if words[:1] == ["plan"] and len(words) == 1:
        sys.stdout.write(show_plan(api.call("GET", api.cluster_path("plan"))))
        return 0
    if words[:1] == ["apply"] and len(words) == 1:
        return apply(api, own)
    sys.stdout.write(ipvsadm(api, words, bool(own.get("--dry-run"))))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        code = run(sys.argv[1:] if argv is None else argv)
    except Failure as exc:
        print(exc, file=sys.stderr)
        code = exc.code
    sys.stdout.flush()
    return code
