#!/usr/bin/env python3
"""WebSocket interoperability with an independent implementation, Python's `websockets`:

- its client against `sockecho serve ws://`: text, binary, ping and pong, a fragmented
  message, the close code echoed, and a message over --ws-max-message closed with 1009;
- `sockecho client`, `ping` and `bench` against its server (bench/ws_echo.py).

    python .ci/interop.py PATH/TO/sockecho

Every child runs under a deadline. Prints one line per check and `N passed, N failed`; exits 1
if any check failed.
"""

import os
import subprocess
import sys
import time
import json

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

HERE = os.path.dirname(os.path.abspath(__file__))
WAIT = 10  # seconds for anything that should happen at once
RUN = 60  # seconds for a whole command

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""))


def start(args, prefix):
    """Starts a server, waits for its `listening on PREFIX...` line and returns it with the
    endpoint."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "listening on " + prefix in line:
            return proc, line.split("listening on ", 1)[1].strip()
    proc.kill()
    raise SystemExit(f"{args[0]} did not start listening on {prefix}")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def against_sockecho_server(sockecho):
    server, url = start(
        [sockecho, "serve", "ws://127.0.0.1:0/echo", "--ws-max-message", "4KiB"], "ws://"
    )
    try:
        with connect(url, open_timeout=WAIT, close_timeout=WAIT, max_size=None) as ws:
            ws.send("héllo, wörld")
            reply = ws.recv(timeout=WAIT)
            check("text comes back as text", reply == "héllo, wörld", repr(reply))
            data = bytes(range(256)) * 8
            ws.send(data)
            reply = ws.recv(timeout=WAIT)
            check("binary comes back as binary", reply == data, repr(reply[:16]))
            pong = ws.ping(b"sockecho?")
            check("ping is answered with pong", pong.wait(WAIT))
            # An iterable is sent as one message in fragments, one frame each.
            ws.send(["frag", "men", "ted"])
            reply = ws.recv(timeout=WAIT)
            check("fragments come back as one message", reply == "fragmented", repr(reply))
            ws.close(code=4000, reason="done")
            rcvd = ws.protocol.close_rcvd
            check(
                "the close code is echoed",
                rcvd is not None and rcvd.code == 4000,
                repr(rcvd),
            )
        with connect(url, open_timeout=WAIT, close_timeout=WAIT, max_size=None) as ws:
            ws.send(b"x" * 5000)
            try:
                ws.recv(timeout=WAIT)
                check("over --ws-max-message closes with 1009", False, "got an echo")
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
                check("over --ws-max-message closes with 1009", code == 1009, repr(closed))
    finally:
        stop(server)


def against_python_server(sockecho, python):
    server, url = start([python, os.path.join(HERE, "..", "bench", "ws_echo.py")], "ws://")
    try:
        text = b"one\ntwo words\n\xff\xfe not UTF-8\nlast without newline"
        out = subprocess.run(
            [sockecho, "client", url], input=text, capture_output=True, timeout=RUN
        )
        check(
            "sockecho client: lines come back exactly",
            out.returncode == 0 and out.stdout == text,
            f"exit {out.returncode}, {out.stdout!r}, {out.stderr.decode(errors='replace')}",
        )
        out = subprocess.run(
            [sockecho, "ping", url, "-c", "3", "-i", "100ms"],
            capture_output=True,
            text=True,
            timeout=RUN,
        )
        check(
            "sockecho ping: 3 replies",
            out.returncode == 0 and "3 sent, 3 received" in out.stdout,
            out.stdout + out.stderr,
        )
        out = subprocess.run(
            [sockecho, "bench", url, "-c", "4", "-s", "200", "--pipeline", "2", "-d", "1s",
             "--warmup", "200ms", "--json"],
            capture_output=True,
            text=True,
            timeout=RUN,
        )
        try:
            report = json.loads(out.stdout)
        except ValueError:
            report = {}
        sent = report.get("messages_sent", 0)
        check(
            "sockecho bench: every message verified",
            out.returncode == 0
            and report.get("ok") is True
            and report.get("transport") == "ws"
            and sent > 0
            and report.get("messages_received") == sent
            and report.get("bytes_received") == sent * 200,
            out.stdout + out.stderr,
        )
    finally:
        stop(server)


def main():
    sockecho = os.path.abspath(sys.argv[1])
    against_sockecho_server(sockecho)
    against_python_server(sockecho, sys.executable)
    passed = sum(results)
    failed = len(results) - passed
    print(f"interop: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
