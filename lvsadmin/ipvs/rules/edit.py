"""What the kernel does with an ipvsadm editing command: ``apply_command`` and ``apply_commands``.

``-E`` and ``-e`` replace the whole service / real-server configuration: ipvsadm sends every field,
with its defaults for the options not given.  ``ipvsadm -E -t VIP:80`` resets the scheduler to wlc
and drops persistence, the persistence engine, one-packet scheduling and scheduler flags;
``ipvsadm -e ... -r RIP`` resets the weight to 1, the thresholds to 0, the tunnel settings to ipip
and the forwarding method to gatewaying (and with gatewaying the real-server port becomes the
service port, so ``-e`` of a NAT server on another port without ``-m`` answers "No such
destination").  ``Command.given`` records what was typed, so a form can warn about it;
``apply_command`` does what the kernel does, with the kernel's (and ipvsadm's) messages.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from .. import validate
from ..model import DEST_SETTINGS, SCHEDULERS, SERVICE_SETTINGS, Destination, Service, Table, Timeouts
from .command import Command, CommandError, ParseError
from .sort import family_of, service_family

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


class Editor:
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
        kind = cmd.kind
        if kind == "clear":
            self.table.services = []
            self.services, self.dests = {}, {}
            return
        if kind == "set":
            self._set_timeouts(cmd.timeouts or Timeouts(0, 0, 0))
            return
        if cmd.service is None:
            raise CommandError(f"{kind} needs a virtual service")
        svc = self.services.get(cmd.service.key)
        if kind == "add-service":
            self._add_service(cmd.service, svc, cmd.service_token)
        elif kind in ("edit-service", "delete-service"):
            if svc is None:
                raise CommandError("No such service", cmd.service_token)
            if kind == "delete-service":
                self._delete_service(svc)
            else:
                self._edit_service(svc, cmd.service, cmd.service_token)
        elif kind in ("add-server", "edit-server", "delete-server"):
            self._server(cmd, svc)
        else:
            raise CommandError(f"unknown command kind {kind!r}")

    def _set_timeouts(self, given: Timeouts) -> None:
        current = self.table.timeouts or Timeouts()
        self.table.timeouts = Timeouts(
            tcp=given.tcp or current.tcp, tcpfin=given.tcpfin or current.tcpfin, udp=given.udp or current.udp
        )

    def _add_service(self, given: Service, svc: Service | None, token: str | None) -> None:
        if svc is not None:
            raise CommandError("Service already exists", token)
        svc = copy.copy(given)
        svc.destinations = []
        _check_service(svc, token, self.strict)
        self.table.services.append(svc)
        self.services[svc.key] = svc

    def _delete_service(self, svc: Service) -> None:
        del self.table.services[next(i for i, s in enumerate(self.table.services) if s is svc)]
        del self.services[svc.key]
        self.dests.pop(svc.key, None)

    def _edit_service(self, svc: Service, given: Service, token: str | None) -> None:
        edited = copy.copy(svc)
        for name in SERVICE_SETTINGS:
            setattr(edited, name, getattr(given, name))
        _check_service(edited, token, self.strict)
        for name in SERVICE_SETTINGS:
            setattr(svc, name, getattr(edited, name))

    def _server(self, cmd: Command, svc: Service | None) -> None:
        if cmd.destination is None:
            raise CommandError(f"{cmd.kind} needs a real server")
        if svc is None:
            raise CommandError("Service not defined", cmd.service_token)
        given, token = cmd.destination, cmd.server_token
        dests = self._dests(svc)
        existing = dests.get(given.key)
        if cmd.kind == "delete-server":
            if existing is None:
                raise CommandError("No such destination", token)
            del svc.destinations[next(i for i, d in enumerate(svc.destinations) if d is existing)]
            del dests[existing.key]
            return
        if family_of(given.address) != service_family(svc) and self.table.daemons:
            # ip_vs_genl_set_cmd: "The synchronization protocol is incompatible with mixed family services"
            raise CommandError(f"{_EINVAL} (a sync daemon is running: it cannot carry mixed-family servers)", token)
        if given.lower_threshold > given.upper_threshold:
            raise CommandError(f"{_ERANGE} (the lower threshold -y is above the upper threshold -x)", token)
        if cmd.kind == "add-server":
            self._add_server(svc, dests, existing, given, token)
        else:
            self._edit_server(svc, existing, given, token)

    def _add_server(self, svc: Service, dests: dict, existing: Destination | None, given: Destination,
                    token: str | None) -> None:
        if existing is not None:
            raise CommandError("Destination already exists", token)
        problem = _unicast_error(given.address)
        if problem:
            raise CommandError(problem, token)
        dest = copy.copy(given)
        _check_destination(svc, dest, token, self.strict)
        svc.destinations.append(dest)
        dests[dest.key] = dest

    def _edit_server(self, svc: Service, existing: Destination | None, given: Destination, token: str | None) -> None:
        if existing is None:
            raise CommandError("No such destination", token)
        edited = copy.copy(existing)
        for name in DEST_SETTINGS:
            setattr(edited, name, getattr(given, name))
        _check_destination(svc, edited, token, self.strict)
        for name in DEST_SETTINGS:
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
    Editor(new, strict).apply(cmd)
    return new


def apply_commands(table: Table, commands: Iterable[tuple[int, Command]], *, strict: bool = True) -> Table:
    """Apply numbered commands in turn to a copy of the table; the first refusal raises ParseError with its line."""
    new = copy.deepcopy(table)
    editor = Editor(new, strict)
    for number, cmd in commands:
        try:
            editor.apply(cmd)
        except CommandError as exc:
            raise ParseError(number, exc.token, exc.message) from None
    return new
