"""rules.py against the real ipvsadm on a real IPVS kernel (the 6.1 guest of scripts/ipvs-vm).

Commands: random ipvsadm command lines (valid or not) applied to one table by the real ipvsadm and
by rules.apply_command must be refused alike (with ipvsadm's message) or give the same table.

Tables: random valid tables (tests/strategies.py) are loaded with the real ``ipvsadm -R`` after
``ipvsadm -C``; then what the real ipvsadm prints — ``-S -n``, ``-S``, ``-Ln``, ``-Ln --sort``,
``-Ln --nosort`` and the other listing layouts — must equal byte for byte what rules.py prints for
the table parsed from that save.

ipvsadm sorts with a comparator that wraps around (see rules.py), so its output depends on the
order in which the kernel dumps services and real servers, an order that hashes of kernel pointers
decide.  ``ipvsadm -Ln --nosort`` shows that order; the table parsed from the save is put in it
before printing, exactly as the agent's netlink dump would hand it to rules.py.

Each example is one shell script in the guest (the guest is about six times slower than the host).
"""

from __future__ import annotations

import difflib
import re
import shlex

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from lvsadmin.ipvs.model import FWMARK, Table
from lvsadmin.ipvs.rules import (
    Command,
    CommandError,
    ParseError,
    apply_command,
    format_command,
    format_list,
    format_save,
    format_timeout,
    parse_command,
    parse_save,
)
from tests.strategies import KERNEL_SCHEDULERS, canonical, saveable, tables

pytestmark = pytest.mark.kernel

MARK = "=====8<===== "
LISTINGS = {
    "Ln": "-Ln",
    "Ln-sort": "-Ln --sort",
    "Ln-nosort": "-Ln --nosort",
    "Ln-stats": "-Ln --stats",
    "Ln-rate": "-Ln --rate",
    "Ln-thresholds": "-Ln --thresholds",
    "Ln-persistent-conn": "-Ln --persistent-conn",
    "Ln-tun-info": "-Ln --tun-info",
    "S-n": "-S -n",
    "S": "-S",
}


def output_of(result) -> str:
    """The standard output of ``guest.run``, whatever shape the harness gives it."""
    for name in ("stdout", "out", "output"):
        result = getattr(result, name, result)
    if isinstance(result, tuple):  # (rc, stdout, ...)
        result = next(part for part in result if isinstance(part, (str, bytes)))
    return result.decode() if isinstance(result, bytes) else result


def restore_text(table: Table) -> str:
    """The table as ``ipvsadm -R`` input: the -S lines, plus thresholds (-x/-y) that -S leaves out."""
    lines = []
    for svc in table.services:
        lines.append(format_command(Command("add-service", service=svc)))
        for dest in svc.destinations:
            lines.append(format_command(Command("add-server", service=svc, destination=dest)))
    return "".join(line + "\n" for line in lines)


def guest_script(text: str) -> str:
    parts = [
        "set -e",
        "ipvsadm -C",
        f"printf '%s' {shlex.quote(text)} > /tmp/rules-under-test",
        "ipvsadm -R < /tmp/rules-under-test",
        "set +e",
    ]
    for name, args in LISTINGS.items():
        parts.append(f"echo '{MARK}{name}'; ipvsadm {args}; echo \"{MARK}rc $?\"")
    return "\n".join(parts) + "\n"


def split_outputs(out: str) -> dict[str, str]:
    sections: dict[str, str] = {}
    pieces = out.split(MARK)
    for piece in pieces[1:]:
        head, _, body = piece.partition("\n")
        if head.startswith("rc "):
            assert head == "rc 0", f"ipvsadm failed: {piece!r}"
            continue
        sections[head] = body
    return sections


_SERVICE_LINE = re.compile(r"^(TCP |UDP |SCTP|FWM ) (\S+)( IPv6)?")


def kernel_order(listing: str) -> list[tuple[tuple, list[tuple[str, int]]]]:
    """Services and their real servers in the kernel's order, from ``ipvsadm -Ln --nosort``."""

    def address_port(text: str) -> tuple[str, int]:
        address, _, port = text.rpartition(":")
        return address.strip("[]"), int(port)

    order: list[tuple[tuple, list[tuple[str, int]]]] = []
    for line in listing.splitlines()[3:]:
        if line.startswith("  -> "):
            order[-1][1].append(address_port(line[5:].split()[0]))
            continue
        match = _SERVICE_LINE.match(line)
        assert match, f"unexpected listing line {line!r}"
        protocol, name, v6 = match.group(1).strip(), match.group(2), match.group(3)
        if protocol == "FWM":
            key = (FWMARK, 6 if v6 else 4, int(name) & 0xFFFFFFFF)
        else:
            address, port = address_port(name)
            key = (protocol.lower(), address, port)
        order.append((key, []))
    return order


def in_kernel_order(table: Table, order) -> Table:
    by_key = table.by_key()
    services = []
    for key, dests in order:
        svc = by_key[key]
        svc.destinations = [svc.destination(*d) for d in dests]
        services.append(svc)
    assert len(services) == len(table.services)
    return Table(services=services)


@pytest.fixture(scope="module")
def guest(ipvs_guest):
    # A running sync daemon makes the kernel refuse mixed-family tunnels (EINVAL): stop any.
    out = output_of(
        ipvs_guest.run(
            "ipvsadm --stop-daemon master 2>/dev/null; ipvsadm --stop-daemon backup 2>/dev/null; "
            "ipvsadm -C && ipvsadm --version"
        )
    )
    assert "v1.31" in out, out
    yield ipvs_guest
    # The guest is shared by the whole kernel tier: leave its table empty and its timeouts at the defaults.
    ipvs_guest.run("ipvsadm -C; ipvsadm --set 900 120 300")


def check(condition: bool, what: str, text: str, expected: str = "", got: str = "") -> None:
    """Fail with everything needed to replay the case by hand (shrinking in the guest is too slow)."""
    if condition:
        return
    diff = "".join(difflib.unified_diff(expected.splitlines(True), got.splitlines(True), "ipvsadm", "rules.py"))
    raise AssertionError(f"{what}\n--- ipvsadm -R input:\n{text}{diff}")


@settings(
    max_examples=30,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: ~6x slower in the guest
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(table=tables(max_services=6, max_destinations=4, schedulers=KERNEL_SCHEDULERS))
def test_rules_print_what_the_real_ipvsadm_prints_for_random_tables(guest, table):
    text = restore_text(table)
    raw = output_of(guest.run(guest_script(text)))
    outputs = split_outputs(raw)
    check(set(outputs) == set(LISTINGS), "ipvsadm did not print every listing", text, "", raw)

    # The kernel holds the table we loaded (as far as -S shows it).
    parsed = parse_save(outputs["S-n"])
    check(canonical(parsed) == canonical(saveable(table)), "the kernel holds another table", text,
          format_save(saveable(table)), outputs["S-n"])  # fmt: skip

    # Put in the kernel's order, the parsed table prints exactly what ipvsadm printed.
    order = kernel_order(outputs["Ln-nosort"])
    kernel = in_kernel_order(parsed, order)
    loaded = in_kernel_order(table, order)  # with the thresholds, which the save leaves out
    printed = {
        "S-n": format_save(kernel),
        "S": format_save(kernel, numeric=False, host_name=lambda address: None),
        "Ln": format_list(kernel),
        "Ln-sort": format_list(kernel),
        "Ln-nosort": format_list(kernel, sort=False),
        "Ln-stats": format_list(kernel, mode="stats"),
        "Ln-rate": format_list(kernel, mode="rate"),
        "Ln-thresholds": format_list(loaded, mode="thresholds"),
        "Ln-persistent-conn": format_list(kernel, mode="persistent-conn"),
        "Ln-tun-info": format_list(kernel, mode="tun-info"),
    }
    for name, got in printed.items():
        check(got == outputs[name], f"ipvsadm {LISTINGS[name]} differs", text, outputs[name], got)


def test_the_seeds_save_restores_to_what_rules_py_reads_from_it(guest):
    seed = (
        "-A -t 172.17.0.10:urd -s rr\n"
        "-a -t 172.17.0.10:urd -r a3da47f3333e:urd -m -w 1\n"
        "-a -t 172.17.0.10:urd -r 172.17.0.3:urd -m -w 1\n"
        "-A -t 172.17.0.10:imaps -s rr\n"
        "-a -t 172.17.0.10:imaps -r a3da47f3333e:imaps -m -w 1\n"
        "-a -t 172.17.0.10:imaps -r 172.17.0.3:imaps -m -w 1\n"
        "-A -t 172.17.0.10:pop3s -s rr\n"
        "-a -t 172.17.0.10:pop3s -r a3da47f3333e:pop3s -m -w 1\n"
        "-a -t 172.17.0.10:pop3s -r 172.17.0.3:pop3s -m -w 1\n"
    )
    script = (
        "cp /etc/hosts /tmp/hosts.saved\n"
        "echo '172.17.0.2 a3da47f3333e' >> /etc/hosts\n" + guest_script(seed) + "cp /tmp/hosts.saved /etc/hosts\n"
    )
    outputs = split_outputs(output_of(guest.run(script)))

    def resolver(name, port, *args, **kwargs):
        assert name == "a3da47f3333e"
        return [(2, 1, 6, "", ("172.17.0.2", 0))]

    table = parse_save(seed, resolver=resolver)
    assert [svc.port for svc in table.services] == [465, 993, 995]
    assert format_save(table) == outputs["S-n"]
    assert format_list(table) == outputs["Ln"]
    names = {"172.17.0.2": "a3da47f3333e"}
    assert format_save(table, numeric=False, host_name=names.get) == outputs["S"]


# --- commands: what ipvsadm does to a table, rules.apply_command does too ---------------------------

BASE = (
    "-A -t 10.0.0.1:80 -s rr\n"
    "-a -t 10.0.0.1:80 -r 10.1.1.1:8080 -m -w 3 -x 100 -y 10\n"
    "-a -t 10.0.0.1:80 -r 10.1.1.2 -g -w 2\n"
    "-a -t 10.0.0.1:80 -r 10.1.1.3 -i --tun-type gue --tun-port 6080 --tun-csum\n"
    "-A -u 10.0.0.1:53 -s sh -b sh-port -o -p 60\n"
    "-A -t [2001:db8::1]:443 -s mh -p -M 64 --pe sip\n"
    "-a -t [2001:db8::1]:443 -r [2001:db8::2]:443 -m\n"
    "-A -f 5 -s wlc\n"
    "-a -f 5 -r 10.2.2.2:0 -g\n"
    "-A -f 6 -6 -s rr -o\n"
)
SERVICES = [
    "-t 10.0.0.1:80", "-t 10.0.0.1:http", "-u 10.0.0.1:53", "-u 10.0.0.1:domain", "-t [2001:db8::1]:443", "-f 5",
    "-f 6 -6", "-f 6", "-t 10.0.0.9:80", "-t 10.0.0.9:0", "--sctp-service 10.0.0.3:3868", "-t 10.0.0.1",
    "-t 2001:db8::1", "-u [2001:db8::1]:53", "-f 7 -6", "-t 10.1:80", "--tcp-service=10.0.0.1:80",
]  # fmt: skip
SERVERS = [
    "-r 10.1.1.1:8080", "-r 10.1.1.1", "-r 10.1.1.2:80", "-r 10.1.1.3", "-r 10.1.1.9:99", "-r [2001:db8::2]:443",
    "-r 2001:db8::3", "-r [2001:db8::4]:8443", "-r 10.2.2.2:0", "-r 10.2.2.2", "-r 10.2.2.3:81", "-r 224.0.0.1",
    "--real-server 10.1.1.4:8080", "-r 10.1.1.1:http-alt",
]  # fmt: skip
SERVICE_OPTIONS = [
    "-s rr", "-s wrr", "-s sh", "-s mh", "-s nosuch", "-p", "-p 30", "-p 0", "-M 255.255.255.0", "-M 64", "-o",
    "--pe sip", "-b sh-port", "-b mh-port,mh-fallback", "-b flag-2", "-p=5", "-s sh -b sh-fallback", "-m", "-w 2",
]  # fmt: skip
SERVER_OPTIONS = [
    "-m", "-g", "-i", "-w 5", "-w 0", "-w 70000", "-x 10", "-y 5", "-x 50 -y 10", "-x 5 -y 10", "-s rr", "-o",
    "-i --tun-type gue --tun-port 5000", "-i --tun-type gre --tun-csum", "-i --tun-type ipip", "--tun-type gre",
    "-i --tun-type gue --tun-port 1 --tun-remcsum", "-i --tun-type gre --tun-remcsum", "-i --tun-port 9", "-mw7",
    "--weight=9", "-m -x 0 -y 0", "-m -g",
]  # fmt: skip


@st.composite
def command_lines(draw):
    kind = draw(st.sampled_from(["-A", "-E", "-D", "-a", "-e", "-d", "-a", "-e", "-C", "--set"]))
    if kind == "-C":
        return kind
    if kind == "--set":
        return "--set " + " ".join(str(draw(st.sampled_from([0, 1, 30, 900, 2678400]))) for _ in range(3))
    parts = [kind, draw(st.sampled_from(SERVICES))]
    if kind in ("-a", "-e", "-d"):
        parts.append(draw(st.sampled_from(SERVERS)))
    options = SERVER_OPTIONS if kind in ("-a", "-e") else SERVICE_OPTIONS if kind != "-D" else []
    if options:
        parts += draw(st.lists(st.sampled_from(options), max_size=3, unique=True))
    return " ".join(parts)


@settings(
    max_examples=4,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lines=st.lists(command_lines(), min_size=10, max_size=25))
def test_commands_change_the_table_as_the_real_ipvsadm_does(guest, lines):
    script = ["exec 2>&1", f"printf '%s' {shlex.quote(BASE)} > /tmp/rules-base"]
    for number, line in enumerate(lines):
        script.append(
            f"echo '{MARK}{number}'; ipvsadm -C; ipvsadm -R < /tmp/rules-base; ipvsadm --set 900 120 300; "
            f'ipvsadm {line}; echo "{MARK}rc $?"; ipvsadm -S -n; ipvsadm -L --timeout'
        )
    pieces = output_of(guest.run("\n".join(script) + "\n")).split(MARK)[1:]
    assert len(pieces) == 2 * len(lines), pieces
    base = parse_save(BASE, strict=False)
    for number, line in enumerate(lines):
        said, result = pieces[2 * number], pieces[2 * number + 1]
        head, _, said = said.partition("\n")
        assert head == str(number)
        message = said.strip().splitlines()[-1] if said.strip() else ""
        rc_line, _, listing = result.partition("\n")
        rc = int(rc_line.split()[1])
        save = [x for x in listing.splitlines() if not x.startswith("Timeout")]
        timeouts = "".join(x + "\n" for x in listing.splitlines() if x.startswith("Timeout"))
        try:
            table = apply_command(base, parse_command(line), strict=False)
        except (ParseError, CommandError) as exc:
            assert rc != 0, f"ipvsadm {line}: ipvsadm did it, rules.py refused: {exc.message}"
            assert exc.message.startswith(message), (
                f"ipvsadm {line}: ipvsadm said {message!r}, rules.py {exc.message!r}"
            )
            continue
        assert rc == 0, f"ipvsadm {line}: ipvsadm refused ({message}), rules.py did it"
        # rules.py appends new entries; the kernel puts them where its hash says: compare the lines.
        assert sorted(format_save(table).splitlines()) == sorted(save), f"ipvsadm {line}"
        assert format_timeout(table.timeouts) == timeouts, f"ipvsadm {line}"
