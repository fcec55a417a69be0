"""ipvsadm's sort: libipvs' comparators under glibc's merge sort, wrap-around and all.

``ipvsadm -S`` and ``-L`` sort by default (``--sort`` is a no-op, only ``-L --nosort`` shows the
kernel's order).  The sort is glibc's ``qsort`` (a merge sort) over libipvs' comparators, which
subtract unsigned 32-bit values into an ``int``: addresses more than 2**31 apart compare the "wrong"
way (10.0.0.1 sorts after 192.168.1.1, 10.0.0.9 before 100.0.0.1) and the order is not even
transitive, so the printed order depends on the order the kernel dumps.  ``sort_services`` and
``sort_destinations`` therefore take the kernel's dump order and apply that same merge sort.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence

from ..model import FWMARK, Destination, Service
from .command import PROTOCOL_NUMBERS


def s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def family_of(address: str) -> int:
    """The family of a canonical address (the model's spelling): IPv6 has colons."""
    return 6 if ":" in address else 4


def service_family(svc: Service) -> int:
    return svc.fwmark_family if svc.protocol == FWMARK else family_of(svc.address)


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
    family = family_of(svc.address)
    return (0, _AF[family], PROTOCOL_NUMBERS.get(svc.protocol, 0), _words(svc.address), svc.port, family)


def _cmp_services(a: tuple, b: tuple) -> int:
    """libipvs ipvs_cmp_services, with C's unsigned-to-int wrap-around."""
    r = s32(a[0] - b[0])
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
            r = s32(a[3][i] - b[3][i])
            if r:
                break
    else:
        r = s32(a[3][0] - b[3][0])
    if r:
        return r
    return a[4] - b[4]


def _cmp_dests(a: tuple, b: tuple) -> int:
    """libipvs ipvs_cmp_dests (it looks only at the first one's address family)."""
    r = 0
    if a[0] == 6:
        for i in range(4):
            r = s32(a[1][i] - b[1][i])
            if r:
                break
    else:
        r = s32(a[1][0] - b[1][0])
    if r:
        return r
    return a[2] - b[2]


def sort_services(services: Sequence[Service]) -> list[Service]:
    """The services in the order ipvsadm prints them, given the kernel's dump order."""
    keyed = [(_service_sort_key(svc), svc) for svc in services]
    return [svc for _key, svc in _msort(keyed, lambda a, b: _cmp_services(a[0], b[0]))]


def sort_destinations(destinations: Sequence[Destination]) -> list[Destination]:
    """A service's real servers in the order ipvsadm prints them, given the kernel's order."""
    keyed = [((family_of(dest.address), _words(dest.address), dest.port), dest) for dest in destinations]
    return [dest for _key, dest in _msort(keyed, lambda a, b: _cmp_dests(a[0], b[0]))]

