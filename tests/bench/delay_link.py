"""A slow link to one lab host: a TCP proxy that holds every chunk for DELAY seconds each way.

``python tests/bench/delay_link.py LISTEN_PORT TARGET_ADDRESS[:PORT] DELAY LIFETIME`` (inside the lab's
network namespace): listens on 127.0.0.1:LISTEN_PORT, forwards each connection to the target (port 22
unless given), prints ``ready`` once it listens, and exits by itself after LIFETIME seconds. Only data
is delayed (the kernel's acknowledgements are not), in order, without Nagle's algorithm on its own
sockets, so what it adds to a tool is DELAY per crossing: one round trip costs 2 × DELAY more.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time


async def _carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            at, data = await queue.get()
            if not data:
                writer.close()
                return
            wait = at + delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    while True:
        data = await reader.read(65536)
        await queue.put((time.monotonic(), data))
        if not data:
            break
    await sender


async def _serve(port: int, target: str, delay: float, lifetime: float) -> None:
    address, _, target_port = target.partition(":")

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        host_reader, host_writer = await asyncio.open_connection(address, int(target_port or 22))
        for writer in (client_writer, host_writer):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(
            _carry(client_reader, host_writer, delay),
            _carry(host_reader, client_writer, delay),
            return_exceptions=True,
        )

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await asyncio.sleep(lifetime)


def main() -> int:
    port, target, delay, lifetime = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    asyncio.run(_serve(port, target, delay, lifetime))
    return 0


if __name__ == "__main__":
    sys.exit(main())
