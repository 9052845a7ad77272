#!/usr/bin/env python3
"""A WebSocket echo server written with the `websockets` package: the independent reference
that `.ci/interop.sh` points sockecho's client, ping and bench at, and that bench/compare.py
measures beside `sockecho serve ws://`.

    python3 bench/ws_echo.py [HOST] [PORT]

Prints `listening on ws://HOST:PORT/` on standard error, as `sockecho serve` does, once it
accepts (port 0 picks a free one; bench/compare.py reads the server's standard error), echoes every
message as it came (text as text, binary as binary; pings are answered by the library) and
exits on SIGINT or SIGTERM.
"""

import asyncio
import signal
import sys

import websockets


async def echo(connection):
    async for message in connection:
        await connection.send(message)


async def main(host, port):
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    # No size limit and no compression: the same work per message as sockecho's server.
    async with websockets.serve(
        echo, host, port, max_size=None, compression=None, ping_interval=None
    ) as server:
        bound = server.sockets[0].getsockname()
        print(f"listening on ws://{bound[0]}:{bound[1]}/", file=sys.stderr, flush=True)
        await stop


if __name__ == "__main__":
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    asyncio.run(main(host, port))
