#!/usr/bin/env python3
"""How much memory a server holds for clients that write and never read.

Connects CLIENTS clients one after another; each writes 1 MiB chunks until two writes in a row
time out (the server has stopped reading from it), and never reads. Prints the server's resident
memory (VmRSS of PID) before and after, and the growth per client.

    sockecho serve tcp://127.0.0.1:55111 --threads 1 -q &
    python3 bench/nonreaders.py --pid $! --port 55111 --clients 20
"""
import argparse
import socket
import time


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for process {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, required=True, help="the server's process id")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--stall", type=float, default=0.3, help="seconds a write may block")
    args = parser.parse_args()

    chunk = b"x" * (1 << 20)
    before = rss_kib(args.pid)
    clients = []
    written = 0
    for _ in range(args.clients):
        sock = socket.create_connection((args.host, args.port))
        sock.settimeout(args.stall)
        stalls = 0
        while stalls < 2:
            try:
                written += sock.send(chunk)
                stalls = 0
            except (socket.timeout, BlockingIOError):
                stalls += 1
        clients.append(sock)
    time.sleep(0.5)
    after = rss_kib(args.pid)
    print(
        f"{args.clients} clients wrote {written / args.clients / (1 << 20):.1f} MiB each without "
        f"reading; server RSS {before} -> {after} KiB, {(after - before) / args.clients:.0f} KiB "
        "per client"
    )


if __name__ == "__main__":
    main()
