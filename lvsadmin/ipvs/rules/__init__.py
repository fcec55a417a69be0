"""ipvsadm's rule language, both ways: parse command lines and saves, print saves and listings.

Everything here mimics ipvsadm 1.31 as Debian ships it (package 1:1.31-1, built with popt and
glibc 2.36) and is checked against the real binary on a 6.1 kernel (the golden files and the
kernel tier).  Callers use the package as one thing (``rules.parse_save(...)``); its modules
follow ipvsadm's own seams:

- ``command``: the ``Command`` one editing line means, ``ParseError`` and ``CommandError``;
- ``options``: popt over ipvsadm's option table (``Popt``, ``OptionError``) and ipvsadm's tables
  of which command takes which option;
- ``values``: option values read with ipvsadm's and glibc's rules (numbers, addresses, host names);
- ``read``: one command line to a ``Command``, a handler per option and ipvsadm's checks;
- ``parse``: lines, restore files and saves to commands and tables;
- ``edit``: what the kernel does with each command (``apply_command``);
- ``sort``: ipvsadm's sort, wrap-around and all;
- ``format``: ``-S``, ``-L``, ``--timeout``, ``--daemon`` and command lines, byte for byte.
"""

from .command import COMMAND_KINDS, Command, CommandError, ParseError, Resolver
from .edit import apply_command, apply_commands
from .format import (
    LIST_MODES,
    format_command,
    format_daemons,
    format_list,
    format_save,
    format_timeout,
    reverse_lookup,
)
from .parse import parse_command, parse_commands, parse_save, split_line
from .sort import sort_destinations, sort_services

__all__ = [
    "COMMAND_KINDS",
    "LIST_MODES",
    "Command",
    "CommandError",
    "ParseError",
    "Resolver",
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
    "reverse_lookup",
    "sort_destinations",
    "sort_services",
    "split_line",
]
