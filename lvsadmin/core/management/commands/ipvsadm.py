"""`manage.py ipvsadm --cluster NAME [--create] [--user NAME] [--dry-run] [--comment TEXT] ARGS…`

ipvsadm's interface over a cluster's desired state. `-S [-n]` prints it, `-L`/`-l` lists it
(`-n --stats --rate --thresholds --persistent-conn --exact --nosort --timeout`), `-R` reads a save
from standard input and replaces the table (showing what changes), and `-A -E -D -C -a -e -d --set`
edit it. Edits are audited under --user; nothing reaches a kernel until the plan is applied.
Exit codes: 0 ok, 2 bad input (nothing changed).
"""

from __future__ import annotations

import sys

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from lvsadmin.audit.log import Actor
from lvsadmin.core import selectors, services
from lvsadmin.core.models import Cluster
from lvsadmin.ipvs import rules

OWN_OPTIONS = {"--cluster": True, "--user": True, "--comment": True, "--create": False, "--dry-run": False}
LIST_FLAGS = {"--stats": "stats", "--rate": "rate", "--thresholds": "thresholds",
              "--persistent-conn": "persistent-conn", "--tun-info": "tun-info"}


class BadInput(CommandError):
    def __init__(self, message: str):
        super().__init__(message, returncode=2)


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Our own options come first; everything from the first other word on is ipvsadm's."""
    own: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        name = word.split("=", 1)[0]
        if name not in OWN_OPTIONS:
            break
        own.append(word)
        if OWN_OPTIONS[name] and "=" not in word:
            own.append(argv[index + 1] if index + 1 < len(argv) else "")
            index += 1
        index += 1
    return own, argv[index:]


def describe(change: services.Change) -> str:
    sign = {"create": "+", "update": "~", "delete": "-"}[change.action]
    text = f"{sign} {change.kind} {change.label}"
    if change.action == "update":
        text += ": " + ", ".join(f"{k} {change.before.get(k)!r} -> {change.after.get(k)!r}"
                                 for k in change.changed_fields())
    return text


class Command(BaseCommand):
    help = __doc__.strip().splitlines()[0]

    def add_arguments(self, parser):
        parser.add_argument("--cluster", required=True)
        parser.add_argument("--create", action="store_true", help="create the cluster if it does not exist")
        parser.add_argument("--user", default="", help="the user the edit is audited under (default: system)")
        parser.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
        parser.add_argument("--comment", default="")
        parser.add_argument("--ipvsadm-args", dest="ipvsadm", nargs="*", default=[], help="(internal)")

    def run_from_argv(self, argv):
        own, ipvsadm_args = split_argv(argv[2:])
        parser = self.create_parser(argv[0], argv[1])
        options = parser.parse_args(own)
        cmd_options = vars(options)
        cmd_options["ipvsadm"] = ipvsadm_args
        args = cmd_options.pop("args", ())
        try:
            self.execute(*args, **cmd_options)
        except CommandError as exc:
            self.stderr.write(f"ipvsadm: {exc}")
            sys.exit(exc.returncode)

    def handle(self, *args, cluster: str, create: bool, user: str, dry_run: bool, comment: str, ipvsadm: list,
               **options):
        if not ipvsadm:
            raise BadInput("no command given (try -Ln, -S -n, -R, -A, -a …)")
        # A dry run does the real work in a transaction that is then rolled back: it shows exactly what would be.
        with transaction.atomic():
            self._run(cluster, create, self._actor(user, comment), dry_run, ipvsadm)
            if dry_run:
                transaction.set_rollback(True)

    def _run(self, cluster: str, create: bool, actor: Actor, dry_run: bool, ipvsadm: list[str]):
        target = Cluster.objects.filter(name=cluster).first()
        if target is None:
            if not create:
                raise BadInput(f"no cluster named {cluster!r} (add --create to make it)")
            try:
                target = services.create_cluster(actor, name=cluster)
            except ValidationError as exc:
                raise BadInput(f"cannot create cluster {cluster!r}: {'; '.join(exc.messages)}")
        first = ipvsadm[0]
        if first in ("-S", "--save"):
            return self._save(target, ipvsadm[1:])
        if first in ("-L", "-l", "--list") or (first.startswith("-L") and first[2:].isalpha()):
            return self._list(target, ipvsadm)
        if first in ("-R", "--restore"):
            text = sys.stdin.read() if self.stdin is None else self.stdin.read()
            return self._replace(actor, target, lambda: rules.parse_save(text), dry_run, "import", text)
        line = " ".join(ipvsadm)

        def edited():
            command = rules.parse_command(ipvsadm)
            current = selectors.desired_table(target)
            try:
                return rules.apply_command(current, command)
            except rules.CommandError as exc:
                raise rules.ParseError(1, exc.token, exc.message) from None

        return self._replace(actor, target, edited, dry_run, "command", line)

    stdin = None

    def _actor(self, username: str, comment: str) -> Actor:
        if not username:
            return Actor.system("cli", comment=comment)
        account = get_user_model().objects.filter(username=username).first()
        if account is None:
            raise BadInput(f"no user named {username!r}")
        return Actor.for_user(account, comment=comment)

    def _save(self, cluster: Cluster, rest: list[str]):
        numeric = any(word in ("-n", "--numeric") for word in rest)
        unknown = [w for w in rest if w not in ("-n", "--numeric")]
        if unknown:
            raise BadInput(f"illegal option {unknown[0]!r} with -S")
        table = selectors.desired_table(cluster)
        self.stdout.write(rules.format_save(table, numeric=numeric), ending="")

    def _list(self, cluster: Cluster, words: list[str]):
        flags = set()
        for word in words:
            if word.startswith("--"):
                flags.add(word)
            else:
                flags.update("-" + letter for letter in word[1:])
        table = selectors.desired_table(cluster)
        if "--timeout" in flags:
            self.stdout.write(rules.format_timeout(table.timeouts), ending="")
            return
        if "--daemon" in flags:
            return  # the desired state holds no running sync daemons
        mode = next((LIST_FLAGS[f] for f in flags if f in LIST_FLAGS), "default")
        listing = rules.format_list(table, numeric="-n" in flags or "--numeric" in flags, mode=mode,
                                    exact="--exact" in flags or "-x" in flags, sort="--nosort" not in flags)
        self.stdout.write(listing, ending="")

    def _replace(self, actor: Actor, cluster: Cluster, build, dry_run: bool, action: str, source: str):
        try:
            table = build()
            changes = services.replace_table(actor, cluster, table, action=action, source=source)
        except rules.ParseError as exc:
            raise BadInput(str(exc) if action == "import" else exc.message)
        except ValidationError as exc:
            raise BadInput("; ".join(exc.messages))
        for change in changes.changes:
            self.stdout.write(describe(change))
        verb = "would change" if dry_run else "changed"
        if changes:
            self.stdout.write(f"{verb}: {changes.summary()}" + ("" if dry_run else f" (revision {changes.revision})"))
        else:
            self.stdout.write("no changes")
