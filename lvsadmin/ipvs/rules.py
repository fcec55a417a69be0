"""ipvsadm's rule language, both ways: parse command lines and saves, print saves and listings.

Everything here mimics ipvsadm 1.31 as Debian ships it (package 1:1.31-1, built with popt and
glibc 2.36) and checked against the real binary on a 6.1 kernel:

Parsing
    A line is split like ``ipvsadm -R`` splits it (on blanks, tabs, CR; every token that is exactly
    ``ipvsadm`` is dropped), then read with popt's rules: short options bundle (``-At``, ``-mw2``),
    an option's value may be glued on (``-w2``, ``-p=60``, ``--weight=2``), ``-p`` takes a value only
    when the next word does not start with ``-``, ``--`` ends the options, the first option must be
    the command.  ipvsadm's own checks follow in ipvsadm's order with ipvsadm's messages.
    Two things are more lenient than ``ipvsadm -R``, which dies on them: a ``#`` starts a comment
    (the ``ipvsadm-restore`` script strips such lines before ``-R`` sees them) and a host name
    that only has an IPv6 address is accepted (ipvsadm resolves names with ``gethostbyname``, IPv4
    only, yet prints IPv6 names in brackets with ``ipvsadm -S``; ``[name]:port`` therefore prefers
    the name's IPv6 address, a bare ``name:port`` its IPv4 one).

Editing semantics (what ``apply_command`` does)
    ``-E`` and ``-e`` replace the whole service / real-server configuration: ipvsadm sends every
    field, with its defaults for the options not given.  ``ipvsadm -E -t VIP:80`` resets the
    scheduler to wlc and drops persistence, the persistence engine, one-packet scheduling and
    scheduler flags; ``ipvsadm -e ... -r RIP`` resets the weight to 1, the thresholds to 0, the
    tunnel settings to ipip and the forwarding method to gatewaying (and with gatewaying the
    real-server port becomes the service port, so ``-e`` of a NAT server on another port without
    ``-m`` answers "No such destination").  ``Command.given`` records what was typed, so a form can
    warn about it; ``apply_command`` does what the kernel does.

Printing
    ``ipvsadm -S`` and ``-L`` sort by default (``--sort`` is a no-op, only ``-L --nosort`` shows
    the kernel's order).  The sort is glibc's ``qsort`` (a merge sort) over libipvs' comparators,
    which subtract unsigned 32-bit values into an ``int``: addresses more than 2**31 apart compare
    the "wrong" way (10.0.0.1 sorts after 192.168.1.1, 10.0.0.9 before 100.0.0.1) and the order
    is not even transitive, so the printed order depends on the order the kernel dumps.  The
    formatters therefore take ``table.services`` (and each service's destinations) as the kernel's
    dump order and apply that same merge sort; pass ``sort=False`` for ``-L --nosort``.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from . import validate
from .model import (
    DEFAULT_PERSISTENCE_TIMEOUT,
    DEFAULT_SCHEDULER,
    FWMARK,
    LOCAL,
    SCHEDULERS,
    Destination,
    Info,
    Service,
    Stats,
    SyncDaemon,
    Table,
    Timeouts,
    normalise_address,
)

__all__ = [
    "COMMAND_KINDS",
    "Command",
    "CommandError",
    "ParseError",
    "apply_command",
    "apply_commands",
    "format_command",
    "format_daemons",
    "format_list",
    "format_save",
    "format_timeout",
    "parse_command",
    "parse_commands",
    "parse_save",
    "sort_destinations",
    "sort_services",
    "split_line",
]

Resolver = Callable[..., Iterable]

# --------------------------------------------------------------------------------------------------
# Errors and the Command


class ParseError(ValueError):
    """A line that ipvsadm would refuse, or whose effect the kernel would refuse."""

    def __init__(self, line_number: int, token: str | None, message: str):
        self.line_number = line_number
        self.token = token
        self.message = message
        super().__init__(line_number, token, message)

    def __str__(self) -> str:
        return f"line {self.line_number}: {self.message}"


class CommandError(ValueError):
    """A command the kernel (or the panel's validation) refuses for the table it is applied to."""

    def __init__(self, message: str, token: str | None = None):
        self.message = message
        self.token = token
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class _Fail(Exception):
    """Internal: ipvsadm's fail() while reading one command line."""

    def __init__(self, message: str, token: str | None = None):
        self.message = message
        self.token = token
        super().__init__(message)


COMMAND_KINDS = (
    "add-service",
    "edit-service",
    "delete-service",
    "clear",
    "add-server",
    "edit-server",
    "delete-server",
    "set",
)


@dataclass(slots=True)
class Command:
    """One ipvsadm editing command, with every field as ipvsadm sends it to the kernel.

    ``service`` carries the virtual service (its key always; for ``add-service`` and
    ``edit-service`` also the full configuration, defaults filled in as ipvsadm fills them);
    ``destination`` the real server for ``add-server``, ``edit-server`` and ``delete-server``
    (port already the service's port where ipvsadm forces it); ``timeouts`` the three values of
    ``--set`` (0 means "leave unchanged", as in the kernel).  ``given`` names the options that
    were typed, with ipvsadm's option names (``scheduler``, ``persistent``, ``netmask``, ``pe``,
    ``ops``, ``sched-flags``, ``forwarding-method``, ``weight``, ``u-threshold``, ``l-threshold``,
    ``tun-type``, ``tun-port``, ``tun-nocsum``, ``tun-csum``, ``tun-remcsum``, ...).
    """

    kind: str
    service: Service | None = None
    destination: Destination | None = None
    timeouts: Timeouts | None = None
    given: frozenset[str] = frozenset()
    argv: tuple[str, ...] = ()
    service_token: str | None = None
    server_token: str | None = None

    @property
    def service_key(self) -> tuple | None:
        return None if self.service is None else self.service.key


# --------------------------------------------------------------------------------------------------
# Splitting lines (ipvsadm's config_stream.c)

_BLANKS = " \t\r\n"


def split_line(line: str) -> list[str]:
    """The words of one line as ``ipvsadm -R`` reads them (plus ``#`` comments)."""
    hash_at = line.find("#")
    if hash_at >= 0:
        line = line[:hash_at]
    words = [w for w in re.split(r"[ \t\r\n]+", line) if w]
    words = [w for w in words if w != "ipvsadm"]
    # A leading path to the binary (/sbin/ipvsadm -A ...) as typed in a shell.
    if words and words[0].endswith("/ipvsadm"):
        words = words[1:]
    return words


# --------------------------------------------------------------------------------------------------
# popt, as ipvsadm configures it

_NONE, _STRING, _OPTIONAL = 0, 1, 2

# (long name, short name, argument, tag); the order is ipvsadm's options_table.
_POPT_TABLE: tuple[tuple[str | None, str | None, int, str], ...] = (
    ("add-service", "A", _NONE, "A"),
    ("edit-service", "E", _NONE, "E"),
    ("delete-service", "D", _NONE, "D"),
    ("clear", "C", _NONE, "C"),
    ("list", "L", _NONE, "L"),
    ("list", "l", _NONE, "l"),
    ("zero", "Z", _NONE, "Z"),
    ("add-server", "a", _NONE, "a"),
    ("edit-server", "e", _NONE, "e"),
    ("delete-server", "d", _NONE, "d"),
    ("set", None, _NONE, "set"),
    ("help", "h", _NONE, "h"),
    ("version", "v", _NONE, "v"),
    ("restore", "R", _NONE, "R"),
    ("save", "S", _NONE, "S"),
    ("start-daemon", None, _STRING, "start-daemon"),
    ("stop-daemon", None, _STRING, "stop-daemon"),
    ("tcp-service", "t", _STRING, "t"),
    ("udp-service", "u", _STRING, "u"),
    ("sctp-service", None, _STRING, "sctp-service"),
    ("fwmark-service", "f", _STRING, "f"),
    ("scheduler", "s", _STRING, "s"),
    ("persistent", "p", _OPTIONAL, "p"),
    ("netmask", "M", _STRING, "M"),
    ("real-server", "r", _STRING, "r"),
    ("masquerading", "m", _NONE, "m"),
    ("ipip", "i", _NONE, "i"),
    ("gatewaying", "g", _NONE, "g"),
    ("weight", "w", _STRING, "w"),
    ("u-threshold", "x", _STRING, "x"),
    ("l-threshold", "y", _STRING, "y"),
    ("numeric", "n", _NONE, "n"),
    ("connection", "c", _NONE, "c"),
    ("mcast-interface", None, _STRING, "mcast-interface"),
    ("syncid", None, _STRING, "syncid"),
    ("timeout", None, _NONE, "timeout"),
    ("daemon", None, _NONE, "daemon"),
    ("stats", None, _NONE, "stats"),
    ("rate", None, _NONE, "rate"),
    ("thresholds", None, _NONE, "thresholds"),
    ("persistent-conn", None, _NONE, "persistent-conn"),
    ("nosort", None, _NONE, "nosort"),
    ("sort", None, _NONE, "sort"),
    ("exact", "X", _NONE, "X"),
    ("ipv6", "6", _NONE, "6"),
    ("ops", "o", _NONE, "o"),
    ("pe", None, _STRING, "pe"),
    ("sched-flags", "b", _STRING, "b"),
    ("mcast-group", None, _STRING, "mcast-group"),
    ("mcast-port", None, _STRING, "mcast-port"),
    ("mcast-ttl", None, _STRING, "mcast-ttl"),
    ("sync-maxlen", None, _STRING, "sync-maxlen"),
    ("tun-info", None, _NONE, "tun-info"),
    ("tun-type", None, _STRING, "tun-type"),
    ("tun-port", None, _STRING, "tun-port"),
    ("tun-nocsum", None, _NONE, "tun-nocsum"),
    ("tun-csum", None, _NONE, "tun-csum"),
    ("tun-remcsum", None, _NONE, "tun-remcsum"),
)
_BY_LONG: dict[str, tuple] = {}
_BY_SHORT: dict[str, tuple] = {}
for _entry in _POPT_TABLE:
    if _entry[0] is not None:
        _BY_LONG.setdefault(_entry[0], _entry)
    if _entry[1] is not None:
        _BY_SHORT.setdefault(_entry[1], _entry)


class _Popt:
    """popt 1.19's poptGetNextOpt over one argv (without argv[0]), for ipvsadm's table."""

    def __init__(self, argv: Sequence[str]):
        self.argv = list(argv)
        self.next = 0
        self.bundle: str | None = None  # the rest of a short-option bundle
        self.rest = False  # after "--"
        self.leftovers: list[str] = []

    def bad_option(self) -> str:
        return self.argv[self.next - 1] if self.next > 0 else ""

    def get(self) -> tuple[str, str | None] | None:
        """The next option as (tag, value), or None at the end; raises _Fail on popt errors."""
        while True:
            long_arg: str | None = None
            opt = None
            if self.bundle is None:
                if self.next >= len(self.argv):
                    return None
                word = self.argv[self.next]
                self.next += 1
                if self.rest or not word.startswith("-") or word == "-":
                    self.leftovers.append(word)
                    continue
                if word == "--":
                    self.rest = True
                    continue
                if word.startswith("--"):
                    name, eq, value = word[2:].partition("=")
                    opt = _BY_LONG.get(name)
                    if opt is None:
                        raise _Fail(f"unknown option '{word}'", word)
                    if eq:
                        long_arg = value
                else:
                    self.bundle = word[1:]
            if opt is None:
                chars = self.bundle or ""
                self.bundle = None
                opt = _BY_SHORT.get(chars[0])
                if opt is None:
                    raise _Fail(f"unknown option '{self.bad_option()}'", self.bad_option())
                if len(chars) > 1:
                    self.bundle = chars[1:]
            _long, _short, argtype, tag = opt
            if argtype == _NONE:
                if long_arg is not None or (self.bundle is not None and self.bundle.startswith("=")):
                    raise _Fail(f"option '{self.bad_option()}' does not take an argument", self.bad_option())
                return tag, None
            if long_arg is not None:
                return tag, long_arg
            if self.bundle is not None:
                value = self.bundle[1:] if self.bundle.startswith("=") else self.bundle
                self.bundle = None
                return tag, value
            if self.next >= len(self.argv):
                if argtype == _OPTIONAL:
                    return tag, None
                raise _Fail(f"option '{self.bad_option()}' needs an argument", self.bad_option())
            following = self.argv[self.next]
            if argtype == _OPTIONAL and following.startswith("-"):
                return tag, None
            self.next += 1
            return tag, following


# --------------------------------------------------------------------------------------------------
# ipvsadm's option bookkeeping

_CMD_NAMES = {  # ipvsadm's cmdnames, for its messages
    "add-service": "add-service",
    "edit-service": "edit-service",
    "delete-service": "delete-service",
    "clear": "flush",
    "add-server": "add-server",
    "edit-server": "edit-server",
    "delete-server": "delete-server",
    "set": "set",
}
_COMMAND_TAGS = {
    "A": "add-service",
    "E": "edit-service",
    "D": "delete-service",
    "C": "clear",
    "a": "add-server",
    "e": "edit-server",
    "d": "delete-server",
    "set": "set",
}
_NOT_EDITING = {
    "L": "-L (list)",
    "l": "-l (list)",
    "Z": "-Z (zero)",
    "R": "-R (restore)",
    "S": "-S (save)",
    "h": "-h (help)",
    "v": "-v (version)",
    "start-daemon": "--start-daemon",
    "stop-daemon": "--stop-daemon",
}

# ipvsadm's optnames, indexed by OPTC_*.
_OPTNAMES = (
    "numeric", "connection", "service-address", "scheduler", "persistent", "netmask", "real-server",
    "forwarding-method", "weight", "u-threshold", "l-threshold", "mcast-interface", "timeout", "daemon",
    "stats", "rate", "thresholds", "persistent-conn", "nosort", "syncid", "exact", "ops", "pe",
    "sched-flags", "mcast-group", "mcast-port", "mcast-ttl", "sync-maxlen", "tun-info", "tun-type",
    "tun-port", "tun-nocsum", "tun-csum", "tun-remcsum",
)  # fmt: skip
_OPTC = {name: index for index, name in enumerate(_OPTNAMES)}

# commands_v_options: '+' compulsory, 'x' illegal, '1' exclusive, ' ' optional.
_LEGAL = {
    "add-service":    "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
    "edit-service":   "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
    "delete-service": "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "clear":          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "add-server":     "xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
    "delete-server":  "xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "edit-server":    "xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
    "set":            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
}  # fmt: skip
assert all(len(row) == len(_OPTNAMES) for row in _LEGAL.values())

# tunnel_types_v_options over (tun-port, tun-nocsum, tun-csum, tun-remcsum).
_TUN_TYPES = ("ipip", "gue", "gre")
_TUN_OPTS = ("tun-port", "tun-nocsum", "tun-csum", "tun-remcsum")
_TUN_LEGAL = {"ipip": "xxxx", "gue": "+111", "gre": "x11x"}
_TUN_CSUM = ("nocsum", "csum", "remcsum")  # tun_flags 0, 1, 2

_PROTO_NUM = {"tcp": 6, "udp": 17, "sctp": 132}
_PROTO_BY_NUM = {number: name for name, number in _PROTO_NUM.items()}
_PROTO_TAG = {"t": "tcp", "u": "udp", "sctp-service": "sctp"}


_STRTOL = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def _strtol_prefix(text: str) -> tuple[int | None, str]:
    """C strtol(text, &end, 10): the value (None when no digits) and what follows it."""
    match = _STRTOL.match(text)
    if match is None:
        return None, text
    value = int(match.group(1))
    value = max(-(2**63), min(2**63 - 1, value))  # strtol saturates (and sets ERANGE)
    return value, text[match.end() :]


def _string_to_number(text: str, limit: validate.Limit) -> int | None:
    """ipvsadm's string_to_number: a whole decimal number within the limit (validate.py), else None."""
    value, rest = _strtol_prefix(text)
    if value is None or rest or not -(2**63) < value < 2**63 - 1:
        return None
    return value if value in limit else None


def _out_of(message: str, limit: validate.Limit) -> str:
    """ipvsadm's message (kept first: the kernel tier compares it), then the range that applies."""
    return f"{message} ({limit.message})"


def _atoi(text: str) -> int:
    value, _rest = _strtol_prefix(text)
    if value is None:
        return 0
    value &= 0xFFFFFFFF  # (int) of a long, then stored in a u_int32_t
    return value


def _inet_aton(text: str) -> int | None:
    """glibc inet_aton (accepts 10.1, 0x0a.1, 010.1.1.1 ...), as a host-order integer."""
    if not text or "\x00" in text:
        return None
    try:
        return int.from_bytes(socket.inet_aton(text), "big")
    except (OSError, ValueError, UnicodeError):
        return None


def _inet_pton6(text: str) -> str | None:
    if not text or "\x00" in text:
        return None
    try:
        packed = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError, UnicodeError):
        return None
    return normalise_address(str(ipaddress.IPv6Address(packed)))


def _service_to_port(name: str, protocol: str | None) -> int | None:
    if protocol not in _PROTO_NUM or not name or "\x00" in name:
        return None
    try:
        return socket.getservbyname(name, protocol)
    except (OSError, ValueError, UnicodeError):
        return None


def _resolve(name: str, resolver: Resolver | None, prefer: int) -> str | None:
    """A host name's address, through the resolver (getaddrinfo-shaped); None if it has none."""
    if not name or "\x00" in name:
        return None
    resolver = resolver or socket.getaddrinfo
    try:
        answers = list(resolver(name, None))
    except (OSError, ValueError, UnicodeError):
        return None
    found: dict[int, str] = {}
    for answer in answers:
        if isinstance(answer, str):
            address = answer
        elif isinstance(answer, tuple) and len(answer) >= 5 and answer[4]:
            address = answer[4][0]
        else:
            continue
        try:
            ip = ipaddress.ip_address(str(address).split("%")[0])
        except ValueError:
            continue
        found.setdefault(ip.version, normalise_address(str(ip)))
    other = 6 if prefer == 4 else 4
    return found.get(prefer) or found.get(other)


@dataclass
class _Svc:
    af: int = 0  # 0 (unset), 4 or 6
    protocol: str | None = None
    address: str = ""
    port: int = 0
    fwmark: int = 0
    sched_name: str = ""
    persistent: bool = False
    timeout: int = 0
    netmask: int = 0xFFFFFFFF  # IPv4: host-order mask; IPv6: prefix length
    pe_name: str = ""
    one_packet: bool = False
    sched_flags: int = 0  # model bits (flag-1 = 1, flag-2 = 2, flag-3 = 4)


@dataclass
class _Dest:
    af: int = 0
    address: str = ""
    port: int = 0
    forward: str = "route"
    weight: int = 1
    u_threshold: int = 0
    l_threshold: int = 0
    tun_type: str = "ipip"
    tun_port: int = 0
    tun_flags: int = 0


_SERVICE_NONE, _SERVICE_ADDR, _SERVICE_PORT = 0, 1, 2


def _parse_service(buf: str, svc: _Svc, resolver: Resolver | None) -> int:
    """ipvsadm's parse_service on (a copy of) the service: the SERVICE_* bits it sets."""
    if re.fullmatch(r"[0-9]*", buf):
        return _SERVICE_NONE
    port_text: str | None = None
    bracketed = False
    if buf.startswith("["):
        inner, bracket, after = buf[1:].partition("]")
        if not bracket or not after.startswith(":"):
            return _SERVICE_NONE
        buf, port_text, bracketed = inner, after[1:], True
    v6 = _inet_pton6(buf)
    if v6 is not None:
        svc.address, svc.af, svc.netmask = v6, 6, 128
    else:
        host, colon, after = buf.rpartition(":")
        if colon:
            port_text = after
        elif not bracketed or _inet_aton(buf) is not None:
            # ipvsadm loses the port of "[IPv4]:port": its strrchr finds no colon inside the
            # brackets.  A bracketed *name* keeps it: that is how ipvsadm -S prints the name of
            # an IPv6 address.
            host, port_text = buf, None
        else:
            host = buf
        v4 = _inet_aton(host)
        if v4 is not None:
            svc.address, svc.af = socket.inet_ntoa(v4.to_bytes(4, "big")), 4
        else:
            address = _resolve(host, resolver, prefer=6 if bracketed else 4)
            if address is None:
                raise _Fail(f"cannot resolve host name '{host}'", host)
            svc.address = address
            if ":" in address:
                svc.af, svc.netmask = 6, 128
            else:
                svc.af = 4
    if port_text is None:
        return _SERVICE_ADDR
    port = _string_to_number(port_text, validate.PORT)
    if port is None:
        port = _service_to_port(port_text, svc.protocol)
    if port is None:
        return _SERVICE_NONE
    svc.port = port
    return _SERVICE_ADDR | _SERVICE_PORT


def _parse_sched_flags(sched: str, text: str) -> int:
    sched = sched or DEFAULT_SCHEDULER
    flags = 0
    names = [name for name in text.split(",") if name]
    if not names:
        raise _Fail(f"invalid scheduler flag `{text}'", text)
    for name in names:
        if name in ("flag-1", "flag-2", "flag-3"):
            flags |= {"flag-1": 1, "flag-2": 2, "flag-3": 4}[name]
        elif name in ("sh-fallback", "sh-port", "mh-fallback", "mh-port"):
            flags |= 1 if name.endswith("fallback") else 2
            if sched != name[:2]:
                raise _Fail(f"incompatible scheduler flag `{name}'", name)
        else:
            raise _Fail(f"invalid scheduler flag `{name}'", name)
    return flags


def _read_command(argv: Sequence[str], resolver: Resolver | None) -> Command:
    """ipvsadm's parse_options + process_options for one editing command."""
    popt = _Popt(argv)
    svc, dest = _Svc(), _Dest()
    options: set[str] = set()
    service_token: str | None = None
    server_token: str | None = None
    sched_flags_arg = ""

    def set_option(name: str) -> None:
        if name in options:
            raise _Fail(f"multiple '{name}' options specified", popt.bad_option())
        options.add(name)

    first = popt.get()
    if first is None:
        if popt.leftovers:
            word = popt.leftovers[0]
            raise _Fail(f"'{word}' is not an ipvsadm command: expected -A -E -D -C -a -e -d or --set", word)
        raise _Fail("empty command", None)
    tag, _value = first
    if tag in _NOT_EDITING:
        raise _Fail(
            f"{_NOT_EDITING[tag]} is not an editing command: use -A -E -D -C -a -e -d or --set", popt.bad_option()
        )
    if tag not in _COMMAND_TAGS:
        word = popt.bad_option()
        raise _Fail(f"the command must come first (-A -E -D -C -a -e -d or --set), not '{word}'", word)
    kind = _COMMAND_TAGS[tag]

    while (item := popt.get()) is not None:
        tag, value = item
        token = popt.bad_option()
        if tag in ("t", "u", "sctp-service"):
            set_option("service-address")
            svc.protocol = _PROTO_TAG[tag]
            service_token = value
            if "%" in (value or ""):  # ipvsadm cannot read it either; say why
                raise _Fail(f"illegal virtual server address[:port] specified ({validate.ZONE_ID_MESSAGE})", value)
            if _parse_service(value or "", svc, resolver) & _SERVICE_ADDR == 0:
                raise _Fail("illegal virtual server address[:port] specified", value)
        elif tag == "f":
            set_option("service-address")
            svc.af, svc.protocol = 4, "tcp"
            service_token = value
            mark, rest = _strtol_prefix(value or "")
            if mark is None or rest or mark not in validate.FWMARK_PARSED:
                raise _Fail(_out_of(f"invalid fwmark value `{value}' specified", validate.FWMARK_PARSED), value)
            svc.fwmark = mark
        elif tag == "s":
            set_option("scheduler")
            svc.sched_name = (value or "")[: validate.SCHEDNAME_MAXLEN - 1]
        elif tag == "p":
            set_option("persistent")
            svc.persistent = True
            if value is None:
                svc.timeout = DEFAULT_PERSISTENCE_TIMEOUT
            else:
                timeout = _string_to_number(value, validate.PERSISTENCE_TIMEOUT)
                if timeout is None:
                    raise _Fail(_out_of(f"invalid timeout value `{value}' specified", validate.PERSISTENCE_TIMEOUT),
                                value)
                svc.timeout = timeout
        elif tag == "M":
            set_option("netmask")
            if svc.af != 6:
                mask = _inet_aton(value or "")
                if mask is None:
                    name = _resolve(value or "", resolver, prefer=4) if value else None
                    mask = int(ipaddress.IPv4Address(name)) if name and ":" not in name else None
                if mask is None:
                    raise _Fail("illegal virtual server persistent mask specified", value)
                svc.netmask = mask
            else:
                svc.netmask = _atoi(value or "")
                if svc.netmask not in validate.IPV6_PREFIX:
                    raise _Fail(_out_of("illegal ipv6 netmask specified", validate.IPV6_PREFIX), value)
        elif tag == "r":
            set_option("real-server")
            server_token = value
            if "%" in (value or ""):
                raise _Fail(f"illegal real server address[:port] specified ({validate.ZONE_ID_MESSAGE})", value)
            t_dest = copy.copy(svc)
            parsed = _parse_service(value or "", t_dest, resolver)
            if parsed & _SERVICE_ADDR == 0:
                raise _Fail("illegal real server address[:port] specified", value)
            dest.af, dest.address, dest.port = t_dest.af, t_dest.address, t_dest.port
            if parsed == _SERVICE_ADDR:
                dest.port = svc.port
        elif tag in ("i", "g", "m"):
            set_option("forwarding-method")
            dest.forward = {"i": "tunnel", "g": "route", "m": "masq"}[tag]
        elif tag == "w":
            set_option("weight")
            weight = _string_to_number(value or "", validate.WEIGHT_PARSED)
            if weight is None:
                raise _Fail(_out_of("illegal weight specified", validate.WEIGHT_PARSED), value)
            dest.weight = weight
        elif tag == "x":
            set_option("u-threshold")
            number = _string_to_number(value or "", validate.UPPER_THRESHOLD)
            if number is None:
                raise _Fail(_out_of("illegal u_threshold specified", validate.UPPER_THRESHOLD), value)
            dest.u_threshold = number
        elif tag == "y":
            set_option("l-threshold")
            number = _string_to_number(value or "", validate.LOWER_THRESHOLD)
            if number is None:
                raise _Fail(_out_of("illegal l_threshold specified", validate.LOWER_THRESHOLD), value)
            dest.l_threshold = number
        elif tag == "c":
            set_option("connection")
        elif tag == "n":
            set_option("numeric")
        elif tag == "mcast-interface":
            set_option("mcast-interface")
        elif tag == "syncid":
            set_option("syncid")
            if _string_to_number(value or "", validate.SYNC_ID) is None:
                raise _Fail(_out_of("illegal syncid specified", validate.SYNC_ID), value)
        elif tag in ("timeout", "daemon", "stats", "rate", "thresholds", "persistent-conn", "nosort", "tun-info"):
            set_option(tag)
        elif tag == "sort":
            pass  # "does nothing, for backwards compatibility"
        elif tag == "X":
            set_option("exact")
        elif tag == "6":
            if not svc.fwmark:
                raise _Fail("-6 used before -f", token)
            svc.af, svc.netmask = 6, 128
        elif tag == "o":
            set_option("ops")
            svc.one_packet = True
        elif tag == "pe":
            set_option("pe")
            svc.pe_name = (value or "")[: validate.PENAME_MAXLEN]
        elif tag == "b":
            set_option("sched-flags")
            sched_flags_arg = value or ""
        elif tag == "mcast-group":
            set_option("mcast-group")
            text = value or ""
            try:
                group = ipaddress.ip_address(text)
                multicast = group.is_multicast and (":" in text) == (group.version == 6)
            except ValueError:
                multicast = False
            if not multicast:
                family = "IPv6" if ":" in text else "IPv4"
                raise _Fail(f"invalid {family} mcast-group `{text}'", value)
        elif tag in ("mcast-port", "mcast-ttl", "sync-maxlen"):
            set_option(tag)
            limit = {"mcast-port": validate.MCAST_PORT, "mcast-ttl": validate.MCAST_TTL,
                     "sync-maxlen": validate.SYNC_MAXLEN}[tag]
            if _string_to_number(value or "", limit) is None:
                raise _Fail(_out_of(f"illegal {tag} specified", limit), value)
        elif tag == "tun-type":
            set_option("tun-type")
            if value not in _TUN_TYPES:
                raise _Fail("illegal tunnel type specified", value)
            dest.tun_type = value
        elif tag == "tun-port":
            set_option("tun-port")
            port = _string_to_number(value or "", validate.TUNNEL_PORT)
            if port is None:
                raise _Fail(_out_of("illegal tunnel port specified", validate.TUNNEL_PORT), value)
            dest.tun_port = port
        elif tag in ("tun-nocsum", "tun-csum", "tun-remcsum"):
            set_option(tag)
            dest.tun_flags |= {"tun-nocsum": 0, "tun-csum": 1, "tun-remcsum": 2}[tag]
        else:  # a second command, or --start-daemon & co. after the command
            raise _Fail(f"invalid option `{token}'", token)

    timeouts: Timeouts | None = None
    if kind == "set":
        values = popt.leftovers[:3]
        del popt.leftovers[:3]
        if len(values) < 3:
            raise _Fail("--set option requires 3 timeout values", None)
        numbers = []
        for text in values:
            number = _string_to_number(text, validate.SET_TIMEOUT)
            if number is None:
                raise _Fail(_out_of(f"invalid timeout value `{text}' specified", validate.SET_TIMEOUT), text)
            numbers.append(number)
        timeouts = Timeouts(*numbers)
    if popt.leftovers:
        word = popt.leftovers[0]
        raise _Fail(f"unexpected argument {word}", word)

    if sched_flags_arg:
        svc.sched_flags = _parse_sched_flags(svc.sched_name, sched_flags_arg)

    # generic_opt_check
    legal = _LEGAL[kind]
    for index, name in enumerate(_OPTNAMES):
        rule = legal[index]
        if name not in options:
            if rule == "+":
                raise _Fail(f"You need to supply the '{name}' option for the '{_CMD_NAMES[kind]}' command", None)
        elif rule == "x":
            raise _Fail(f"Illegal '{name}' option with the '{_CMD_NAMES[kind]}' command", name)

    if kind in ("add-service", "edit-service"):
        if not svc.fwmark and not svc.port and not svc.persistent:
            raise _Fail("Zero port specified for non-persistent service", service_token)
        if svc.one_packet and not svc.fwmark and svc.protocol != "udp":
            raise _Fail("One-Packet Scheduling is only for UDP virtual services", "-o")
        if not svc.sched_name:
            svc.sched_name = DEFAULT_SCHEDULER

    if kind in ("add-server", "edit-server"):
        if not svc.fwmark and dest.forward in ("tunnel", "route"):
            dest.port = svc.port
        if dest.af != svc.af and dest.forward != "tunnel":
            raise _Fail("Different address family is allowed only for tunneling servers", server_token)
        if options & {"tun-type", "tun-port", "tun-nocsum", "tun-csum", "tun-remcsum"} and dest.forward != "tunnel":
            raise _Fail("Tunnel options conflict with forward method", None)
        # tunnel_opt_check
        count, last = 0, ""
        for index, name in enumerate(_TUN_OPTS):
            rule = _TUN_LEGAL[dest.tun_type][index]
            if name not in options:
                if rule == "+":
                    raise _Fail(f"You need to supply the '{name}' option for the '{dest.tun_type}' tunnel type", None)
            else:
                if rule == "x":
                    raise _Fail(f"Illegal '{name}' option with the '{dest.tun_type}' tunnel type", name)
                if rule == "1":
                    count += 1
                    if count > 1:
                        raise _Fail(
                            f"The option '{name}' conflicts with the '{last}' option"
                            f" in the '{dest.tun_type}' tunnel type",
                            name,
                        )
                    last = name

    service = None
    if kind not in ("clear", "set"):
        if svc.fwmark:
            service = Service(protocol=FWMARK, fwmark=svc.fwmark, fwmark_family=6 if svc.af == 6 else 4)
        else:
            service = Service(protocol=svc.protocol or "tcp", address=svc.address, port=svc.port)
        service.scheduler = svc.sched_name or DEFAULT_SCHEDULER
        service.persistent = svc.persistent
        service.timeout = svc.timeout
        service.netmask = svc.netmask
        service.pe_name = svc.pe_name
        service.one_packet = svc.one_packet
        service.sched_flags = svc.sched_flags
    destination = None
    if kind in ("add-server", "edit-server", "delete-server"):
        destination = Destination(
            address=dest.address,
            port=dest.port,
            forward=dest.forward,
            weight=dest.weight,
            upper_threshold=dest.u_threshold,
            lower_threshold=dest.l_threshold,
            tun_type=dest.tun_type,
            tun_port=dest.tun_port,
            tun_csum=_TUN_CSUM[dest.tun_flags] if dest.tun_flags < 3 else "nocsum",
        )
    return Command(
        kind=kind,
        service=service,
        destination=destination,
        timeouts=timeouts,
        given=frozenset(options),
        argv=tuple(argv),
        service_token=service_token,
        server_token=server_token,
    )


def parse_command(line: str | Sequence[str], *, resolver: Resolver | None = None, line_number: int = 1) -> Command:
    """One ipvsadm editing command (``-A -E -D -C -a -e -d --set``), as a line or as argv.

    A leading ``ipvsadm`` is ignored.  ``resolver`` is called like ``socket.getaddrinfo(host,
    None)`` for host names (the default is getaddrinfo itself).  Raises ParseError.
    """
    argv = split_line(line) if isinstance(line, str) else [w for w in line if w != "ipvsadm"]
    if not isinstance(line, str) and argv and argv[0].endswith("/ipvsadm"):
        argv = argv[1:]
    try:
        return _read_command(argv, resolver)
    except _Fail as exc:
        raise ParseError(line_number, exc.token, exc.message) from None


def parse_commands(text: str, *, resolver: Resolver | None = None) -> list[tuple[int, Command]]:
    """Every command of a text (blank lines and comments skipped), each with its line number."""
    commands = []
    for number, line in enumerate(text.splitlines(), start=1):
        argv = split_line(line)
        if argv:
            commands.append((number, parse_command(argv, resolver=resolver, line_number=number)))
    return commands


# --------------------------------------------------------------------------------------------------
# Applying commands (what the kernel does with them)

_EINVAL = "Invalid operation.  Possibly wrong module version, address not unicast, ..."
_ERANGE = "Numerical result out of range"


def _unicast_error(address: str) -> str | None:
    problem = validate.unicast_error(address)
    return f"{_EINVAL} ({problem})" if problem else None


def _check_service(svc: Service, token: str | None, strict: bool) -> None:
    if svc.scheduler not in SCHEDULERS or svc.pe_name not in ("", "sip"):
        raise CommandError("Scheduler or persistence engine not found", token)
    errors = validate.service_errors(svc) if strict else []
    if errors:
        raise CommandError("; ".join(str(e) for e in errors), token)


def _check_destination(svc: Service, dest: Destination, token: str | None, strict: bool) -> None:
    if dest.lower_threshold > dest.upper_threshold:
        raise CommandError(f"{_ERANGE} (the lower threshold -y is above the upper threshold -x)", token)
    errors = validate.destination_errors(svc, dest) if strict else []
    if errors:
        raise CommandError("; ".join(str(e) for e in errors), token)


class _Editor:
    """Applies commands to a table in place, with indexes (a restore file can have 100k lines)."""

    def __init__(self, table: Table, strict: bool):
        self.table = table
        self.strict = strict
        self.services = {svc.key: svc for svc in table.services}
        self.dests: dict[tuple, dict[tuple, Destination]] = {}

    def _dests(self, svc: Service) -> dict[tuple, Destination]:
        index = self.dests.get(svc.key)
        if index is None:
            index = self.dests[svc.key] = {dest.key: dest for dest in svc.destinations}
        return index

    def apply(self, cmd: Command) -> None:
        """Raises CommandError before changing anything."""
        table, strict, kind = self.table, self.strict, cmd.kind
        if kind == "clear":
            table.services = []
            self.services, self.dests = {}, {}
            return
        if kind == "set":
            current = table.timeouts or Timeouts()
            given = cmd.timeouts or Timeouts(0, 0, 0)
            table.timeouts = Timeouts(
                tcp=given.tcp or current.tcp, tcpfin=given.tcpfin or current.tcpfin, udp=given.udp or current.udp
            )
            return
        if cmd.service is None:
            raise CommandError(f"{kind} needs a virtual service")
        svc = self.services.get(cmd.service.key)
        token = cmd.service_token

        if kind == "add-service":
            if svc is not None:
                raise CommandError("Service already exists", token)
            svc = copy.copy(cmd.service)
            svc.destinations = []
            _check_service(svc, token, strict)
            table.services.append(svc)
            self.services[svc.key] = svc
            return
        if kind in ("edit-service", "delete-service"):
            if svc is None:
                raise CommandError("No such service", token)
            if kind == "delete-service":
                del table.services[next(i for i, s in enumerate(table.services) if s is svc)]
                del self.services[svc.key]
                self.dests.pop(svc.key, None)
                return
            given = cmd.service
            edited = copy.copy(svc)
            edited.scheduler = given.scheduler
            edited.persistent = given.persistent
            edited.timeout = given.timeout
            edited.netmask = given.netmask
            edited.pe_name = given.pe_name
            edited.one_packet = given.one_packet
            edited.sched_flags = given.sched_flags
            _check_service(edited, token, strict)
            for name in ("scheduler", "persistent", "timeout", "netmask", "pe_name", "one_packet", "sched_flags"):
                setattr(svc, name, getattr(edited, name))
            return

        if kind not in ("add-server", "edit-server", "delete-server"):
            raise CommandError(f"unknown command kind {kind!r}")
        if cmd.destination is None:
            raise CommandError(f"{kind} needs a real server")
        if svc is None:
            raise CommandError("Service not defined", token)
        given_dest = cmd.destination
        token = cmd.server_token
        dests = self._dests(svc)
        existing = dests.get(given_dest.key)
        if kind == "delete-server":
            if existing is None:
                raise CommandError("No such destination", token)
            del svc.destinations[next(i for i, d in enumerate(svc.destinations) if d is existing)]
            del dests[existing.key]
            return
        if _family(given_dest.address) != _service_family(svc) and table.daemons:
            # ip_vs_genl_set_cmd: "The synchronization protocol is incompatible with mixed family services"
            raise CommandError(f"{_EINVAL} (a sync daemon is running: it cannot carry mixed-family servers)", token)
        if given_dest.lower_threshold > given_dest.upper_threshold:
            raise CommandError(f"{_ERANGE} (the lower threshold -y is above the upper threshold -x)", token)
        if kind == "add-server":
            if existing is not None:
                raise CommandError("Destination already exists", token)
            problem = _unicast_error(given_dest.address)
            if problem:
                raise CommandError(problem, token)
            dest = copy.copy(given_dest)
            _check_destination(svc, dest, token, strict)
            svc.destinations.append(dest)
            dests[dest.key] = dest
            return
        # edit-server
        if existing is None:
            raise CommandError("No such destination", token)
        edited = copy.copy(existing)
        for name in ("forward", "weight", "upper_threshold", "lower_threshold", "tun_type", "tun_port", "tun_csum"):
            setattr(edited, name, getattr(given_dest, name))
        _check_destination(svc, edited, token, strict)
        for name in ("forward", "weight", "upper_threshold", "lower_threshold", "tun_type", "tun_port", "tun_csum"):
            setattr(existing, name, getattr(edited, name))


def apply_command(table: Table, cmd: Command, *, strict: bool = True) -> Table:
    """The table after ``cmd``, as the kernel would hold it; the input table is not changed.

    Raises CommandError with ipvsadm's message ("Service already exists", "No such service",
    "Service not defined", "Destination already exists", "No such destination", ...) or, when
    ``strict`` (the default), with the panel's validation errors (validate.py) for the service or
    real server the command leaves behind, so that the result is always a valid table.  With
    ``strict=False`` only ipvsadm's and the kernel's own rules apply: what a kernel may hold,
    such as ``-b flag-1`` on an rr service or weights above 65535 (Debian's ipvsadm takes any
    weight up to INT_MAX).
    """
    new = copy.deepcopy(table)
    _Editor(new, strict).apply(cmd)
    return new


def apply_commands(table: Table, commands: Iterable[tuple[int, Command]], *, strict: bool = True) -> Table:
    """Apply numbered commands in turn to a copy of the table; the first refusal raises ParseError with its line."""
    new = copy.deepcopy(table)
    editor = _Editor(new, strict)
    for number, cmd in commands:
        try:
            editor.apply(cmd)
        except CommandError as exc:
            raise ParseError(number, exc.token, exc.message) from None
    return new


def parse_save(text: str, *, resolver: Resolver | None = None, strict: bool = True) -> Table:
    """A whole ``ipvsadm -S`` (with or without ``-n``) or restore file, as the table it builds.

    Every line is applied to an empty table the way ``ipvsadm -R`` would apply it, so ``-C``,
    ``-E``, ``-D``, ``--set`` ... also work.  Services and real servers keep the order of the
    text.  Any bad line raises ParseError with its number; nothing is returned half-done.
    ``strict`` (the default) also holds the table to validate.py, reporting a problem with the
    line that defined the service or real server; ``strict=False`` accepts whatever ipvsadm and
    the kernel accept (for keeping what a kernel holds, e.g. in backups).
    """
    table = Table()
    editor = _Editor(table, strict)
    defined_at: dict[tuple, int] = {}  # service key -> line of its -A (or last -E)
    for number, cmd in parse_commands(text, resolver=resolver):
        try:
            editor.apply(cmd)
        except CommandError as exc:
            raise ParseError(number, exc.token, exc.message) from None
        if cmd.kind in ("add-service", "edit-service") and cmd.service is not None:
            defined_at[cmd.service.key] = number
    problems = validate.table_errors(table.services) if strict else []
    if problems:
        index, error = problems[0]
        raise ParseError(defined_at.get(table.services[index].key, 0), None, str(error))
    return table


# --------------------------------------------------------------------------------------------------
# ipvsadm's sort (libipvs comparators under glibc's merge sort)


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _family(address: str) -> int:
    """The family of a canonical address (the model's spelling): IPv6 has colons."""
    return 6 if ":" in address else 4


def _service_family(svc: Service) -> int:
    return svc.fwmark_family if svc.protocol == FWMARK else _family(svc.address)


def _words(address: str) -> tuple[int, int, int, int]:
    if not address:
        return (0, 0, 0, 0)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        packed = socket.inet_pton(family, address.split("%")[0]).ljust(16, b"\0")
    except (OSError, ValueError):
        return (0, 0, 0, 0)  # a stored row that no rule accepts today (validate.py): printed, never a crash
    return tuple(int.from_bytes(packed[i : i + 4], "big") for i in range(0, 16, 4))  # type: ignore[return-value]


def _msort(items: list, cmp: Callable[[object, object], int]) -> list:
    """glibc's msort_with_tmp: top-down merge sort, left element first on cmp <= 0."""
    if len(items) <= 1:
        return list(items)
    half = len(items) // 2
    left, right = _msort(items[:half], cmp), _msort(items[half:], cmp)
    merged, i, j = [], 0, 0
    while i < len(left) and j < len(right):
        if cmp(left[i], right[j]) <= 0:
            merged.append(left[i])
            i += 1
        else:
            merged.append(right[j])
            j += 1
    return merged + left[i:] + right[j:]


_AF = {4: 2, 6: 10}  # AF_INET, AF_INET6


def _service_sort_key(svc: Service) -> tuple:
    if svc.protocol == FWMARK:
        return (svc.fwmark, _AF[svc.fwmark_family], 0, (0, 0, 0, 0), 0, svc.fwmark_family)
    family = _family(svc.address)
    return (0, _AF[family], _PROTO_NUM.get(svc.protocol, 0), _words(svc.address), svc.port, family)


def _cmp_services(a: tuple, b: tuple) -> int:
    """libipvs ipvs_cmp_services, with C's unsigned-to-int wrap-around."""
    r = _s32(a[0] - b[0])
    if r:
        return r
    r = a[1] - b[1]
    if r:
        return r
    r = a[2] - b[2]
    if r:
        return r
    if a[5] == 6:
        for i in range(4):
            r = _s32(a[3][i] - b[3][i])
            if r:
                break
    else:
        r = _s32(a[3][0] - b[3][0])
    if r:
        return r
    return a[4] - b[4]


def _cmp_dests(a: tuple, b: tuple) -> int:
    """libipvs ipvs_cmp_dests (it looks only at the first one's address family)."""
    r = 0
    if a[0] == 6:
        for i in range(4):
            r = _s32(a[1][i] - b[1][i])
            if r:
                break
    else:
        r = _s32(a[1][0] - b[1][0])
    if r:
        return r
    return a[2] - b[2]


def sort_services(services: Sequence[Service]) -> list[Service]:
    """The services in the order ipvsadm prints them, given the kernel's dump order."""
    keyed = [(_service_sort_key(svc), svc) for svc in services]
    return [svc for _key, svc in _msort(keyed, lambda a, b: _cmp_services(a[0], b[0]))]


def sort_destinations(destinations: Sequence[Destination]) -> list[Destination]:
    """A service's real servers in the order ipvsadm prints them, given the kernel's order."""
    keyed = [((_family(dest.address), _words(dest.address), dest.port), dest) for dest in destinations]
    return [dest for _key, dest in _msort(keyed, lambda a, b: _cmp_dests(a[0], b[0]))]


# --------------------------------------------------------------------------------------------------
# Printing

HostName = Callable[[str], "str | None"]


def reverse_lookup(address: str) -> str | None:
    """What ipvsadm's addr_to_host does: gethostbyaddr's name, or None."""
    try:
        return socket.gethostbyaddr(address)[0]
    except (OSError, UnicodeError, ValueError):
        return None


def _ntop(address: str) -> str:
    """inet_ntop's spelling (glibc: ::1.2.3.4 and ::ffff:1.2.3.4 keep a dotted tail)."""
    if ":" not in address:
        return address
    try:
        return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, address))
    except (OSError, ValueError):
        return address  # as stored (a zone id from before validate.py refused them): shown, not a crash


def _port_name(port: int, protocol: int) -> str:
    name = None
    if protocol in _PROTO_BY_NUM:
        try:
            name = socket.getservbyport(port, _PROTO_BY_NUM[protocol])
        except (OSError, OverflowError):
            name = None
    return name if name is not None else str(port)


def _addrport(family: int, address: str, port: int, protocol: int, numeric: bool, host_name: HostName | None) -> str:
    """ipvsadm's addrport_to_anyname (into its 60-byte buffer)."""
    left, right = ("", "") if family == 4 else ("[", "]")
    if numeric:
        text = f"{left}{_ntop(address)}{right}:{port}"
    else:
        name = (host_name or reverse_lookup)(address) or _ntop(address)
        text = f"{left}{name}{right}:{_port_name(port, protocol)}"
    return text[:59]


def _svc_protocol_number(svc: Service) -> int:
    return 0 if svc.protocol == FWMARK else _PROTO_NUM.get(svc.protocol, 0)


def _sched_flags_text(svc: Service) -> str:
    names = []
    if svc.scheduler == "sh":
        names = [n for n, bit in (("sh-fallback", 1), ("sh-port", 2)) if svc.sched_flags & bit]
    elif svc.scheduler == "mh":
        names = [n for n, bit in (("mh-fallback", 1), ("mh-port", 2)) if svc.sched_flags & bit]
    else:
        names = [n for n, bit in (("flag-1", 1), ("flag-2", 2), ("flag-3", 4)) if svc.sched_flags & bit]
    return ",".join(names)


def _mask_text(svc: Service) -> str | None:
    """The persistence mask as ipvsadm prints it, or None for a host mask."""
    if _service_family(svc) == 4:
        if svc.netmask & 0xFFFFFFFF == 0xFFFFFFFF:
            return None
        return str(ipaddress.IPv4Address(svc.netmask & 0xFFFFFFFF))
    if svc.netmask == 128:
        return None
    return str(_c_int(svc.netmask))


def _c_int(value: int) -> int:
    return _s32(value)


def _service_name(svc: Service, rule: bool, numeric: bool, host_name: HostName | None) -> str:
    if svc.protocol == FWMARK:
        mark = _c_int(svc.fwmark)
        if rule:
            return f"-f {mark} -6" if svc.fwmark_family == 6 else f"-f {mark}"
        return f"FWM  {mark} IPv6" if svc.fwmark_family == 6 else f"FWM  {mark}"
    family = _family(svc.address)
    vname = _addrport(family, svc.address, svc.port, _svc_protocol_number(svc), numeric, host_name)
    if rule:
        stype = {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}.get(svc.protocol, "--xxx-service")
        return f"{stype} {vname}"
    text = f"{svc.protocol.upper() if svc.protocol in _PROTO_NUM else '?':<4} {vname}"
    return text if family == 6 else text[:33]


def _dest_name(svc: Service, dest: Destination, rule: bool, numeric: bool, host_name: HostName | None) -> str:
    family = _family(dest.address)
    text = _addrport(family, dest.address, dest.port, _svc_protocol_number(svc), numeric, host_name)
    return text if rule or family == 6 else text[:28]


def _fwd_switch(dest: Destination) -> str:
    return {"masq": "-m", "tunnel": "-i", "route": "-g", LOCAL: "-g"}.get(dest.forward, "-g")


def _fwd_name(dest: Destination) -> str:
    return {"masq": "Masq", "tunnel": "Tunnel", "route": "Route", LOCAL: "Local"}.get(dest.forward, "Route")


def _tun_flag_index(dest: Destination) -> int:
    return _TUN_CSUM.index(dest.tun_csum) if dest.tun_csum in _TUN_CSUM else 0


def _service_rule(svc: Service, name: str) -> str:
    text = f"-A {name} -s {svc.scheduler}"
    if svc.persistent:
        text += f" -p {svc.timeout & 0xFFFFFFFF}"
        mask = _mask_text(svc)
        if mask is not None:
            text += f" -M {mask}"
    if svc.pe_name:
        text += f" --pe {svc.pe_name}"
    if svc.one_packet:
        text += " -o"
    if svc.sched_flags & 7:
        text += f" -b {_sched_flags_text(svc)}"
    return text


def _dest_rule(name: str, dname: str, dest: Destination) -> str:
    text = f"-a {name} -r {dname} {_fwd_switch(dest)} -w {_c_int(dest.weight)}"
    if dest.forward == "tunnel":
        if dest.tun_type == "gre":
            text += f" --tun-type gre --tun-{_TUN_CSUM[_tun_flag_index(dest)]}"
        elif dest.tun_type == "gue":
            text += f" --tun-type gue --tun-port {dest.tun_port} --tun-{_TUN_CSUM[_tun_flag_index(dest)]}"
        elif dest.tun_type == "ipip":
            text += " --tun-type ipip"
    return text


def format_save(table: Table, *, numeric: bool = True, host_name: HostName | None = None, sort: bool = True) -> str:
    """Exactly what ``ipvsadm -S -n`` (or ``ipvsadm -S`` with ``numeric=False``) prints.

    ``host_name`` maps an address to the name to print (default: a reverse lookup, as ipvsadm
    does); it is used only when not numeric.  Ports get their services-database names.
    ``sort=False`` keeps the table's own order (ipvsadm has no such option: -S always sorts).
    """
    lines = []
    for svc in sort_services(table.services) if sort else table.services:
        name = _service_name(svc, True, numeric, host_name)
        lines.append(_service_rule(svc, name))
        for dest in sort_destinations(svc.destinations) if sort else svc.destinations:
            lines.append(_dest_rule(name, _dest_name(svc, dest, True, numeric, host_name), dest))
    return "".join(line + "\n" for line in lines)


def _largenum(value: int, exact: bool) -> str:
    value &= 0xFFFFFFFFFFFFFFFF
    if exact:
        digits = len(str(value))
        return f"{value:>{9 if digits <= 8 else digits + 1}}"
    if value < 100_000_000:
        return f"{value:>9}"
    if value < 1_000_000_000:
        return f"{value // 1000:>8}K"
    if value < 100_000_000_000:
        return f"{value // 1_000_000:>8}M"
    if value < 100_000_000_000_000:
        return f"{value // 1_000_000_000:>8}G"
    return f"{value // 1_000_000_000_000:>8}T"


LIST_MODES = ("default", "stats", "rate", "thresholds", "persistent-conn", "tun-info")


def _title(mode: str) -> str:
    if mode == "stats":
        return (
            f"{'Prot LocalAddress:Port':<33} {'Conns':>8} {'InPkts':>8} {'OutPkts':>8} {'InBytes':>8} {'OutBytes':>8}\n"
            "  -> RemoteAddress:Port\n"
        )
    if mode == "rate":
        return (
            f"{'Prot LocalAddress:Port':<33} {'CPS':>8} {'InPPS':>8} {'OutPPS':>8} {'InBPS':>8} {'OutBPS':>8}\n"
            "  -> RemoteAddress:Port\n"
        )
    if mode == "thresholds":
        return (
            f"{'Prot LocalAddress:Port':<33} {'Uthreshold':<10} {'Lthreshold':<10}"
            f" {'ActiveConn':<10} {'InActConn':<10}\n"
            "  -> RemoteAddress:Port\n"
        )
    if mode == "persistent-conn":
        return (
            f"{'Prot LocalAddress:Port':<33} {'Weight':<9} {'PersistConn':<11} {'ActiveConn':<10} {'InActConn':<10}\n"
            "  -> RemoteAddress:Port\n"
        )
    if mode == "tun-info":
        return (
            "Prot LocalAddress:Port Scheduler Flags\n"
            "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n"
        )
    return (
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    )


def _u32(value: int) -> int:
    return value & 0xFFFFFFFF


def _tun_info(dest: Destination) -> str:
    if dest.forward != "tunnel":
        return "n/a"
    flags = ("-c", "+c", "r+c")[_tun_flag_index(dest)]
    if dest.tun_type == "gue":
        return f"gue:{dest.tun_port}:{flags}"[:15]
    if dest.tun_type == "gre":
        return f"gre:{flags}"
    return dest.tun_type if dest.tun_type == "ipip" else "n/a"


def _service_entry(
    svc: Service, mode: str, numeric: bool, exact: bool, sort: bool, host_name: HostName | None
) -> list[str]:
    name = _service_name(svc, False, numeric, host_name)
    stats = svc.stats or Stats()
    if mode == "stats":
        values = (stats.conns, stats.inpkts, stats.outpkts, stats.inbytes, stats.outbytes)
        head = f"{name:<33}" + "".join(_largenum(v, exact) for v in values)
    elif mode == "rate":
        values = (stats.cps, stats.inpps, stats.outpps, stats.inbps, stats.outbps)
        head = f"{name:<33}" + "".join(_largenum(v, exact) for v in values)
    else:
        head = f"{name} {svc.scheduler}"
        if svc.sched_flags & 7:
            head += f" ({_sched_flags_text(svc)})"
        if svc.persistent:
            head += f" persistent {_u32(svc.timeout)}"
            mask = _mask_text(svc)
            if mask is not None:
                head += f" mask {mask}"
            if svc.pe_name:
                head += f" pe {svc.pe_name}"
        if svc.one_packet:
            head += " ops"
    lines = [head]
    dests = sort_destinations(svc.destinations) if sort else list(svc.destinations)
    for dest in dests:
        dname = _dest_name(svc, dest, False, numeric, host_name)
        dstats = dest.stats or Stats()
        active, inactive = _u32(dest.active_conns), _u32(dest.inactive_conns)
        if mode == "stats":
            values = (dstats.conns, dstats.inpkts, dstats.outpkts, dstats.inbytes, dstats.outbytes)
            lines.append(f"  -> {dname:<28}" + "".join(_largenum(v, exact) for v in values))
        elif mode == "rate":
            line = f"  -> {dname:<28} {_u64(dstats.cps):>8} {_u64(dstats.inpps):>8} {_u64(dstats.outpps):>8}"
            lines.append(line + _largenum(dstats.inbps, exact) + _largenum(dstats.outbps, exact))
        elif mode == "thresholds":
            lines.append(
                f"  -> {dname:<28} {_u32(dest.upper_threshold):<10} {_u32(dest.lower_threshold):<10} "
                f"{active:<10} {inactive:<10}"
            )
        elif mode == "persistent-conn":
            lines.append(
                f"  -> {dname:<28} {_u32(dest.weight):<9} {_u32(dest.persistent_conns):<11} {active:<10} {inactive:<10}"
            )
        elif mode == "tun-info":
            lines.append(
                f"  -> {dname:<28} {_fwd_name(dest):<7} {_tun_info(dest):<13} {_c_int(dest.weight):<6} "
                f"{active:<10} {inactive:<10}"
            )
        else:
            lines.append(f"  -> {dname:<28} {_fwd_name(dest):<7} {_c_int(dest.weight):<6} {active:<10} {inactive:<10}")
    return lines


def _u64(value: int) -> int:
    return value & 0xFFFFFFFFFFFFFFFF


def format_list(
    table: Table,
    *,
    numeric: bool = True,
    mode: str = "default",
    exact: bool = False,
    sort: bool = True,
    host_name: HostName | None = None,
    service: tuple | None = None,
) -> str:
    """Exactly what ``ipvsadm -L`` prints: ``-Ln`` by default.

    ``mode`` is one of LIST_MODES (``--stats``, ``--rate``, ``--thresholds``,
    ``--persistent-conn``, ``--tun-info``); ``exact`` is ``--exact``; ``sort=False`` is
    ``--nosort``.  With ``service`` (a Service.key) only that service is listed, as
    ``ipvsadm -L -t VIP:PORT`` does: no version line.  The version line comes from
    ``table.info`` (default 1.2.1, size 4096).
    """
    if mode not in LIST_MODES:
        raise ValueError(f"unknown listing mode {mode!r}: use one of {', '.join(LIST_MODES)}")
    out = []
    if service is None:
        info = table.info or Info()
        out.append(f"IP Virtual Server version {info.version} (size={info.conn_tab_size})\n")
        services = sort_services(table.services) if sort else list(table.services)
    else:
        services = [svc for svc in table.services if svc.key == service]
        if not services:
            raise CommandError("No such service")
    out.append(_title(mode))
    for svc in services:
        out.extend(line + "\n" for line in _service_entry(svc, mode, numeric, exact, sort, host_name))
    return "".join(out)


def format_timeout(timeouts: Timeouts | None) -> str:
    """``ipvsadm -L --timeout``."""
    t = timeouts or Timeouts()
    return f"Timeout (tcp tcpfin udp): {_c_int(t.tcp)} {_c_int(t.tcpfin)} {_c_int(t.udp)}\n"


def format_daemons(daemons: Iterable[SyncDaemon]) -> str:
    """``ipvsadm -L --daemon``: the master daemon first, then the backup one."""
    out = []
    for state in ("master", "backup"):
        for daemon in daemons:
            if daemon.state != state:
                continue
            line = f"{state} sync daemon (mcast={daemon.mcast_ifn}, syncid={_c_int(daemon.syncid)}"
            if daemon.sync_maxlen:
                line += f", maxlen={_u32(daemon.sync_maxlen)}"
            if daemon.mcast_group:
                line += f", group={_ntop(daemon.mcast_group)}"
            if daemon.mcast_port:
                line += f", port={_u32(daemon.mcast_port)}"
            if daemon.mcast_ttl:
                line += f", ttl={_u32(daemon.mcast_ttl)}"
            out.append(line + ")\n")
            break
    return "".join(out)


def format_command(cmd: Command) -> str:
    """A canonical ipvsadm command line (without the program name) for a Command."""
    if cmd.kind == "clear":
        return "-C"
    if cmd.kind == "set":
        t = cmd.timeouts or Timeouts(0, 0, 0)
        return f"--set {t.tcp} {t.tcpfin} {t.udp}"
    if cmd.service is None:
        raise ValueError(f"{cmd.kind} needs a service")
    svc = cmd.service
    name = _service_name(svc, True, True, None)
    letter = {
        "add-service": "-A",
        "edit-service": "-E",
        "delete-service": "-D",
        "add-server": "-a",
        "edit-server": "-e",
        "delete-server": "-d",
    }[cmd.kind]
    if cmd.kind in ("add-service", "edit-service"):
        return letter + _service_rule(svc, name)[2:]
    if cmd.kind == "delete-service":
        return f"-D {name}"
    dest = cmd.destination
    if dest is None:
        raise ValueError(f"{cmd.kind} needs a real server")
    dname = _dest_name(svc, dest, True, True, None)
    if cmd.kind == "delete-server":
        return f"-d {name} -r {dname}"
    text = letter + _dest_rule(name, dname, dest)[2:]
    if dest.upper_threshold:
        text += f" -x {dest.upper_threshold}"
    if dest.lower_threshold:
        text += f" -y {dest.lower_threshold}"
    return text
