"""The real servers of bench/bench_health.py: one asyncio process answering HTTP on COUNT ports.

    python bench/health_servers.py --base 9000 --count 1000

Every port answers any request with `200 OK` and closes (what keepalived's HTTP_GET and the agent's http check
both accept). Commands on stdin, one a line, each acknowledged on stdout with the monotonic time it took effect
(CLOCK_MONOTONIC is the same clock in every process of the machine, so the bench compares it with its own):

    refuse PORT   close the port's listener: new connections are refused   ->  `refused PORT T`
    serve PORT    listen again and answer 200                              ->  `serving PORT T`
    503 PORT      keep listening, answer 503                               ->  `503 PORT T`

It is built to cost little CPU (it shares the guest with the two checkers being measured): a bare Protocol per
connection, no parsing beyond the end of the request head, one write, close.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import sys
import time

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
UNAVAILABLE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
               b"Connection: close\r\n\r\ndown\n")


class Answer(asyncio.Protocol):
    __slots__ = ("transport", "reply", "head")

    def __init__(self, reply: bytes):
        self.reply = reply
        self.head = b""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.head += data
        if b"\r\n\r\n" in self.head or len(self.head) > 8192:
            self.transport.write(self.reply)
            self.transport.close()


def listener(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def main(base: int, count: int) -> None:
    loop = asyncio.get_running_loop()
    replies = {port: OK for port in range(base, base + count)}
    servers: dict[int, asyncio.AbstractServer] = {}

    async def serve(port: int) -> None:
        servers[port] = await loop.create_server(lambda: Answer(replies[port]), sock=listener(port))

    for port in replies:
        await serve(port)
    print(f"ready {count}", flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command, _, arg = line.decode().strip().partition(" ")
        port = int(arg)
        if command == "refuse":
            servers.pop(port).close()  # the listening socket is closed here: the next SYN gets a reset
            print(f"refused {port} {time.monotonic():.6f}", flush=True)
        elif command == "serve":
            replies[port] = OK
            if port not in servers:
                await serve(port)
            print(f"serving {port} {time.monotonic():.6f}", flush=True)
        elif command == "503":
            replies[port] = UNAVAILABLE
            print(f"503 {port} {time.monotonic():.6f}", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", type=int, default=9000)
    ap.add_argument("--count", type=int, default=1000)
    args = ap.parse_args()
    # A descriptor per listener and per open connection: the default 1,024 is too few for 1,000 ports.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(args.base, args.count))
