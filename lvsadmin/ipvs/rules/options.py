"""ipvsadm's options: its popt table, popt's reading of an argv, and ipvsadm's option bookkeeping.

``Popt`` is popt 1.19's ``poptGetNextOpt`` over ipvsadm's ``options_table``: short options bundle
(``-At``, ``-mw2``), an option's value may be glued on (``-w2``, ``-p=60``, ``--weight=2``), ``-p``
takes a value only when the next word does not start with ``-``, ``--`` ends the options.  It is
the one reading of ipvsadm's option syntax: the editing commands (read.py) and ``manage.py ipvsadm``
(its list and save commands) both go through it.  ``OptionError`` is ipvsadm's ``fail()``: the
message and the word it is about, without a line number (parse.py adds that as ParseError).

The rest are ipvsadm's own tables, in ipvsadm's order: the commands, the option names, which
option each command requires or refuses, and which tunnel option each tunnel type takes.
"""

from __future__ import annotations

from collections.abc import Sequence


class OptionError(Exception):
    """ipvsadm's fail() while reading one command line: its message and the word it is about."""

    def __init__(self, message: str, token: str | None = None):
        self.message = message
        self.token = token
        super().__init__(message)


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


class Popt:
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
        """The next option as (tag, value), or None at the end; raises OptionError on popt errors."""
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
                        raise OptionError(f"unknown option '{word}'", word)
                    if eq:
                        long_arg = value
                else:
                    self.bundle = word[1:]
            if opt is None:
                chars = self.bundle or ""
                self.bundle = None
                opt = _BY_SHORT.get(chars[0])
                if opt is None:
                    raise OptionError(f"unknown option '{self.bad_option()}'", self.bad_option())
                if len(chars) > 1:
                    self.bundle = chars[1:]
            _long, _short, argtype, tag = opt
            if argtype == _NONE:
                if long_arg is not None or (self.bundle is not None and self.bundle.startswith("=")):
                    raise OptionError(f"option '{self.bad_option()}' does not take an argument", self.bad_option())
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
                raise OptionError(f"option '{self.bad_option()}' needs an argument", self.bad_option())
            following = self.argv[self.next]
            if argtype == _OPTIONAL and following.startswith("-"):
                return tag, None
            self.next += 1
            return tag, following


# --------------------------------------------------------------------------------------------------
# ipvsadm's option bookkeeping

CMD_NAMES = {  # ipvsadm's cmdnames, for its messages
    "add-service": "add-service",
    "edit-service": "edit-service",
    "delete-service": "delete-service",
    "clear": "flush",
    "add-server": "add-server",
    "edit-server": "edit-server",
    "delete-server": "delete-server",
    "set": "set",
}
COMMAND_TAGS = {
    "A": "add-service",
    "E": "edit-service",
    "D": "delete-service",
    "C": "clear",
    "a": "add-server",
    "e": "edit-server",
    "d": "delete-server",
    "set": "set",
}
NOT_EDITING = {
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
OPTNAMES = (
    "numeric", "connection", "service-address", "scheduler", "persistent", "netmask", "real-server",
    "forwarding-method", "weight", "u-threshold", "l-threshold", "mcast-interface", "timeout", "daemon",
    "stats", "rate", "thresholds", "persistent-conn", "nosort", "syncid", "exact", "ops", "pe",
    "sched-flags", "mcast-group", "mcast-port", "mcast-ttl", "sync-maxlen", "tun-info", "tun-type",
    "tun-port", "tun-nocsum", "tun-csum", "tun-remcsum",
)  # fmt: skip

# commands_v_options: '+' compulsory, 'x' illegal, '1' exclusive, ' ' optional.
LEGAL = {
    "add-service":    "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
    "edit-service":   "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
    "delete-service": "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "clear":          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "add-server":     "xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
    "delete-server":  "xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "edit-server":    "xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
    "set":            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
}  # fmt: skip
assert all(len(row) == len(OPTNAMES) for row in LEGAL.values())

# tunnel_types_v_options over (tun-port, tun-nocsum, tun-csum, tun-remcsum).
TUN_TYPES = ("ipip", "gue", "gre")
TUN_OPTS = ("tun-port", "tun-nocsum", "tun-csum", "tun-remcsum")
TUN_LEGAL = {"ipip": "xxxx", "gue": "+111", "gre": "x11x"}
