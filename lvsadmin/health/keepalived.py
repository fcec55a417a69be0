"""Migration from keepalived: a keepalived.conf's `virtual_server` blocks as an IPVS table and health checks.

No maintained keepalived.conf parser on PyPI fits (the ones there edit files and keep no line numbers for the
refusals), so this reads the subset itself: words, braces, `#` and `!` comments, quoted strings. Blocks that
have nothing to do with the IPVS table (global_defs, vrrp_instance, …) are skipped with a warning; anything
else outside the subset is refused with its line ("line 12: virtual_server_group is not supported"), and so is
`include` (the files it names are not here).

The table is built by writing the ipvsadm commands keepalived would send and reading them with the ipvsadm rules
parser (lvsadmin.ipvs.rules), so scheduler names, weights and ports are refused exactly as an ipvsadm import
refuses them. keepalived's own corrections are made the same way keepalived makes them, with a warning: the
port of a DR/TUN real server becomes the service's, a fwmark service's DR/TUN real server gets port 0.

How keepalived's checker settings map (keepalived.conf(5) and its checkers' source):
- interval = `delay_loop` (default 60 s); keepalived then re-probes a failed server every `delay_before_retry`
  seconds before it declares it down, which has no equivalent here: probes stay `interval` apart;
- timeout = `connect_timeout` (default 5 s; MISC_CHECK: `misc_timeout`, default delay_loop);
- fall = `retry` (old name `nb_get_retry`) + 1: keepalived makes `retry` *more* checks after a first failure
  (default retry 1; DNS_CHECK 3; MISC_CHECK 0);
- rise = 1: keepalived brings a server back after one success;
- `inhibit_on_failure` (per real server in keepalived) → on_failure "inhibit" when every checked server has it,
  else "remove" (keepalived's default), with a warning naming the servers when it is mixed;
- `quorum` (keepalived's default 1, which only acts through a sorry server), `hysteresis`, `sorry_server`,
  `alpha` (a server starts down) map to the policy; `omega` and notify scripts are ignored with a warning.
keepalived checks each real server on its own; here a service has one check and per-server overrides, so the
check most of its servers share becomes the service's, and the others (or "none") become overrides.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from lvsadmin.ipvs import rules
from lvsadmin.ipvs.model import FWMARK, Table, hostport, key_text, normalise_address
from lvsadmin.ipvs.rules import ParseError

from .spec import Check, Policy, ServiceHealth, server_text
from .text import LineError
from .validate import HealthError, clean_check, clean_policy

CHECKERS = {"TCP_CHECK": "tcp", "HTTP_GET": "http", "SSL_GET": "https", "DNS_CHECK": "dns", "MISC_CHECK": "misc"}
_DEFAULT_RETRY = {"tcp": 1, "http": 1, "https": 1, "dns": 3, "misc": 0}
_FORWARD = {"NAT": "masq", "DR": "route", "TUN": "tunnel"}
_FORWARD_SWITCH = {"masq": "-m", "route": "-g", "tunnel": "-i"}
_PROTOCOL_SWITCH = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}
# Top-level blocks that are about VRRP, addresses or the process, not the IPVS table: skipped with a warning.
_NOT_IPVS = ("global_defs", "vrrp_", "static_", "linkbeat_", "track_", "bfd_", "garp_", "SSL", "net_namespace",
             "instance", "use_pid_dir", "child_wait_time", "lvs_", "notify_fifo")
# Settings ignored with a warning: (where, keyword) → why.
_IGNORED = {
    "omega": "omega is ignored (lvsadmin runs no quorum scripts)",
    "quorum_up": "quorum_up is ignored (lvsadmin records quorum changes as health events)",
    "quorum_down": "quorum_down is ignored (lvsadmin records quorum changes as health events)",
    "notify_up": "notify_up is ignored (lvsadmin records transitions as health events)",
    "notify_down": "notify_down is ignored (lvsadmin records transitions as health events)",
    "smtp_alert": "smtp_alert is ignored (alerts are set up in lvsadmin)",
    "ha_suspend": "ha_suspend is ignored (every balancer checks)",
    "warmup": "warmup is ignored (lvsadmin spreads the first probes itself)",
    "nat_mask": "nat_mask is ignored (keepalived does not use it either)",
    "sorry_server_inhibit": "sorry_server_inhibit is ignored (the sorry server is in the table only while needed)",
    "http_protocol": "http_protocol is ignored (lvsadmin speaks HTTP/1.1)",
    "fast_recovery": "fast_recovery is ignored",
    "enable_sni": "enable_sni is ignored (the Host name is sent as SNI when one is set)",
    "log_all_failures": "log_all_failures is ignored (every transition is a health event)",
    "user": "user is ignored (a MISC check runs as the agent's user)",
    "snmp_name": "snmp_name is ignored",
}
# A scheduler's flags, each a keyword of its own in keepalived, `-b` in ipvsadm (same names).
_SCHED_FLAGS = ("flag-1", "flag-2", "flag-3", "sh-port", "sh-fallback", "mh-port", "mh-fallback")
_TIMING = ("delay_loop", "connect_timeout", "retry", "nb_get_retry", "delay_before_retry", "virtualhost",
           "inhibit_on_failure", "alpha")


@dataclass
class KeepalivedImport:
    """What a keepalived.conf becomes: the table, its services' health (by service key text), what was changed."""

    table: Table
    health: dict[str, ServiceHealth]
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Words and blocks


@dataclass
class Node:
    """One statement: its keyword, its words, its line, and its block (None: it has none)."""

    keyword: str
    args: list[str]
    line: int
    children: list[Node] | None = None


def tokens(text: str) -> list[tuple[int, str]]:
    """(line, word) of every word and brace; quotes joined into their word, comments dropped."""
    out: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        word: list[str] | None = None
        i = 0
        while i < len(line):
            char = line[i]
            if char in "\"'":
                end = line.find(char, i + 1)
                if end < 0:
                    raise LineError(number, f"a quoted string is not closed ({char})")
                word = (word or []) + [line[i + 1:end]]
                i = end + 1
                continue
            if char.isspace() or char in "{}#!":
                if word is not None:
                    out.append((number, "".join(word)))
                    word = None
                if char in "#!":
                    break
                if char in "{}":
                    out.append((number, char))
            else:
                word = (word or []) + [char]
            i += 1
        if word is not None:
            out.append((number, "".join(word)))
    return out


def blocks(text: str) -> list[Node]:
    """The statements of a text as a tree; a `{` opens the block of the statement before it."""
    root: list[Node] = []
    stack: list[tuple[list[Node], int]] = [(root, 0)]
    current: Node | None = None
    for number, word in tokens(text):
        level = stack[-1][0]
        if word == "{":
            owner = level[-1] if level else None
            if owner is None or owner.children is not None:
                raise LineError(number, "a block ({) with no keyword before it")
            owner.children = []
            stack.append((owner.children, number))
            current = None
        elif word == "}":
            if len(stack) == 1:
                raise LineError(number, "a } that closes no block")
            stack.pop()
            current = None
        elif current is not None and current.line == number and current.children is None:
            current.args.append(word)
        else:
            if word.startswith(("@", "$")):
                raise LineError(number, "conditional configuration (@) and parameters ($) are not supported")
            current = Node(word, [], number)
            level.append(current)
    if len(stack) > 1:
        raise LineError(stack[-1][1], "this block is never closed (a } is missing)")
    return root


# --------------------------------------------------------------------------------------------------
# The file, service by service


@dataclass
class _Server:
    node: Node
    address: str
    port: int | None
    weight: int = 1
    forward: str | None = None
    upper: int = 0
    lower: int = 0
    check: Check | None = None
    check_line: int = 0
    inhibit: bool = False
    alpha: bool = False


@dataclass
class _Service:
    node: Node
    words: str  # how ipvsadm names it: -t 10.0.0.1:80, -f 7 -6
    protocol: str
    family: int
    port: int
    fwmark: bool
    settings: dict = field(default_factory=dict)
    servers: list[_Server] = field(default_factory=list)


def parse_keepalived(text: str, *, resolver: rules.Resolver | None = None) -> KeepalivedImport:
    """A keepalived.conf's virtual servers as a table and health definitions. Raises LineError."""
    warnings: list[str] = []
    services = []
    for node in blocks(text):
        if node.keyword == "virtual_server_group" or node.args[:1] == ["group"]:
            raise LineError(node.line, "virtual_server_group is not supported: write one virtual_server per address")
        if node.keyword == "virtual_server":
            services.append(_read_service(node, warnings))
        elif node.keyword.startswith("include"):
            raise LineError(node.line, f"{node.keyword} is not supported: paste the included file in its place")
        elif node.keyword.startswith(_NOT_IPVS):
            warnings.append(f"line {node.line}: {node.keyword} skipped (not part of the IPVS table)")
        else:
            raise LineError(node.line, f"{node.keyword} is not supported (only virtual_server blocks are imported)")
    table = _build_table(services, warnings, resolver)
    health = {}
    for svc, kernel in zip(services, table.services, strict=True):
        if (definition := _service_health(svc, kernel, warnings)) is not None:
            health[key_text(kernel.key)] = definition
    return KeepalivedImport(table=table, health=health, warnings=warnings)


def _one(node: Node, count: int = 1) -> list[str]:
    if len(node.args) != count:
        raise LineError(node.line, f"{node.keyword} takes {count} value{'s' if count > 1 else ''}"
                                   f"{', not ' + str(len(node.args)) if node.args else ''}")
    return node.args


def _bool(node: Node) -> bool:
    """A keepalived <BOOL>: no value means on."""
    if not node.args:
        return True
    value = node.args[0].lower()
    if value in ("on", "true", "yes"):
        return True
    if value in ("off", "false", "no"):
        return False
    raise LineError(node.line, f"{node.keyword} takes on or off, not {node.args[0]!r}")


def _number(node: Node, *, whole: bool = True) -> float:
    text = _one(node)[0]
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        raise LineError(node.line, f"{node.keyword} takes a {'whole ' if whole else ''}number, not {text!r}") from None
    if value < 0:
        raise LineError(node.line, f"{node.keyword} must not be negative")
    return value


def _address(node: Node, text: str) -> str:
    try:
        return normalise_address(text)
    except ValueError:
        raise LineError(node.line, f"{text!r} is not an IP address") from None


def _port(node: Node, text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise LineError(node.line, f"{text!r} is not a port (0..65535)")
    return int(text)


def _block(node: Node) -> list[Node]:
    if node.children is None:
        raise LineError(node.line, f"{node.keyword} needs a block {{ … }}")
    return node.children


def _read_service(node: Node, warnings: list[str]) -> _Service:
    if node.args[:1] == ["fwmark"]:
        mark = _one(Node("virtual_server fwmark", node.args[1:], node.line))[0]
        if not mark.isdigit():
            raise LineError(node.line, f"fwmark {mark!r} is not a number")
        svc = _Service(node, f"-f {int(mark)}", FWMARK, 4, 0, True)
    else:
        if len(node.args) != 2:
            raise LineError(node.line, "virtual_server takes an address and a port (or fwmark N)")
        address = _address(node, node.args[0])
        svc = _Service(node, hostport(address, _port(node, node.args[1])), "UDP", 6 if ":" in address else 4,
                       int(node.args[1]), False)
    # The protocol first: the checkers read under it may come before it.
    protocols = [child for child in _block(node) if child.keyword == "protocol"]
    for child in protocols:
        _service_setting(svc, child, warnings)
    if not protocols and not svc.fwmark:
        warnings.append(f"line {node.line}: no protocol: UDP, keepalived's default (it says so in its log too)")
    for child in _block(node):
        if child.keyword != "protocol":
            _service_setting(svc, child, warnings)
    if svc.fwmark:
        family = svc.settings.get("ip_family") or (6 if svc.servers and ":" in svc.servers[0].address else 4)
        svc.family = family
        svc.words += " -6" if family == 6 else ""
    else:
        svc.words = f"{_PROTOCOL_SWITCH[svc.protocol]} {svc.words}"
    return svc


def _service_setting(svc: _Service, node: Node, warnings: list[str]) -> None:
    kw, s = node.keyword, svc.settings
    if kw == "real_server":
        svc.servers.append(_read_server(svc, node, warnings))
    elif kw in ("lb_algo", "lvs_sched"):
        s["scheduler"] = _one(node)[0]
    elif kw in ("lb_kind", "lvs_method"):
        s["forward"] = _forward(node)
    elif kw == "protocol":
        protocol = _one(node)[0].upper()
        if protocol not in _PROTOCOL_SWITCH:
            raise LineError(node.line, f"protocol {protocol} is not one of TCP, UDP, SCTP")
        svc.protocol = protocol if not svc.fwmark else svc.protocol
    elif kw == "persistence_timeout":
        s["persistence"] = int(_number(node)) if node.args else 360  # keepalived's default: 6 minutes
    elif kw == "persistence_granularity":
        s["netmask"] = _one(node)[0]
    elif kw == "persistence_engine":
        s["pe"] = _one(node)[0]
    elif kw == "ops":
        s["ops"] = _bool(node)
    elif kw in _SCHED_FLAGS:
        s.setdefault("flags", {})[kw] = None
    elif kw == "ip_family":
        family = _one(node)[0]
        if family not in ("inet", "inet6"):
            raise LineError(node.line, f"ip_family is inet or inet6, not {family!r}")
        s["ip_family"] = 6 if family == "inet6" else 4
    elif kw in ("quorum", "hysteresis", "weight"):
        s[kw] = int(_number(node))
    elif kw == "sorry_server":
        if len(node.args) not in (1, 2):
            raise LineError(node.line, "sorry_server takes an address and a port")
        s["sorry_server"] = (_address(node, node.args[0]), _port(node, node.args[1]) if len(node.args) > 1 else None)
    elif kw == "sorry_server_lvs_method":
        s["sorry_forward"] = _forward(node)
    elif kw in _TIMING:
        _timing(s, node)
    elif kw in _IGNORED:
        warnings.append(f"line {node.line}: {_IGNORED[kw]}")
    else:
        raise LineError(node.line, f"{kw} is not supported in a virtual_server")


def _forward(node: Node) -> str:
    kind = _one(node)[0].upper() if len(node.args) <= 1 else node.args[0].upper()
    if kind not in _FORWARD:
        raise LineError(node.line, f"{node.keyword} is NAT, DR or TUN, not {kind!r}")
    if len(node.args) > 1:
        raise LineError(node.line, f"{node.keyword} TUN options are not supported (lvsadmin: ipip tunnels)")
    return _FORWARD[kind]


def _timing(settings: dict, node: Node) -> None:
    """A setting that a real server and its checker inherit from the level above."""
    kw = "retry" if node.keyword == "nb_get_retry" else node.keyword
    if kw in ("inhibit_on_failure", "alpha"):
        settings[kw] = _bool(node)
    elif kw == "virtualhost":
        settings[kw] = _one(node)[0]
    elif kw == "retry":
        settings[kw] = int(_number(node))
    else:
        settings[kw] = _number(node, whole=False)


def _read_server(svc: _Service, node: Node, warnings: list[str]) -> _Server:
    if len(node.args) not in (1, 2):
        raise LineError(node.line, "real_server takes an address and a port")
    server = _Server(node, _address(node, node.args[0]),
                     _port(node, node.args[1]) if len(node.args) > 1 else None,
                     weight=svc.settings.get("weight", 1))
    settings = {k: v for k, v in svc.settings.items() if k in _TIMING}
    checker: Node | None = None
    for child in _block(node):
        kw = child.keyword
        if kw == "weight":
            server.weight = int(_number(child))
        elif kw == "lvs_method":
            server.forward = _forward(child)
        elif kw in ("uthreshold", "lthreshold"):
            setattr(server, "upper" if kw == "uthreshold" else "lower", int(_number(child)))
        elif kw in _TIMING:
            _timing(settings, child)
        elif kw in CHECKERS:
            if checker is not None:
                raise LineError(child.line, f"a second checker for real server {node.args[0]} (lvsadmin runs one "
                                            f"check per real server; the first is line {checker.line})")
            checker = child
        elif kw.endswith("_CHECK"):
            raise LineError(child.line, f"{kw} is not supported (checkers: {', '.join(CHECKERS)})")
        elif kw in _IGNORED:
            warnings.append(f"line {child.line}: {_IGNORED[kw]}")
        else:
            raise LineError(child.line, f"{kw} is not supported in a real_server")
    server.inhibit = bool(settings.get("inhibit_on_failure"))
    server.alpha = bool(settings.get("alpha"))
    if checker is not None:
        server.check, server.check_line = _read_checker(svc, server, checker, settings, warnings), checker.line
    return server


def _read_checker(svc: _Service, server: _Server, node: Node, inherited: dict, warnings: list[str]) -> Check:
    kind = CHECKERS[node.keyword]
    settings = dict(inherited)
    values: dict = {"kind": kind}
    url: Node | None = None
    misc_timeout = None
    for child in _block(node):
        kw = child.keyword
        if kw == "connect_port":
            values["port"] = _port(child, _one(child)[0])
        elif kw in _TIMING:
            _timing(settings, child)
        elif kw == "bindto":
            values["source"] = _address(child, _one(child)[0])
        elif kw == "url" and kind in ("http", "https"):
            if url is not None:
                raise LineError(child.line, f"a second url (lvsadmin checks one path per server; the first is line "
                                            f"{url.line})")
            url = child
        elif kw in ("type", "name") and kind == "dns":
            values["qtype" if kw == "type" else "query"] = _one(child)[0]
        elif kw == "misc_path" and kind == "misc":
            values["command"] = " ".join(child.args)
        elif kw == "misc_timeout" and kind == "misc":
            misc_timeout = _number(child, whole=False)
        elif kw == "misc_dynamic" and kind == "misc":
            values["dynamic"] = _bool(child)
        elif kw in _IGNORED:
            warnings.append(f"line {child.line}: {_IGNORED[kw]}")
        else:
            raise LineError(child.line, f"{kw} is not supported in {node.keyword}")
    server.alpha = bool(settings.get("alpha"))
    interval = settings.get("delay_loop", 60.0)
    values["interval"] = interval
    values["timeout"] = (misc_timeout or interval) if kind == "misc" else settings.get("connect_timeout", 5.0)
    values["fall"] = settings.get("retry", _DEFAULT_RETRY[kind]) + 1
    values["rise"] = 1
    if kind in ("http", "https"):
        _read_url(url, values, settings)
    if kind == "dns":
        values.setdefault("qtype", "SOA")
        if "query" not in values:
            raise LineError(node.line, "DNS_CHECK needs a name to ask (keepalived's default, the root '.', is not "
                                       "supported)")
    if "port" not in values and kind in ("tcp", "http", "https") and svc.protocol in ("UDP", "SCTP"):
        values["port"] = server.port or svc.port  # keepalived connects over TCP to the real server's port
    try:
        return clean_check(values, protocol=FWMARK if svc.fwmark else svc.protocol.lower())
    except HealthError as exc:
        raise LineError(node.line, str(exc)) from None


def _read_url(url: Node | None, values: dict, settings: dict) -> None:
    values["expect"] = "200-299"  # keepalived's default
    values["verify_tls"] = False  # keepalived's SSL_GET does not verify the certificate unless an SSL block says
    if settings.get("virtualhost"):
        values["host"] = settings["virtualhost"]
    for child in _block(url) if url is not None else []:
        kw = child.keyword
        if kw == "path":
            values["path"] = _one(child)[0]
        elif kw == "status_code":
            if not child.args:
                raise LineError(child.line, "status_code needs at least one code or range")
            values["expect"] = ",".join(child.args)
        elif kw == "virtualhost":
            values["host"] = _one(child)[0]
        elif kw == "regex":
            values["body"] = _one(child)[0]
        elif kw == "digest":
            raise LineError(child.line, "digest is not supported: check the status_code (and a regex of the body)")
        else:
            raise LineError(child.line, f"{kw} is not supported in a url")
    if values["kind"] == "http":
        del values["verify_tls"]


# --------------------------------------------------------------------------------------------------
# The table, through the ipvsadm rules parser


def _build_table(services: list[_Service], warnings: list[str], resolver) -> Table:
    """The table keepalived would build: its ipvsadm commands, read by the rules parser. Each command line
    remembers the keepalived line it comes from, so a refusal names the line the user wrote."""
    commands: list[str] = []
    origin: list[int] = []
    for svc in services:
        s = svc.settings
        line = f"-A {svc.words} -s {s.get('scheduler', 'wlc')}"
        if "persistence" in s:
            line += f" -p {s['persistence']}"
        if "netmask" in s:
            line += f" -M {s['netmask']}"
        if s.get("pe"):
            line += f" --pe {s['pe']}"
        if s.get("ops"):
            line += " -o"
        if s.get("flags"):
            line += f" -b {','.join(s['flags'])}"
        commands.append(line)
        origin.append(svc.node.line)
        if "forward" not in s and any(server.forward is None for server in svc.servers):
            warnings.append(f"line {svc.node.line}: no lb_kind: NAT, keepalived's default")
        for server in svc.servers:
            forward = server.forward or s.get("forward", "masq")
            port = _server_port(svc, server.node, server.port, forward, "real server", warnings)
            line = f"-a {svc.words} -r {hostport(server.address, port)} {_FORWARD_SWITCH[forward]} -w {server.weight}"
            line += f" -x {server.upper}" * bool(server.upper) + f" -y {server.lower}" * bool(server.lower)
            commands.append(line)
            origin.append(server.node.line)
    try:
        table = rules.parse_save("".join(c + "\n" for c in commands), resolver=resolver)
    except ParseError as exc:
        raise LineError(origin[exc.line_number - 1] if exc.line_number else 0, exc.message) from None
    return table


def _server_port(svc: _Service, node: Node, port: int | None, forward: str, what: str, warnings: list[str]) -> int:
    """keepalived's own corrections: a DR/TUN server forwards to the service's port (0 for a fwmark service)."""
    if svc.fwmark:
        if forward != "masq" and port:
            warnings.append(f"line {node.line}: the {what}'s port {port} is ignored for a fwmark service that is "
                            f"not NAT (as keepalived does)")
            return 0
        return port or 0
    if port is None:
        return svc.port
    if forward != "masq" and port != svc.port:
        warnings.append(f"line {node.line}: the {what}'s port {port} becomes the service's port {svc.port} "
                        f"(DR and TUN forward to the same port; keepalived resets it too)")
        return svc.port
    return port


# --------------------------------------------------------------------------------------------------
# Health


def _service_health(svc: _Service, kernel, warnings: list[str]) -> ServiceHealth | None:
    """One service's check (the one most of its servers share), overrides for the others, and its policy."""
    checks: list[Check | None] = []
    for server, dest in zip(svc.servers, kernel.destinations, strict=True):
        check = server.check
        if check is not None and check.port == dest.port and not (
                check.kind in ("tcp", "http", "https") and kernel.protocol in ("udp", "sctp")):
            check = replace(check, port=0)  # the server's own port
        checks.append(check)
    counted = Counter(c for c in checks if c is not None)
    service_check = counted.most_common(1)[0][0] if counted else None
    overrides = {}
    if service_check is not None:
        for check, dest in zip(checks, kernel.destinations, strict=True):
            if check != service_check:
                overrides[server_text(dest.address, dest.port)] = check
    policy = _policy(svc, kernel, bool(counted), warnings)
    if service_check is None and not overrides and policy == Policy():
        return None
    return ServiceHealth(check=service_check, policy=policy, overrides=overrides)


def _policy(svc: _Service, kernel, checked: bool, warnings: list[str]) -> Policy:
    s, line = svc.settings, svc.node.line
    values: dict = {}
    if checked:
        inhibiting = [server for server in svc.servers if server.check is not None and server.inhibit]
        all_checked = [server for server in svc.servers if server.check is not None]
        values["on_failure"] = "inhibit" if len(inhibiting) == len(all_checked) else "remove"
        if inhibiting and len(inhibiting) != len(all_checked):
            names = ", ".join(hostport(x.address, x.port or svc.port) for x in inhibiting)
            warnings.append(f"line {line}: inhibit_on_failure is set on some real servers only ({names}): the whole "
                            f"service removes failed servers (lvsadmin has one policy per service)")
    sorry = s.get("sorry_server")
    quorum = s.get("quorum", 1)  # keepalived's default; without a sorry server it only runs scripts
    hysteresis = s.get("hysteresis", 0)
    if hysteresis >= quorum and hysteresis:
        warnings.append(f"line {line}: hysteresis {hysteresis} >= quorum {quorum}: {max(quorum - 1, 0)}, as "
                        f"keepalived sets it")
        hysteresis = max(quorum - 1, 0)
    if sorry is not None or "quorum" in s:
        values["quorum"], values["hysteresis"] = quorum, hysteresis
    if sorry is not None:
        forward = s.get("sorry_forward") or s.get("forward", "masq")
        port = _server_port(svc, svc.node, sorry[1], forward, "sorry server", warnings)
        values["sorry_server"], values["sorry_forward"] = hostport(sorry[0], port), forward
    alpha = [server for server in svc.servers if server.alpha]
    if alpha:
        values["start_down"] = True
        if len(alpha) < len(svc.servers):
            warnings.append(f"line {line}: alpha is set on some real servers only: every server of the service "
                            f"starts down until its check passes")
    try:
        return clean_policy(values, family=kernel.family)
    except HealthError as exc:
        raise LineError(line, str(exc)) from None
