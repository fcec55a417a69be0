"""Health definitions as text: a readable form that sits next to `ipvsadm -S` (health is not part of it).

One line per definition, spelled like ipvsadm so an operator reads it at once: the service as `ipvsadm -S -n`
names it (`-t 10.0.0.1:80`, `-u [2001:db8::1]:53`, `--sctp-service …`, `-f 7`, `-f 7 -6`), a real server with
`-r`, then what is defined there:

    -t 10.0.0.1:80 check http --path /health --interval 2 --fall 3
    -t 10.0.0.1:80 policy --on-failure remove --quorum 2 --sorry-server 10.0.0.9:80
    -t 10.0.0.1:80 -r 192.0.2.7:80 check none

Only values that differ from the defaults (spec.Check, spec.Policy) are written, so the text says what is
special; values with blanks or shell characters are shell-quoted. The service and server words are read by the
ipvsadm rules parser itself (lvsadmin.ipvs.rules), so an address means here what it means in the -S text next
to it. A definition for a service or real server the table does not hold is refused, like any other mistake,
with its line number; values then go through lvsadmin.health.validate like a form's.
"""

from __future__ import annotations

import shlex
from dataclasses import fields

from lvsadmin.ipvs import rules
from lvsadmin.ipvs.model import Service, Table, key_text
from lvsadmin.ipvs.rules import Command, ParseError

from .spec import KINDS, NO_CHECK, Check, Policy, ServiceHealth, server_text
from .validate import HealthError, clean_check, clean_policy

CHECK = "check"
POLICY = "policy"
_DEFAULT_CHECK = Check()
_DEFAULT_POLICY = Policy()

# Option names: the field name with dashes, except where ipvsadm-like text reads better.
_CHECK_OPTIONS = {f.name: "--" + f.name.replace("_", "-") for f in fields(Check) if f.name != "kind"}
_CHECK_OPTIONS["qtype"] = "--type"
_POLICY_OPTIONS = {f.name: "--" + f.name.replace("_", "-") for f in fields(Policy)}
# A boolean whose default is True is written as its negation (a flag says what is not the default).
_NEGATED = {"verify_tls": "--no-verify-tls"}


class LineError(ValueError):
    """A line of a health or keepalived text that cannot be taken, with its number (1-based)."""

    def __init__(self, line: int, message: str):
        self.line = line
        self.message = message
        super().__init__(line, message)

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


# --------------------------------------------------------------------------------------------------
# Writing


def format_health(definitions: dict[str, ServiceHealth], table: Table, *, cluster: str = "") -> str:
    """The text of `definitions` (by service key text), services and servers in the table's order.

    Definitions of services or servers the table does not hold are not written (there is nothing to attach
    them to); a service with no check, no override and the default policy has no line.
    """
    lines = [f"# lvsadmin health checks{', cluster ' + cluster if cluster else ''}"]
    for svc in table.services:
        health = definitions.get(key_text(svc.key))
        if health is None:
            continue
        head = _service_words(svc)
        if health.check is not None:
            lines.append(f"{head} {CHECK} {_check_words(health.check)}")
        if health.policy != _DEFAULT_POLICY:
            lines.append(f"{head} {POLICY} {_option_words(health.policy, _DEFAULT_POLICY, _POLICY_OPTIONS)}".rstrip())
        for dest in svc.destinations:
            key = server_text(dest.address, dest.port)
            if key in health.overrides:
                check = health.overrides[key]
                words = NO_CHECK if check is None else _check_words(check)
                lines.append(f"{_server_words(svc, dest)} {CHECK} {words}")
    return "".join(line + "\n" for line in lines)


def _service_words(svc: Service) -> str:
    return rules.format_command(Command(kind="delete-service", service=svc)).removeprefix("-D ")


def _server_words(svc: Service, dest) -> str:
    return rules.format_command(Command(kind="delete-server", service=svc, destination=dest)).removeprefix("-d ")


def _check_words(check: Check) -> str:
    return f"{check.kind} {_option_words(check, _DEFAULT_CHECK, _CHECK_OPTIONS)}".rstrip()


def _option_words(value, default, options: dict[str, str]) -> str:
    words = []
    for name, option in options.items():
        current = getattr(value, name)
        if current == getattr(default, name):
            continue
        if isinstance(current, bool):
            words.append(_NEGATED.get(name, option))
        else:
            words.append(f"{option} {_value_text(current)}")
    return " ".join(words)


def _value_text(value) -> str:
    if isinstance(value, float):
        # repr keeps every digit (parse(format(x)) == x); a whole number reads better without ".0"
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return shlex.quote(str(value))


# --------------------------------------------------------------------------------------------------
# Reading


def parse_health(text: str, table: Table, *, resolver: rules.Resolver | None = None) -> dict[str, ServiceHealth]:
    """The definitions a text holds, by service key text, for the services of `table`.

    Blank lines and `#` comments are skipped. Raises LineError naming the first bad line: an unknown option,
    a service not in the table, a real server not in the service, a definition given twice, a value
    lvsadmin.health.validate refuses. Nothing is returned half-read.
    """
    services = table.by_key()
    checks: dict[str, Check | None] = {}
    policies: dict[str, Policy] = {}
    overrides: dict[str, dict[str, Check | None]] = {}
    seen: dict[tuple, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:  # an unterminated quote
            raise LineError(number, f"cannot read the line ({exc})") from None
        if not words:
            continue
        svc, dest, what, rest = _read_head(number, words, services, resolver)
        key = key_text(svc.key)
        target = (key, server_text(dest.address, dest.port) if dest is not None else None, what)
        if target in seen:
            raise LineError(number, f"a second {what} line for {_where(svc, dest)} (the first is line {seen[target]})")
        seen[target] = number
        if what == POLICY:
            policies[key] = _read_policy(number, rest, svc)
        elif dest is None:
            checks[key] = _read_check(number, rest, svc)
        else:
            overrides.setdefault(key, {})[target[1]] = _read_check(number, rest, svc)
    result = {}
    for svc in table.services:  # the table's order, so equal texts give equal dicts whatever their line order
        key = key_text(svc.key)
        if key in checks or key in policies or key in overrides:
            result[key] = ServiceHealth(check=checks.get(key), policy=policies.get(key, Policy()),
                                        overrides=_ordered(overrides.get(key, {}), svc))
    return result


def _ordered(overrides: dict, svc: Service) -> dict:
    order = [server_text(d.address, d.port) for d in svc.destinations]
    return {k: overrides[k] for k in order if k in overrides}


def _where(svc: Service, dest) -> str:
    return svc.label if dest is None else svc.dest_label(dest)


def _read_head(number: int, words: list[str], services: dict, resolver) -> tuple:
    """The service (and real server) a line is about, what it defines, and the words after that."""
    for index, word in enumerate(words):
        if word in (CHECK, POLICY):
            head, what, rest = words[:index], word, words[index + 1:]
            break
    else:
        raise LineError(number, "expected 'check' or 'policy' after the service (e.g. -t 10.0.0.1:80 check tcp)")
    if not head:
        raise LineError(number, f"'{what}' needs a service before it (-t, -u, --sctp-service or -f)")
    server = any(w.startswith(("-r", "--real-server")) for w in head)
    try:
        cmd = rules.parse_command(["-d" if server else "-D", *head], resolver=resolver, line_number=number)
    except ParseError as exc:
        raise LineError(number, exc.message) from None
    svc = services.get(cmd.service_key)
    if svc is None:
        raise LineError(number, f"{cmd.service.label} is not in the table")
    dest = None
    if server:
        dest = svc.destination(cmd.destination.address, cmd.destination.port)
        if dest is None:
            raise LineError(number, f"{svc.dest_label(cmd.destination)} is not a real server of {svc.label}")
        if what == POLICY:
            raise LineError(number, "a policy belongs to a service: remove the -r part")
    return svc, dest, what, rest


def _read_check(number: int, words: list[str], svc: Service) -> Check | None:
    if not words:
        raise LineError(number, f"'check' needs a kind: {', '.join(KINDS)} or {NO_CHECK}")
    kind, rest = words[0], words[1:]
    if kind == NO_CHECK:
        if rest:
            raise LineError(number, f"'check {NO_CHECK}' takes no options, not {rest[0]}")
        return None
    if kind not in KINDS:
        raise LineError(number, f"unknown check kind {kind!r}: use {', '.join(KINDS)} or {NO_CHECK}")
    values = _read_options(number, rest, _DEFAULT_CHECK, _CHECK_OPTIONS)
    try:
        return clean_check({"kind": kind, **values}, protocol=svc.protocol)
    except HealthError as exc:
        raise LineError(number, str(exc)) from None


def _read_policy(number: int, words: list[str], svc: Service) -> Policy:
    values = _read_options(number, words, _DEFAULT_POLICY, _POLICY_OPTIONS)
    try:
        return clean_policy(values, family=svc.family)
    except HealthError as exc:
        raise LineError(number, str(exc)) from None


def _read_options(number: int, words: list[str], default, options: dict[str, str]) -> dict:
    """{field: text} of `--option value` words (or `--option=value`); a flag's field gets its bool."""
    by_option = {option: name for name, option in options.items()}
    flags = {_NEGATED.get(name, option): name for name, option in options.items()
             if isinstance(getattr(default, name), bool)}
    values: dict = {}
    index = 0
    while index < len(words):
        word = words[index]
        option, eq, glued = word.partition("=")
        index += 1
        name = flags.get(option) or by_option.get(option)
        if name is None:
            known = ", ".join(sorted({*flags, *by_option}))
            raise LineError(number, f"unknown option {word!r} (known: {known})")
        if name in values:
            raise LineError(number, f"{option} given twice")
        if option in flags:
            if eq:
                raise LineError(number, f"{option} takes no value")
            values[name] = option not in _NEGATED.values()
        elif eq:
            values[name] = glued
        elif index < len(words):
            values[name], index = words[index], index + 1
        else:
            raise LineError(number, f"{option} needs a value")
    return values
