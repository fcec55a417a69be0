"""The rules of a health check and of a service's health policy, in one place.

Forms, the import of the text form and the service layer all clean values here, so the same value is refused
the same way wherever it is typed. Values may come typed (a form's cleaned data) or as text (the text form):
`clean_check` / `clean_policy` coerce them, check every rule and return the spec object, or raise HealthError
naming every field refused, each with a message that names the field ("interval must be 1..3600 seconds").

A check keeps only the fields of its kind (an http path on a tcp check would make two identical probes of a
server look different, and so run twice): a field of another kind with a value is refused, unless the caller
says the values come from a form that shows every kind's fields (`other_kinds="ignore"`).
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, fields

from lvsadmin.ipvs.model import FORWARDS, hostport, normalise_address
from lvsadmin.ipvs.validate import PORT, UINT_MAX, address_error, unicast_error

from .spec import DNS_TYPES, HTTP_METHODS, KINDS, ON_FAILURE, Check, Policy


@dataclass(frozen=True, slots=True)
class Range:
    """An inclusive range of numbers and how to say it ("interval must be 1..3600 seconds")."""

    what: str
    low: float
    high: float
    unit: str = ""

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def message(self) -> str:
        return f"{self.what} must be {_num(self.low)}..{_num(self.high)}" + (f" {self.unit}" if self.unit else "")


# Every limit of a check and a policy.
INTERVAL = Range("interval", 1, 3600, "seconds")
MIN_TIMEOUT = 0.1  # the timeout's upper bound is the interval: a probe never overlaps the next
FALL = Range("fall", 1, 100)
RISE = Range("rise", 1, 100)
MAX_PATH = 2048
MAX_HOST = 253  # a DNS name's longest text form
MAX_BODY = 1000
MAX_COMMAND = 1000
STATUS = Range("a status code", 100, 599)
QUORUM = Range("quorum", 0, UINT_MAX + 1)
MAX_DOWN_SHARE = Range("max down share", 0.0, 1.0, "(a share of the servers: 0.5 is half)")
SLOW_START = Range("slow start", 0, 3600, "seconds")

# The fields each kind reads besides the common ones (kind, port, interval, timeout, fall, rise, source).
COMMON_FIELDS = ("kind", "port", "interval", "timeout", "fall", "rise", "source")
KIND_FIELDS = {
    "tcp": (),
    "http": ("method", "path", "host", "expect", "body"),
    "https": ("method", "path", "host", "expect", "body", "verify_tls"),
    "dns": ("query", "qtype"),
    "misc": ("command", "dynamic"),
}
CHECK_FIELDS = tuple(f.name for f in fields(Check))
POLICY_FIELDS = tuple(f.name for f in fields(Policy))
_DEFAULT_CHECK = Check()
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


class HealthError(ValueError):
    """Values refused: `.field` and `.message` of the first, `.errors` [(field, message)] of all."""

    def __init__(self, field: str, message: str, errors: list[tuple[str, str]] | None = None):
        self.field, self.message = field, message
        self.errors = errors or [(field, message)]
        super().__init__("; ".join(m for _, m in self.errors))


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class _Cleaner:
    """Collects the errors of one set of values, field by field."""

    def __init__(self, values: dict):
        self.values = values
        self.errors: list[tuple[str, str]] = []
        self.out: dict = {}

    def refuse(self, name: str, message: str) -> None:
        if not any(f == name for f, _ in self.errors):
            self.errors.append((name, message))

    def raw(self, name: str, default):
        value = self.values.get(name, default)
        return default if value is None else value

    def number(self, name: str, default, limit: Range, *, whole: bool) -> None:
        value = self.raw(name, default)
        what = "a whole number" if whole else "a number"
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(str(value).strip()) if isinstance(value, str) else float(value)
            if not math.isfinite(number) or (whole and not number.is_integer()):
                raise ValueError
        except (TypeError, ValueError):
            self.refuse(name, f"{limit.what} must be {what}: {limit.message}")
            return
        if number not in limit:
            self.refuse(name, limit.message)
            return
        self.out[name] = int(number) if whole else number

    def flag(self, name: str, default: bool) -> None:
        value = self.raw(name, default)
        if isinstance(value, bool):
            self.out[name] = value
        elif str(value).strip().lower() in _TRUE + _FALSE:
            self.out[name] = str(value).strip().lower() in _TRUE
        else:
            self.refuse(name, f"{name.replace('_', ' ')} must be yes or no, not {value!r}")

    def text(self, name: str, default: str = "") -> str:
        value = self.raw(name, default)
        text = str(value).strip() if not isinstance(value, bool) else str(value)
        self.out[name] = text
        return text

    def choice(self, name: str, default: str, choices: tuple[str, ...], *, what: str, upper: bool = False) -> None:
        text = self.text(name, default)
        text = text.upper() if upper else text.lower()
        self.out[name] = text
        if text not in choices:
            self.refuse(name, f"{what} must be one of {', '.join(choices)}, not {text!r}")

    def done(self):
        if self.errors:
            raise HealthError(*self.errors[0], errors=self.errors)
        return self.out


def dns_name_error(text: str, what: str) -> str | None:
    """Why `text` is not a DNS name (labels of letters, digits, - and _, up to 63 each, 253 in all), or None."""
    if not text:
        return f"{what} is required"
    if len(text) > MAX_HOST:
        return f"{what} must be at most {MAX_HOST} characters"
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return f"{what} {text!r} is not a DNS name"
    return None


def host_error(text: str) -> str | None:
    """The Host header (and SNI name): a DNS name or an IP address, at most 253 characters."""
    if len(text) > MAX_HOST:
        return f"host must be at most {MAX_HOST} characters"
    if address_error(text.strip("[]")) is None:
        return None
    if "%" in text:
        return address_error(text)
    if dns_name_error(text, "host"):
        return f"host {text!r} is neither a DNS name nor an IP address"
    return None


def expect_error(text: str) -> str | None:
    """Expected status codes: codes and ranges 100..599, comma-separated ("200-299,301")."""
    if not text:
        return "expect needs at least one status code, such as 200 or 200-399"
    for item in text.split(","):
        low, _, high = item.strip().partition("-")
        if not (low.strip().isdigit() and (not _ or high.strip().isdigit())):
            return f"expect: {item.strip()!r} is not a status code or a range such as 200-299"
        low_n, high_n = int(low), int(high) if _ else int(low)
        if low_n not in STATUS or high_n not in STATUS:
            return f"expect: {item.strip()} is outside 100..599 (status codes are 100..599)"
        if low_n > high_n:
            return f"expect: the range {item.strip()} goes backwards"
    return None


def _canonical_expect(text: str) -> str:
    return ",".join("-".join(p.strip() for p in item.split("-")) for item in text.split(","))


def _clean_path(c: _Cleaner) -> None:
    path = c.text("path", _DEFAULT_CHECK.path)
    if not path.startswith("/"):
        c.refuse("path", f"path must start with / (such as /health), not {path!r}")
    elif len(path) > MAX_PATH:
        c.refuse("path", f"path must be at most {MAX_PATH} characters")
    elif _CONTROL.search(path):
        c.refuse("path", "path must not contain spaces or control characters: encode them (%20)")


def _clean_http(c: _Cleaner, kind: str) -> None:
    c.choice("method", _DEFAULT_CHECK.method, HTTP_METHODS, what="method", upper=True)
    _clean_path(c)
    host = c.text("host")
    if host and (problem := host_error(host)):
        c.refuse("host", problem)
    expect = c.text("expect", _DEFAULT_CHECK.expect).replace(" ", "")
    if problem := expect_error(expect):
        c.refuse("expect", problem)
    else:
        c.out["expect"] = _canonical_expect(expect)
    body = str(c.raw("body", ""))  # a regular expression: its spaces count
    c.out["body"] = body
    if len(body) > MAX_BODY:
        c.refuse("body", f"body must be at most {MAX_BODY} characters")
    elif body:
        try:
            re.compile(body)
        except re.error as exc:
            c.refuse("body", f"body is not a regular expression: {exc}")
    if kind == "https":
        c.flag("verify_tls", _DEFAULT_CHECK.verify_tls)


def _clean_dns(c: _Cleaner) -> None:
    query = c.text("query")
    if problem := dns_name_error(query, "query"):
        c.refuse("query", problem)
    c.choice("qtype", _DEFAULT_CHECK.qtype, DNS_TYPES, what="qtype", upper=True)


def _clean_misc(c: _Cleaner) -> None:
    command = str(c.raw("command", "")).strip()
    c.out["command"] = command
    if not command:
        c.refuse("command", "command is required: the program to run, with its arguments")
    elif len(command) > MAX_COMMAND:
        c.refuse("command", f"command must be at most {MAX_COMMAND} characters")
    elif "\x00" in command:
        c.refuse("command", "command must not contain a NUL character")
    else:
        try:
            shlex.split(command)
        except ValueError as exc:
            c.refuse("command", f"command cannot be split into arguments: {exc} (check its quotes)")
    c.flag("dynamic", _DEFAULT_CHECK.dynamic)


def _refuse_other_kinds(c: _Cleaner, kind: str) -> None:
    mine = set(COMMON_FIELDS) | set(KIND_FIELDS[kind])
    for name, value in c.values.items():
        if name not in CHECK_FIELDS:
            c.refuse(name, f"unknown health check setting {name!r}")
        elif name not in mine and value not in (None, "", getattr(_DEFAULT_CHECK, name)):
            users = [k for k, names in KIND_FIELDS.items() if name in names]
            c.refuse(name, f"{name} is for {' and '.join(users)} checks, not {kind}")


def _protocol_error(kind: str, port: int, protocol: str) -> str | None:
    if kind == "dns" and protocol not in ("udp", "fwmark"):
        return f"a dns check needs a UDP or firewall-mark service, not {protocol.upper()}"
    if kind in ("tcp", "http", "https") and protocol in ("udp", "sctp") and not port:
        article = "an" if kind.startswith("h") else "a"
        return f"{article} {kind.upper()} check of a {protocol.upper()} service needs the TCP port to probe: set port"
    return None


def clean_check(values: dict, *, protocol: str, other_kinds: str = "refuse") -> Check:
    """A Check from `values` (missing fields take their defaults) for a service of `protocol` (tcp, udp, sctp or
    fwmark). `other_kinds="ignore"`: fields of other kinds are dropped instead of refused (a form that shows all).
    Raises HealthError."""
    c = _Cleaner(dict(values))
    kind = c.text("kind", "").lower()
    c.out["kind"] = kind
    if kind not in KINDS:
        c.refuse("kind", f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        c.done()
    if other_kinds == "ignore":
        c.values = {k: v for k, v in c.values.items() if k in COMMON_FIELDS or k in KIND_FIELDS[kind]}
    else:
        _refuse_other_kinds(c, kind)
    c.number("port", 0, Range("port", PORT.low, PORT.high), whole=True)
    c.number("interval", _DEFAULT_CHECK.interval, INTERVAL, whole=False)
    interval = c.out.get("interval", INTERVAL.high)
    c.number("timeout", _DEFAULT_CHECK.timeout,
             Range("timeout", MIN_TIMEOUT, interval, "seconds (at most the interval: a probe never overlaps the next)"),
             whole=False)
    c.number("fall", _DEFAULT_CHECK.fall, FALL, whole=True)
    c.number("rise", _DEFAULT_CHECK.rise, RISE, whole=True)
    source = c.text("source")
    if source and (problem := address_error(source)):
        c.refuse("source", f"source: {problem}")
    elif source:
        c.out["source"] = normalise_address(source)
    if kind in ("http", "https"):
        _clean_http(c, kind)
    elif kind == "dns":
        _clean_dns(c)
    elif kind == "misc":
        _clean_misc(c)
    if "port" in c.out and (problem := _protocol_error(kind, c.out["port"], protocol)):
        c.refuse("kind" if kind == "dns" else "port", problem)
    return Check(**c.done())


def sorry_server_error(text: str, family: int) -> tuple[str | None, str]:
    """(why not, canonical text) of a sorry server: ADDRESS:PORT ([v6]:PORT) of the service's family."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or (":" in host and not (host.startswith("[") and host.endswith("]"))):
        return f"sorry server must be ADDRESS:PORT (an IPv6 address in brackets: [2001:db8::1]:80), not {text!r}", text
    address = host[1:-1] if host.startswith("[") else host
    if problem := address_error(address):
        return f"sorry server: {problem}", text
    if problem := unicast_error(address):
        return f"sorry server: {problem}", text
    address = normalise_address(address)
    if (6 if ":" in address else 4) != family:
        return f"sorry server must be an IPv{family} address, like the service", text
    if not port.isdigit() or int(port) not in PORT:
        return f"sorry server: {PORT.message}", text
    return None, hostport(address, int(port))


def clean_policy(values: dict, *, family: int) -> Policy:
    """A Policy from `values` (missing fields take their defaults) for a service of address `family` (4 or 6).
    Raises HealthError."""
    default = Policy()
    c = _Cleaner(dict(values))
    for name in c.values:
        if name not in POLICY_FIELDS:
            c.refuse(name, f"unknown health policy setting {name!r}")
    c.choice("on_failure", default.on_failure, ON_FAILURE, what="on failure")
    c.number("quorum", default.quorum, QUORUM, whole=True)
    c.number("hysteresis", default.hysteresis, Range("hysteresis", 0, c.out.get("quorum", 0)), whole=True)
    if c.out.get("quorum") == 0 and any(f == "hysteresis" for f, _ in c.errors):
        c.errors = [(f, m) if f != "hysteresis" else (f, "hysteresis must be 0 without a quorum (0..quorum)")
                    for f, m in c.errors]
    sorry = c.text("sorry_server")
    if sorry:
        problem, c.out["sorry_server"] = sorry_server_error(sorry, family)
        if problem:
            c.refuse("sorry_server", problem)
    c.choice("sorry_forward", default.sorry_forward, FORWARDS, what="sorry forward")
    c.number("max_down_share", default.max_down_share, MAX_DOWN_SHARE, whole=False)
    c.number("slow_start", default.slow_start, SLOW_START, whole=True)
    c.flag("start_down", default.start_down)
    return Policy(**c.done())
