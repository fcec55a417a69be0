"""One probe per kind of check: `await PROBES[check.kind](check, address, port) -> Result`.

A probe never raises: whatever goes wrong is a Result(ok=False) whose reason a person reads on a page ("connect
refused", "HTTP 503", "timeout after 2.0 s"). The whole probe (connect, request, reply) runs within the check's
timeout.

The agent probes every real server of a balancer every few seconds (1,000 of them at 1–5 s is the bench, against
keepalived's C checker), so a probe costs a few syscalls and no thread: TCP, HTTP and DNS use bare non-blocking
sockets on the running loop (loop.sock_connect / sock_sendall / sock_recv: no transport, no protocol object, no
executor for an address literal); HTTPS alone goes through asyncio's streams, which do the TLS. HTTP/1.1 is
written by hand: one request with `Connection: close`, and of the reply only what the check needs (the status;
the first 64 KiB of the body when a pattern is set).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import re
import shlex
import signal
import socket
import ssl
import time
from collections.abc import Awaitable, Callable

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from lvsadmin.health.spec import Check, Result

BODY_LIMIT = 64 * 1024  # bytes of a body matched against the check's pattern (and the most headers may take)
_Outcome = tuple[bool, str, "int | None"]  # (up, reason, a MISC check's dynamic weight)


class Down(Exception):
    """A probe's failure whose message is already the reason to show."""


def _timed(run: Callable[[Check, str, int], Awaitable[_Outcome]]):
    """The probe of one kind within the check's timeout, every failure turned into a Result."""

    @functools.wraps(run)
    async def probe(check: Check, address: str, port: int) -> Result:
        started = time.monotonic()
        try:
            async with asyncio.timeout(check.timeout):
                up, reason, weight = await run(check, address, check.port or port)
        except TimeoutError:
            return Result(False, f"timeout after {float(check.timeout)} s")
        except Exception as error:  # noqa: BLE001 — a probe reports what went wrong, it never raises
            return Result(False, _reason(error), time.monotonic() - started)
        return Result(up, reason, time.monotonic() - started, weight)

    return probe


def _reason(error: Exception) -> str:
    if isinstance(error, Down):
        return str(error)
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed ({error.verify_message})"
    if isinstance(error, ssl.SSLError):
        return "TLS: " + str(error.reason or error).replace("_", " ").lower()
    if isinstance(error, ConnectionRefusedError):
        return "connect refused"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()  # "no route to host", "network is unreachable"
    return f"{type(error).__name__}: {error}"[:200]


def _socket(address: str, source: str, kind: int = socket.SOCK_STREAM) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, kind)
    try:
        sock.setblocking(False)
        if source:
            sock.bind((source, 0))
    except OSError as error:
        sock.close()
        raise Down(f"source {source}: {(error.strerror or str(error)).lower()}")
    return sock


# --- TCP -------------------------------------------------------------------------------------------------------


@_timed
async def tcp(check: Check, address: str, port: int) -> _Outcome:
    sock = _socket(address, check.source)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (address, port))
    finally:
        sock.close()
    return True, "ok", None


# --- HTTP and HTTPS --------------------------------------------------------------------------------------------


@_timed
async def http(check: Check, address: str, port: int) -> _Outcome:
    request = _request(check, address, port, 80)
    loop = asyncio.get_running_loop()
    sock = _socket(address, check.source)
    try:
        await loop.sock_connect(sock, (address, port))
        await loop.sock_sendall(sock, request)
        return await _judge(check, functools.partial(loop.sock_recv, sock, BODY_LIMIT))
    finally:
        sock.close()


@_timed
async def https(check: Check, address: str, port: int) -> _Outcome:
    request = _request(check, address, port, 443)
    # SNI is the check's host; without one the address, which ssl checks against the certificate's IP names
    # (and never sends as SNI).
    reader, writer = await asyncio.open_connection(
        address, port, ssl=_tls_context(check.verify_tls), server_hostname=check.host or address,
        local_addr=(check.source, 0) if check.source else None)
    try:
        writer.write(request)
        return await _judge(check, functools.partial(reader.read, BODY_LIMIT))
    finally:
        writer.close()


@functools.cache
def _tls_context(verify: bool) -> ssl.SSLContext:
    """One context per mode for every probe: making one (and loading the CA store) costs milliseconds."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@functools.lru_cache(maxsize=4096)
def _request(check: Check, address: str, port: int, default_port: int) -> bytes:
    if check.host:
        host = check.host
    else:
        host = f"[{address}]" if ":" in address else address
        if port != default_port:
            host = f"{host}:{port}"
    path = check.path if check.path.startswith("/") else "/" + check.path
    lines = [f"{check.method} {path} HTTP/1.1", f"Host: {host}", "User-Agent: lvsadmin-health",
             "Accept: */*", "Connection: close"]
    if check.method == "POST":
        lines.append("Content-Length: 0")
    text = "\r\n".join(lines) + "\r\n\r\n"
    if any(c in f"{check.method}{path}{host}" for c in "\r\n "):
        raise Down("invalid check: a space or a line break in the method, path or host")
    return text.encode("utf-8")


async def _judge(check: Check, recv: Callable[[], Awaitable[bytes]]) -> _Outcome:
    status, headers, rest = await _head(recv)
    if not _expected(check.expect, status):
        return False, f"HTTP {status}", None
    if not check.body:
        return True, "ok", None
    pattern = _pattern(check.body)
    body = b"" if check.method == "HEAD" or status in (204, 304) else await _body(headers, rest, recv)
    if pattern.search(body[:BODY_LIMIT].decode("utf-8", "replace")) is None:
        shown = check.body if len(check.body) <= 40 else check.body[:40] + "…"
        return False, f"body does not match {shown!r}", None
    return True, "ok", None


async def _head(recv: Callable[[], Awaitable[bytes]]) -> tuple[int, dict[bytes, bytes], bytes]:
    """(status, headers by lower-case name, the bytes of the body read so far); interim 1xx replies skipped."""
    buffer = b""
    while True:
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            if len(buffer) > BODY_LIMIT:
                raise Down("HTTP headers too long")
            chunk = await recv()
            if not chunk:
                raise Down("connection closed before the reply" if not buffer else "HTTP reply cut short")
            buffer += chunk
        lines = buffer[:end].split(b"\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit() or len(parts[1]) != 3:
            raise Down("not an HTTP reply")
        status, buffer = int(parts[1]), buffer[end + 4:]
        if not 100 <= status < 200 or status == 101:
            break
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, buffer


async def _body(headers: dict[bytes, bytes], data: bytes, recv: Callable[[], Awaitable[bytes]]) -> bytes:
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        return await _dechunk(data, recv)
    try:
        wanted = min(int(headers[b"content-length"]), BODY_LIMIT)
    except (KeyError, ValueError):
        wanted = BODY_LIMIT  # no length: the body ends when the server closes
    while len(data) < wanted and (chunk := await recv()):
        data += chunk
    return data


async def _dechunk(data: bytes, recv: Callable[[], Awaitable[bytes]]) -> bytes:
    body = b""
    while len(body) < BODY_LIMIT:
        while (eol := data.find(b"\r\n")) < 0:
            if not (chunk := await recv()):
                return body
            data += chunk
        try:
            size = int(data[:eol].split(b";")[0].strip(), 16)
        except ValueError:
            raise Down("bad chunked body")
        if size == 0:
            break
        data = data[eol + 2:]
        while len(data) < size + 2 and len(body) + len(data) < BODY_LIMIT:
            if not (chunk := await recv()):
                break
            data += chunk
        body += data[:size]
        data = data[size + 2:]
    return body


@functools.lru_cache(maxsize=256)
def _statuses(expect: str) -> tuple[tuple[int, int], ...]:
    """"200-299,404" → ((200, 299), (404, 404))."""
    ranges = []
    for part in expect.split(","):
        low, _, high = part.strip().partition("-")
        ranges.append((int(low), int(high or low)))
    return tuple(ranges)


def _expected(expect: str, status: int) -> bool:
    try:
        ranges = _statuses(expect)
    except ValueError:
        raise Down(f"invalid check: expected status {expect!r}")
    return any(low <= status <= high for low, high in ranges)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def _pattern(pattern: str) -> re.Pattern:
    try:
        return _compiled(pattern)
    except re.error:
        raise Down(f"invalid check: body pattern {pattern!r}")


# --- DNS -------------------------------------------------------------------------------------------------------


@_timed
async def dns_(check: Check, address: str, port: int) -> _Outcome:
    query = bytearray(_query(check.query, check.qtype))
    query[:2] = random.getrandbits(16).to_bytes(2, "big")  # the id: a late answer to an earlier probe is not ours
    loop = asyncio.get_running_loop()
    sock = _socket(address, check.source, socket.SOCK_DGRAM)
    try:
        # A connected UDP socket: the kernel drops datagrams from anyone else, and an ICMP "port unreachable"
        # comes back as ConnectionRefusedError.
        await loop.sock_connect(sock, (address, port))
        await loop.sock_sendall(sock, query)
        while (data := await loop.sock_recv(sock, 65535))[:2] != query[:2]:
            pass
    except ConnectionRefusedError:
        raise Down("port unreachable")
    finally:
        sock.close()
    try:
        answer = dns.message.from_wire(data, ignore_trailing=True)
    except dns.exception.DNSException:
        raise Down("not a DNS reply")
    if answer.rcode() != dns.rcode.NOERROR:
        return False, f"DNS rcode {dns.rcode.to_text(answer.rcode())}", None
    wanted = dns.rdatatype.from_text(check.qtype)
    if any(rrset.rdtype == wanted and len(rrset) for rrset in answer.answer):
        return True, "ok", None
    truncated = " (reply truncated)" if answer.flags & dns.flags.TC else ""
    return False, f"no answer of type {check.qtype}{truncated}", None


@functools.lru_cache(maxsize=1024)
def _wire_query(name: str, qtype: str) -> bytes:
    return dns.message.make_query(name, qtype).to_wire()


def _query(name: str, qtype: str) -> bytes:
    try:
        return _wire_query(name, qtype)
    except (dns.exception.DNSException, ValueError):
        raise Down(f"invalid check: DNS query {name!r} of type {qtype!r}")


# --- MISC ------------------------------------------------------------------------------------------------------


@_timed
async def misc(check: Check, address: str, port: int) -> _Outcome:
    argv = _argv(check.command, address, port)
    try:
        # A session of its own: a timeout kills the command and whatever it started.
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True, env=_command_environment())
    except FileNotFoundError:
        raise Down(f"command not found: {argv[0]}")
    except PermissionError:
        raise Down(f"command not executable: {argv[0]}")
    try:
        code = await process.wait()
    finally:
        if process.returncode is None:  # the timeout (or the runner) cancelled the wait
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(process.wait(), 1)  # reaped here, not left to the loop's end
    if code == 0:
        return True, "ok", None
    if code < 0:
        return False, f"killed by signal {-code}", None
    if check.dynamic and code >= 2:  # keepalived's misc_dynamic
        return True, f"exit {code} → weight {code - 2}", code - 2
    return False, f"exit {code}", None


def _command_environment() -> dict[str, str]:
    """What a MISC command inherits of the agent's environment: not the broker's URL and password, nor the
    agent's key paths. It does get the balancer's name (LVSADMIN_BALANCER): one command may check differently
    from each balancer."""
    return {name: value for name, value in os.environ.items() if name in _INHERITED}


_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "LVSADMIN_BALANCER")


def _argv(command: str, address: str, port: int) -> list[str]:
    try:
        words = shlex.split(command)
    except ValueError as error:
        raise Down(f"invalid check: command ({error})")
    if not words:
        raise Down("invalid check: no command")
    return [word.replace("{address}", address).replace("{port}", str(port)) for word in words]


PROBES: dict[str, Callable[[Check, str, int], Awaitable[Result]]] = {
    "tcp": tcp, "http": http, "https": https, "dns": dns_, "misc": misc,
}
