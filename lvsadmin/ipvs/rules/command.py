"""The editing command as ipvsadm sends it to the kernel, and the two errors of the rules language.

A ``Command`` is what one line of ``-A -E -D -C -a -e -d --set`` means once read (read.py builds it,
edit.py applies it, format.py prints it back); ``ParseError`` is a line ipvsadm or the kernel refuses,
with its number; ``CommandError`` a command the table it is applied to refuses.  Also the two small
vocabularies that reading and printing share: protocol numbers and tunnel checksum names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..model import Destination, Service, Timeouts

Resolver = Callable[..., Iterable]

PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132}
TUN_CSUMS = ("nocsum", "csum", "remcsum")  # ipvsadm's tun_flags 0, 1, 2


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
