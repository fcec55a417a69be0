"""`manage.py ipvsadm --cluster NAME [--create] [--user NAME] [--dry-run] [--comment TEXT] ARGS…`

ipvsadm's interface over a cluster's desired state. `-S [-n]` prints it, `-L`/`-l` lists it
(`-n --stats --rate --thresholds --persistent-conn --tun-info --exact --nosort --timeout`, `-t/-u/-f`
for one service), `-R` reads a save from standard input and replaces the table (showing what
changes; input with no rules is refused: `-C` empties a cluster), and `-A -E -D -C -a -e -d --set`
edit it. Our own options may stand anywhere on the line, with `=` or a separate value; every other
word is ipvsadm's and is checked by ipvsadm's rules. Edits are audited under --user; nothing reaches
a kernel until the plan is applied.
Exit codes: 0 ok, 2 bad input (nothing changed).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from lvsadmin.audit.log import Actor
from lvsadmin.core import selectors, services
from lvsadmin.core.models import Cluster
from lvsadmin.ipvs import rules
from lvsadmin.ipvs.rules.options import OptionError, Popt

# Ours (and Django's, which manage.py has already applied), taking a value or not.
OWN_VALUED = ("--cluster", "--user", "--comment", "--settings", "--pythonpath", "--verbosity")
OWN_FLAGS = ("--create", "--dry-run", "--traceback", "--no-color", "--force-color", "--skip-checks")

# popt's tag -> ipvsadm's option name, in ipvsadm's optnames order (its messages name the first in that order).
OPTION_OF_TAG = {
    "n": "numeric", "c": "connection", "t": "service-address", "u": "service-address",
    "sctp-service": "service-address", "f": "service-address", "s": "scheduler", "p": "persistent",
    "M": "netmask", "r": "real-server", "m": "forwarding-method", "i": "forwarding-method",
    "g": "forwarding-method", "w": "weight", "x": "u-threshold", "y": "l-threshold",
    "mcast-interface": "mcast-interface", "timeout": "timeout", "daemon": "daemon", "stats": "stats",
    "rate": "rate", "thresholds": "thresholds", "persistent-conn": "persistent-conn", "nosort": "nosort",
    "syncid": "syncid", "X": "exact", "o": "ops", "pe": "pe", "b": "sched-flags", "mcast-group": "mcast-group",
    "mcast-port": "mcast-port", "mcast-ttl": "mcast-ttl", "sync-maxlen": "sync-maxlen", "tun-info": "tun-info",
    "tun-type": "tun-type", "tun-port": "tun-port", "tun-nocsum": "tun-nocsum", "tun-csum": "tun-csum",
    "tun-remcsum": "tun-remcsum",
}  # fmt: skip
OPTION_ORDER = list(dict.fromkeys(OPTION_OF_TAG.values()))
SERVICE_SWITCH = {"t": "-t", "u": "-u", "sctp-service": "--sctp-service", "f": "-f"}

# ipvsadm 1.31's commands_v_options for the commands that do not edit: ' ' optional, '1' at most one of
# these; an option not named is illegal with the command. (The editing commands are rules.parse_command's.)
LEGAL = {
    "list": {"numeric": " ", "connection": "1", "service-address": "1", "timeout": "1", "daemon": "1",
             "stats": " ", "rate": " ", "thresholds": " ", "persistent-conn": " ", "nosort": " ",
             "syncid": " ", "exact": " ", "tun-info": " "},
    "save": {"numeric": " "},
    "restore": {},
}  # fmt: skip
COMMAND_OF = {"L": "list", "l": "list", "list": "list", "S": "save", "save": "save", "R": "restore",
              "restore": "restore"}
# The listing formats, in the order ipvsadm's print_title picks the first one given.
LIST_MODES = ("stats", "rate", "thresholds", "persistent-conn", "tun-info")


class BadInput(CommandError):
    def __init__(self, message: str):
        super().__init__(message, returncode=2)


def check_text(what: str, text: str) -> None:
    """A NUL or a word that is not UTF-8 (a shell passes raw bytes) would fail in the database: refuse it here."""
    if "\0" in text:
        raise BadInput(f"{what} contains a NUL byte")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"{what} is not valid UTF-8") from None


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Our own options, wherever they stand, as `--name=value`; and ipvsadm's words, in order."""
    own: list[str] = []
    rest: list[str] = []
    seen: set[str] = set()
    words = iter(argv)
    for word in words:
        name, eq, value = word.partition("=")
        if name not in OWN_VALUED and name not in OWN_FLAGS:
            check_text(f"the argument {ascii(word)}", word)
            rest.append(word)
            continue
        if name in seen:
            raise BadInput(f"{name} given twice")
        seen.add(name)
        if name in OWN_FLAGS:
            if eq:
                raise BadInput(f"{name} takes no value")
            own.append(name)
            continue
        if not eq:
            value = next(words, None)
            if value is None:
                raise BadInput(f"{name} needs a value")
        check_text(name, value)
        own.append(f"{name}={value}")
    if "--cluster" not in seen:
        raise BadInput("--cluster NAME is required")
    return own, rest


@dataclass(frozen=True)
class Request:
    """One ipvsadm command line, checked: what to do, with which of ipvsadm's options."""

    kind: str  # "list", "save", "restore" or "edit"
    options: frozenset[str] = frozenset()
    service: tuple | None = None  # -L -t/-u/-f: the one service to list
    command: rules.Command | None = None  # an edit


def command_kind(words: list[str]) -> str:
    """The command is the first option on the line, as popt reads it (`-Ln` is -L)."""
    for word in words:
        if word == "--":
            break
        if word.startswith("--"):
            return COMMAND_OF.get(word[2:].partition("=")[0], "edit")
        if word.startswith("-") and len(word) > 1:
            return COMMAND_OF.get(word[1], "edit")
    return "edit"


def read_command_line(words: list[str]) -> Request:
    """ipvsadm's parse_options and generic_opt_check for a line; BadInput with ipvsadm's message."""
    if not words:
        raise BadInput("no command given (try -Ln, -S -n, -R, -A, -a …)")
    kind = command_kind(words)
    if kind == "edit":
        try:
            return Request("edit", command=rules.parse_command(words))
        except rules.ParseError as exc:
            raise BadInput(exc.message) from None
    given, service_words = _read_options(words)
    _check_options(kind, given)
    service = None
    if service_words:  # the same address rules as an edit's: read it as one
        try:
            service = rules.parse_command(["-D", *service_words]).service_key
        except rules.ParseError as exc:
            raise BadInput(exc.message) from None
    return Request(kind, frozenset(given), service)


def _read_options(words: list[str]) -> tuple[list[str], list[str]]:
    # rules' popt is the one reading of ipvsadm's option syntax (bundles, `=`, arguments).
    popt = Popt(words)
    given: list[str] = []
    service_words: list[str] = []
    try:
        popt.get()  # the command itself
        while (item := popt.get()) is not None:
            tag, value = item
            if tag == "sort":
                continue  # a no-op in ipvsadm, kept for compatibility
            if tag == "6":
                if "-f" not in service_words:
                    raise BadInput("-6 used before -f")
                service_words.append("-6")
                continue
            name = OPTION_OF_TAG.get(tag)
            if name is None:  # a second command, -h, -v, --start-daemon …
                raise BadInput(f"invalid option `{popt.bad_option()}'")
            if name in given:
                raise BadInput(f"multiple '{name}' options specified")
            given.append(name)
            if name == "service-address":
                service_words += [SERVICE_SWITCH[tag], value or ""]
    except OptionError as exc:
        raise BadInput(exc.message) from None
    if popt.leftovers:
        raise BadInput(f"unexpected argument {popt.leftovers[0]}")
    return given, service_words


def _check_options(kind: str, given: list[str]) -> None:
    legal, exclusive = LEGAL[kind], None
    for name in OPTION_ORDER:
        if name not in given:
            continue
        if name not in legal:
            raise BadInput(f"Illegal '{name}' option with the '{kind}' command")
        if legal[name] == "1":
            if exclusive:
                raise BadInput(f"The option '{name}' conflicts with the '{exclusive}' option in the '{kind}' command")
            exclusive = name
    options = set(given)
    if kind == "list" and (
        options & {"connection", "timeout", "daemon"} and options & {"stats", "rate", "thresholds"}
        or options & {"timeout", "daemon"} and "persistent-conn" in options
    ):
        raise BadInput("options conflicts in the list command")


def describe(change: services.Change) -> str:
    sign = {"create": "+", "update": "~", "delete": "-"}[change.action]
    text = f"{sign} {change.kind} {change.label}"
    if change.action == "update":
        text += ": " + ", ".join(f"{k} {change.before.get(k)!r} -> {change.after.get(k)!r}"
                                 for k in change.changed_fields())
    return text


class Command(BaseCommand):
    help = __doc__.strip().splitlines()[0]
    stdin = None  # tests hand in a stream (text or bytes); otherwise the process's standard input, as bytes

    def add_arguments(self, parser):
        parser.add_argument("--cluster", required=True)
        parser.add_argument("--create", action="store_true", help="create the cluster if it does not exist")
        parser.add_argument("--user", default="", help="the user the edit is audited under (default: system)")
        parser.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
        parser.add_argument("--comment", default="")
        parser.add_argument("--ipvsadm-args", dest="ipvsadm", nargs="*", default=[], help="(internal)")

    def run_from_argv(self, argv):
        if argv[2:] in (["--help"], ["-h"]):
            self.stdout.write(__doc__.strip())
            return
        try:
            own, words = split_argv(argv[2:])
            parser = self.create_parser(argv[0], argv[1])
            try:
                options = vars(parser.parse_args(own))
            except CommandError as exc:  # the parser's own complaint (e.g. --verbosity 9): still bad input
                raise BadInput(str(exc)) from None
            options.pop("args", None)
            options["ipvsadm"] = words
            self.execute(**options)
        except CommandError as exc:
            self.stderr.write(f"ipvsadm: {exc}")
            sys.exit(exc.returncode)

    def handle(self, *args, cluster: str, create: bool, user: str, dry_run: bool, comment: str, ipvsadm: list,
               **options):
        # The whole line is checked, and the input read, before anything is looked up or written.
        request = read_command_line(ipvsadm)
        text = self._read_input() if request.kind == "restore" else ""
        if request.kind == "restore" and not any(rules.split_line(line) for line in text.splitlines()):
            raise BadInput("no rules in the input: -R replaces the whole table (to empty a cluster, use -C)")
        # A dry run does the real work in a transaction that is then rolled back: it shows exactly what would be.
        with transaction.atomic():
            target = self._cluster(cluster, create, actor := self._actor(user, comment))
            if request.kind == "list":
                self._list(target, request)
            elif request.kind == "save":
                table = selectors.desired_table(target)
                self.stdout.write(rules.format_save(table, numeric="numeric" in request.options), ending="")
            elif request.kind == "restore":
                self._replace(actor, target, lambda: rules.parse_save(text), dry_run, "import", text)
            else:
                self._replace(actor, target, lambda: self._edited(target, request.command), dry_run, "command",
                              " ".join(ipvsadm))
            if dry_run:
                transaction.set_rollback(True)

    def _read_input(self) -> str:
        data = (self.stdin if self.stdin is not None else sys.stdin.buffer).read()
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            text.encode("utf-8")
        except UnicodeError as exc:
            line = data.count(b"\n" if isinstance(data, bytes) else "\n", 0, exc.start) + 1
            raise BadInput(f"line {line}: not valid UTF-8") from None
        if "\0" in text:
            raise BadInput(f"line {text.count(chr(10), 0, text.index(chr(0))) + 1}: contains a NUL byte")
        return text

    def _cluster(self, name: str, create: bool, actor: Actor) -> Cluster:
        target = Cluster.objects.filter(name=name).first()
        if target is not None:
            return target
        if not create:
            raise BadInput(f"no cluster named {name!r} (add --create to make it)")
        try:
            return services.create_cluster(actor, name=name)
        except ValidationError as exc:
            raise BadInput(f"cannot create cluster {name!r}: {'; '.join(exc.messages)}") from None

    def _actor(self, username: str, comment: str) -> Actor:
        if not username:
            return Actor.system("cli", comment=comment)
        account = get_user_model().objects.filter(username=username).first()
        if account is None:
            raise BadInput(f"no user named {username!r}")
        return Actor.for_user(account, comment=comment)

    def _list(self, cluster: Cluster, request: Request):
        given = request.options
        if "connection" in given:
            raise BadInput("-c lists a kernel's connections: the desired state has none (see the balancer's page)")
        table = selectors.desired_table(cluster)
        if "timeout" in given:
            self.stdout.write(rules.format_timeout(table.timeouts), ending="")
            return
        if "daemon" in given:
            self.stdout.write(rules.format_daemons(table.daemons), ending="")
            return
        mode = next((m for m in LIST_MODES if m in given), "default")
        try:
            listing = rules.format_list(table, numeric="numeric" in given, mode=mode, exact="exact" in given,
                                        sort="nosort" not in given, service=request.service)
        except rules.CommandError as exc:  # the one service asked for is not in the table
            raise BadInput(exc.message) from None
        self.stdout.write(listing, ending="")

    @staticmethod
    def _edited(cluster: Cluster, command: rules.Command):
        try:
            return rules.apply_command(selectors.desired_table(cluster), command)
        except rules.CommandError as exc:
            raise rules.ParseError(1, exc.token, exc.message) from None

    def _replace(self, actor: Actor, cluster: Cluster, build, dry_run: bool, action: str, source: str):
        try:
            table = build()
            changes = services.replace_table(actor, cluster, table, action=action, source=source)
        except rules.ParseError as exc:
            raise BadInput(str(exc) if action == "import" else exc.message) from None
        except ValidationError as exc:
            raise BadInput("; ".join(exc.messages)) from None
        for change in changes.changes:
            self.stdout.write(describe(change))
        verb = "would change" if dry_run else "changed"
        if changes:
            self.stdout.write(f"{verb}: {changes.summary()}" + ("" if dry_run else f" (revision {changes.revision})"))
        else:
            self.stdout.write("no changes")
