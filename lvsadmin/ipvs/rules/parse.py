"""Text to commands and tables: command lines, restore files and ``ipvsadm -S`` saves.

A line is split like ``ipvsadm -R`` splits it (ipvsadm's config_stream.c: on blanks, tabs, CR;
every token that is exactly ``ipvsadm`` is dropped), then read with popt's rules and ipvsadm's
checks (read.py).  One thing is more lenient than ``ipvsadm -R``, which dies on it: a ``#`` starts
a comment (the ``ipvsadm-restore`` script strips such lines before ``-R`` sees them).  A save is
applied line by line to an empty table the way ``ipvsadm -R`` would apply it (edit.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .. import validate
from ..model import Table
from .command import Command, CommandError, ParseError, Resolver
from .edit import Editor
from .options import OptionError
from .read import read_command


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


def parse_command(line: str | Sequence[str], *, resolver: Resolver | None = None, line_number: int = 1) -> Command:
    """One ipvsadm editing command (``-A -E -D -C -a -e -d --set``), as a line or as argv.

    A leading ``ipvsadm`` is ignored.  ``resolver`` is called like ``socket.getaddrinfo(host,
    None)`` for host names (the default is getaddrinfo itself).  Raises ParseError.
    """
    argv = split_line(line) if isinstance(line, str) else [w for w in line if w != "ipvsadm"]
    if not isinstance(line, str) and argv and argv[0].endswith("/ipvsadm"):
        argv = argv[1:]
    try:
        return read_command(argv, resolver)
    except OptionError as exc:
        raise ParseError(line_number, exc.token, exc.message) from None


def parse_commands(text: str, *, resolver: Resolver | None = None) -> list[tuple[int, Command]]:
    """Every command of a text (blank lines and comments skipped), each with its line number."""
    commands = []
    for number, line in enumerate(text.splitlines(), start=1):
        argv = split_line(line)
        if argv:
            commands.append((number, parse_command(argv, resolver=resolver, line_number=number)))
    return commands


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
    editor = Editor(table, strict)
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
