#!/usr/bin/env python3
"""Interoperability of plain sockets and TLS with peers sockecho did not write: ncat, socat,
OpenBSD nc, OpenSSL and Python's standard library.

A. Their clients against `sockecho serve`, once per stream I/O path (`--io uring`, where the
   kernel allows it, and `--io epoll`):
   - TCP (IPv4, and IPv6 on ::1 where it works) and Unix streams: each tool sends a 4 MiB
     random file, half-closes, and must get exactly that file back; six such clients at once;
     500 short connect-send-recv-close cycles from Python, each echo exact and each connection
     and byte counted by the server's metrics; a client that half-closes and reads the rest;
     clients that fill every buffer and close without reading, after which the server must
     hold no connection open and still echo;
   - TLS, with a certificate OpenSSL made (a CA of this run and a server certificate it signed,
     which the clients trust by the CA alone): `openssl s_client` as it negotiates, and forced
     to TLS 1.2 and to TLS 1.3, verifying the server and getting a random payload back exactly;
     socat's OPENSSL client with a 4 MiB file; 100 handshake-echo-close cycles from Python's
     `ssl`, each counted by the server's metrics; a Python session resumed on a second
     connection, with a TLS 1.3 ticket and with a TLS 1.2 session;
   - UDP: one datagram through each tool, and Python datagrams of 0 to 65 507 bytes;
     Unix datagrams from a Python socket bound to a path of its own;
   - the server's stop line counts exactly the connections and datagrams sent to it.
   TLS is served on tokio whatever `--io` says; its checks run on both paths anyway, because
   they take under a second and show TLS beside each engine in one server.
B. sockecho against their servers (`ncat -l -k -e cat`, socat's forking TCP and Unix
   listeners with `EXEC:cat`, Python `socketserver` TCP and UDP echo servers; over TLS socat's
   forking `OPENSSL-LISTEN` with `PIPE` and `ncat --ssl -l -k -e cat`; over UDP socat's
   `UDP-LISTEN,fork PIPE` and `ncat -u -l -k -e cat`): the interactive client on a
   pseudo-terminal, the pipe client with a 4 MiB file (in 16 KiB steps against ncat, see
   pipe_client_in_step), `ping`, and `bench` (closed loop and connect-echo-close churn, on each
   of bench's I/O loops where it has them, and over TLS churn resuming sessions, every
   handshake but each slot's first resumed), its JSON report holding every message verified
   and no error; against datagram servers the datagram client, `ping` and `bench`.

    python3 .ci/peers.py PATH/TO/sockecho

Needs `ncat`, `socat`, `openssl` and OpenBSD's `nc` (`nc.openbsd` on Debian, where `nc` may
be ncat); .ci/interop.sh installs whichever is missing. Every child runs under a deadline.
Prints one line per check, `skip` lines for what this machine cannot do, and
`N passed, N failed`; exits 1 if any check failed.
"""

import hashlib
import json
import os
import pty
import random
import re
import select
import shutil
import signal
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

WAIT = 10  # seconds for anything that should happen at once
RUN = 30  # seconds for one child command, a 4 MiB echo included
BIG = 4 * 1024 * 1024  # bytes in each file sent through a stream

results = []
children = []  # every Child started, so that none outlives this script


def check(name, ok, detail=""):
    """Records a check and prints it on one line, with `detail` (output lines joined) if it
    failed."""
    results.append(bool(ok))
    detail = " | ".join(line for line in str(detail).splitlines() if line.strip())
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""),
          flush=True)


def attempt(name, step, *args, **kwargs):
    """Runs a step of checks; an exception it raises (a refused connection, a server that did
    not start) is that step's failure, printed on one line like any other."""
    try:
        step(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - any exception is the step's failure
        check(name, False, f"{type(e).__name__}: {e}")


def skip(name, why):
    why = " | ".join(line for line in why.splitlines() if line.strip())
    print(f"skip {name}: {why}", flush=True)


def digest(data):
    return f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}"


def same(got, want):
    """Detail for a failed byte comparison: sizes, digests and the first differing offset."""
    if got == want:
        return ""
    first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                 min(len(got), len(want)))
    return f"got {digest(got)}, want {digest(want)}, first difference at byte {first}"


class Child:
    """A long-running child process whose output lines a thread collects, so that a chatty
    child never blocks on a full pipe and a line can be waited for with a deadline."""

    def __init__(self, argv, group=False):
        # group: the child leads a process group of its own, and stop() ends the whole group,
        # the children a forking server left behind included.
        self.group = group
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace",
                                     start_new_session=group)
        self.lines = []
        self.cond = threading.Condition()
        self.done = False
        threading.Thread(target=self._collect, daemon=True).start()
        children.append(self)

    def _collect(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.done = True
            self.cond.notify_all()

    def wait_for(self, pattern, timeout=WAIT):
        """The first match of `pattern` in an output line, or None if the child ended or the
        deadline passed first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if self.done or left <= 0:
                    return None
                self.cond.wait(left)

    def output(self):
        with self.cond:
            return "\n".join(self.lines)

    def stop(self):
        """SIGTERM, then SIGKILL after WAIT; the exit code (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        if self.group:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # no one left in the group
        with self.cond:
            self.cond.wait_for(lambda: self.done, WAIT)
        return code


def run(argv, stdin=None, timeout=RUN, **kwargs):
    """Runs a command to completion under a deadline: (exit code or None if it ran out,
    stdout bytes, stderr text)."""
    try:
        out = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, **kwargs)
        return out.returncode, out.stdout, out.stderr.decode(errors="replace").strip()
    except subprocess.TimeoutExpired as e:
        return None, e.stdout or b"", f"still running after {timeout}s"


def file_echoes(jobs, work):
    """Starts every job at once — (name, argv, payload) — each with its payload as stdin and
    stdout to a file, and waits for all under one deadline: name → (exit code, output, stderr)."""
    procs = []
    for i, (name, argv, payload) in enumerate(jobs):
        src, dst, err = (os.path.join(work, f"job{i}.{ext}") for ext in ("in", "out", "err"))
        with open(src, "wb") as f:
            f.write(payload)
        with open(src, "rb") as fin, open(dst, "wb") as fout, open(err, "wb") as ferr:
            procs.append((name, subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr),
                          dst, err))
    deadline = time.monotonic() + RUN
    done = {}
    for name, proc, dst, err in procs:
        try:
            code = proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        with open(dst, "rb") as f:
            out = f.read()
        with open(err, "rb") as f:
            text = f.read().decode(errors="replace").strip()
        done[name] = (code, out, text if code is not None else f"still running after {RUN}s")
    return done


def file_echo_detail(code, out, err, payload):
    if code != 0:
        return f"exit {code}, {digest(out)}: {err}"
    return same(out, payload)


def echo_through(argv, payload):
    """Writes `payload` to a tool's stdin, reads its echo from the tool's stdout, and only then
    ends its input: (exit code, reply bytes, stderr). For tools that quit at the end of their
    input without waiting for an answer: ncat in UDP mode, and `openssl s_client`, which then
    sends its close_notify and exits. The payload must fit in a pipe's buffer (64 KiB), as it
    is written whole before anything is read."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdin.write(payload)
    proc.stdin.flush()
    reply = b""
    deadline = time.monotonic() + WAIT
    fd = proc.stdout.fileno()
    while len(reply) < len(payload):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        reply += chunk
    proc.stdin.close()
    try:
        code = proc.wait(WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    # Whatever came after the awaited bytes (a second reply) fails the comparison.
    reply += proc.stdout.read()
    err = proc.stderr.read().decode(errors="replace").strip()
    proc.stdout.close()
    proc.stderr.close()
    return code, reply, err


def scrape(url):
    """The server's metrics as {'name{labels}': value}."""
    with urllib.request.urlopen(url, timeout=WAIT) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values


def tcp_metric(url, family):
    return scrape(url).get(f'{family}{{transport="tcp"}}', -1)


def free_port():
    """A TCP port on 127.0.0.1 free a moment ago, for servers that cannot report the port they
    took when given 0 (ncat prints `Listening on 127.0.0.1:0`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Tools:
    """The peers' executables; missing ones are None."""

    def __init__(self):
        self.ncat = shutil.which("ncat")
        self.socat = shutil.which("socat")
        self.openssl = shutil.which("openssl")
        self.cat = shutil.which("cat")
        # The checks use OpenBSD nc's flags (-N to shut the socket down at stdin's end, -W to
        # quit after a number of datagrams). On Debian `nc` is whichever alternative was
        # installed last, often ncat, so OpenBSD's is asked for by its own name first.
        self.nc = None
        for name in ("nc.openbsd", "nc"):
            path = shutil.which(name)
            if path and "OpenBSD netcat" in run([path, "-h"], timeout=WAIT)[2]:
                self.nc = path
                break


class Certificates:
    """A CA made for this run and a server certificate it signed for localhost and 127.0.0.1,
    with its key: what a TLS server is given and what its clients trust, made by OpenSSL so
    that rustls loads files it did not write. A CA and a server certificate, as in use, rather
    than one self-signed certificate: `openssl req -x509` marks its certificate a CA
    (basicConstraints CA:TRUE), and rustls then refuses it as a server's (CaUsedAsEndEntity)."""

    def __init__(self, openssl, work):
        self.ca = os.path.join(work, "ca.pem")
        self.cert = os.path.join(work, "server.pem")
        self.key = os.path.join(work, "server-key.pem")
        ca_key = os.path.join(work, "ca-key.pem")
        request = os.path.join(work, "server.csr")
        extensions = os.path.join(work, "server.ext")
        with open(extensions, "w") as f:
            f.write("subjectAltName = DNS:localhost, IP:127.0.0.1\n"
                    "basicConstraints = critical, CA:FALSE\n"
                    "extendedKeyUsage = serverAuth\n")
        p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        # A verifier finds a root by its name: a name of this run's own cannot match a root
        # the system trusts (Debian's snakeoil certificate is CN=localhost).
        ca_name = f"/CN=sockecho peers CA {os.urandom(6).hex()}"
        self.failed = None
        for argv in (
            [openssl, "req", "-x509", *p256, "-days", "1", "-subj", ca_name, "-keyout", ca_key,
             "-out", self.ca],
            [openssl, "req", "-new", *p256, "-subj", "/CN=localhost", "-keyout", self.key,
             "-out", request],
            [openssl, "x509", "-req", "-in", request, "-CA", self.ca, "-CAkey", ca_key,
             "-set_serial", f"0x{os.urandom(8).hex()}", "-days", "1", "-extfile", extensions,
             "-out", self.cert],
        ):
            code, _, err = run(argv, timeout=WAIT)
            if code != 0:
                self.failed = f"{' '.join(argv[:3])}: exit {code}: {err}"
                return


# ---------------------------------------------------------------------------------------------
# A. Independent clients against `sockecho serve`


class Served:
    """A `sockecho serve` on every kind of endpoint, and the tally of what was sent to it that
    its stop line must report."""

    def __init__(self, sockecho, mode, work, v6, certs):
        self.mode = mode
        self.certs = certs
        self.unix = os.path.join(work, f"stream-{mode}.sock")
        self.unixgram = os.path.join(work, f"dgram-{mode}.sock")
        endpoints = ["tcp://127.0.0.1:0", "udp://127.0.0.1:0", f"unix:{self.unix}",
                     f"unixgram:{self.unixgram}"] + (["tcp://[::1]:0"] if v6 else [])
        if certs:
            endpoints += ["tls://127.0.0.1:0", "--cert", certs.cert, "--key", certs.key]
        self.child = Child([sockecho, "serve", "-q", "--io", mode, "--metrics", "127.0.0.1:0",
                            *endpoints])
        self.io = self.child.wait_for(r"stream I/O: (\S+)")
        self.connections = 0
        self.datagrams = 0
        if self.io:
            out = self.child.output()
            self.tcp = int(re.search(r"listening on tcp://127\.0\.0\.1:(\d+)", out).group(1))
            self.udp = int(re.search(r"listening on udp://127\.0\.0\.1:(\d+)", out).group(1))
            # Each listener logs its line on its own: the TLS one need not have come yet.
            port = certs and self.child.wait_for(r"listening on tls://127\.0\.0\.1:(\d+)")
            self.tls = int(port.group(1)) if port else None
            port6 = re.search(r"listening on tcp://\[::1\]:(\d+)", out)
            self.tcp6 = int(port6.group(1)) if port6 else None
            self.metrics = re.search(r"metrics on (http://\S+/metrics)", out).group(1)

    def stop(self):
        code = self.child.stop()
        stopped = re.search(r"stopped: (\d+) connections \((\d+) cut before they finished\), "
                            r"(\d+) bytes echoed, (\d+) datagrams echoed", self.child.output())
        return code, stopped


def stream_clients(tools, target):
    """Each tool as a client that sends its stdin, half-closes, and writes what comes back to
    stdout until the server closes: target is ("tcp", host, port) or ("unix", path)."""
    if target[0] == "tcp":
        host, port = target[1], str(target[2])
        socat_address = f"TCP6:[{host}]:{port}" if ":" in host else f"TCP4:{host}:{port}"
        return [
            # ncat shuts its socket down at stdin's end by default (--no-shutdown would not).
            ("ncat", [tools.ncat, host, port]),
            # socat half-closes at stdin's end and then waits -t seconds (0.5 by default) for
            # the other direction; longer, so a slow echo is not cut.
            ("socat", [tools.socat, "-t", "20", "STDIO", socat_address]),
            # Without -N OpenBSD nc would never half-close, and the echo would never end.
            ("nc", [tools.nc, "-N", host, port]),
        ]
    path = target[1]
    return [
        ("ncat", [tools.ncat, "-U", path]),
        ("socat", [tools.socat, "-t", "20", "STDIO", f"UNIX-CONNECT:{path}"]),
        ("nc", [tools.nc, "-N", "-U", path]),
    ]


def each_tool_echoes(served, tools, target, label, work):
    jobs = [(name, argv, os.urandom(BIG)) for name, argv in stream_clients(tools, target)]
    done = file_echoes(jobs, work)
    for name, _, payload in jobs:
        check(f"[{served.mode}] {label}: {name} gets its 4 MiB back exactly",
              done[name][0] == 0 and done[name][1] == payload,
              file_echo_detail(*done[name], payload))
    served.connections += len(jobs)


def clients_at_once(served, tools, work):
    clients = stream_clients(tools, ("tcp", "127.0.0.1", served.tcp))
    jobs = [(f"{name} #{i}", argv, os.urandom(BIG)) for i in (1, 2) for name, argv in clients]
    done = file_echoes(jobs, work)
    bad = [f"{name}: {file_echo_detail(*done[name], payload)}" for name, _, payload in jobs
           if done[name][0] != 0 or done[name][1] != payload]
    check(f"[{served.mode}] tcp: {len(jobs)} clients at once (two each of ncat, socat, nc) "
          "get their 4 MiB back exactly", not bad, "; ".join(bad))
    served.connections += len(jobs)


def echo_on(sock, payload):
    """Sends `payload` on a connected socket and reads until as many bytes are back (or EOF)."""
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def counted_cycles(served, transport, what, count, seed, echo):
    """`count` connect-echo-close cycles of 1 to 1024 random bytes through `echo(payload)`, each
    echo exact, and the server's metrics counting exactly those connections and bytes."""
    before = scrape(served.metrics)
    rng = random.Random(seed)
    wrong = []
    sent = 0
    for i in range(count):
        payload = rng.randbytes(rng.randint(1, 1024))
        try:
            got = echo(payload)
        except OSError as e:  # ssl.SSLError included
            got = f"{type(e).__name__}: {e}".encode()
        sent += len(payload)
        if got != payload:
            wrong.append(f"cycle {i}: {same(got, payload)}")
    served.connections += count
    check(f"[{served.mode}] {transport}: {count} {what}, each echo exact", not wrong,
          "; ".join(wrong[:3]))
    after = scrape(served.metrics)
    key_conns = f'sockecho_connections_total{{transport="{transport}"}}'
    key_bytes = f'sockecho_bytes_echoed_total{{transport="{transport}"}}'
    conns = after.get(key_conns, 0) - before.get(key_conns, 0)
    echoed = after.get(key_bytes, 0) - before.get(key_bytes, 0)
    check(f"[{served.mode}] {transport}: metrics count those {count} connections and {sent} bytes",
          conns == count and echoed == sent, f"{conns:.0f} connections, {echoed:.0f} bytes")


def short_cycles(served, count=500):
    def echo(payload):
        with socket.create_connection(("127.0.0.1", served.tcp), timeout=WAIT) as s:
            return echo_on(s, payload)

    counted_cycles(served, "tcp", "connect-send-recv-close cycles (Python socket)", count, 862,
                   echo)


def half_close(served):
    payload = os.urandom(BIG)
    got = bytearray()
    error = []
    try:
        with socket.create_connection(("127.0.0.1", served.tcp), timeout=WAIT) as s:
            # The server stops reading while its echo cannot be written, so the file is sent
            # from a thread while this one reads.
            def send():
                try:
                    s.sendall(payload)
                    s.shutdown(socket.SHUT_WR)
                except OSError as e:
                    error.append(e)

            sender = threading.Thread(target=send)
            sender.start()
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                got += chunk
            sender.join(WAIT)
    except OSError as e:
        error.append(e)
    served.connections += 1
    check(f"[{served.mode}] tcp: a client that half-closes reads all 4 MiB and then EOF",
          not error and bytes(got) == payload, f"{error} {same(bytes(got), payload)}")


def closers(served, count=8):
    """Clients that send until every buffer on the way is full (the server must stop reading
    from a client that does not read its echo) and close without reading: even ones reset at
    once (SO_LINGER 0), odd ones close normally, which also resets, as their receive queues
    hold unread data."""
    limit = 64 << 20  # far more than the kernel's buffers and the server's own hold
    taken = []
    for i in range(count):
        s = socket.socket()
        # Small buffers of its own keep the amount it takes to fill everything small.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.settimeout(WAIT)
        s.connect(("127.0.0.1", served.tcp))
        s.setblocking(False)
        block = os.urandom(64 * 1024)
        sent = 0
        while sent < limit:
            try:
                sent += s.send(block)
            except BlockingIOError:
                # Full for now; full for good once the server has stopped reading.
                if not select.select([], [s], [], 0.2)[1]:
                    break
        taken.append(sent)
        if i % 2 == 0:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    served.connections += count
    deadline = time.monotonic() + WAIT
    open_now = tcp_metric(served.metrics, "sockecho_connections_open")
    while open_now != 0 and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the server's own count: there is no event to wait on
        open_now = tcp_metric(served.metrics, "sockecho_connections_open")
    payload = os.urandom(100_000)
    try:
        with socket.create_connection(("127.0.0.1", served.tcp), timeout=WAIT) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := s.recv(65536):
                got += chunk
    except OSError as e:
        got = f"{e}".encode()
    served.connections += 1
    check(f"[{served.mode}] tcp: {count} clients that do not read are held up (server took at "
          f"most {max(taken) / 2**20:.1f} MiB from one) and close; none is left open, and the "
          "server echoes on", max(taken) < limit and open_now == 0 and got == payload,
          f"{open_now:.0f} left open; {same(got, payload)}")


def tls_s_client(served, tools):
    """`openssl s_client` as it negotiates, and forced to each TLS version, trusting the CA
    alone and checking the server's name."""
    for flag, want in (None, "TLSv1.3"), ("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3"):
        payload = os.urandom(32 * 1024)
        # -brief: the handshake's summary (protocol, verification) on stderr and nothing but
        # the echo on stdout; unlike -quiet it does not imply -ign_eof, so at the end of its
        # input s_client sends its close_notify and exits. -nocommands: a chunk of the random
        # payload that starts with Q, R or k is data, not "quit", "renegotiate" or "update keys".
        argv = [tools.openssl, "s_client", "-brief", "-nocommands", *([flag] if flag else []),
                "-connect", f"127.0.0.1:{served.tls}", "-servername", "localhost",
                "-CAfile", served.certs.ca, "-verify_hostname", "localhost",
                "-verify_return_error"]
        code, reply, err = echo_through(argv, payload)
        served.connections += 1
        protocol = re.search(r"Protocol version: (\S+)", err)
        protocol = protocol.group(1) if protocol else None
        # "Verification: OK" is -brief's form of "Verify return code: 0 (ok)".
        verified = re.search(r"^Verification: OK$", err, re.M)
        check(f"[{served.mode}] tls: openssl s_client{' ' + flag if flag else ''} negotiates "
              f"{want}, verifies the server (Verification: OK) and gets its 32 KiB back exactly",
              code == 0 and protocol == want and verified and reply == payload,
              f"exit {code}, protocol {protocol}, {same(reply, payload)}: {err}")


def tls_socat(served, tools, work):
    payload = os.urandom(BIG)
    # socat verifies the server by default (verify=1), against the name or address it was
    # given (here 127.0.0.1, which the certificate holds). At the end of its input it sends
    # its close_notify and, as over TCP, waits -t seconds for the rest of the echo.
    argv = [tools.socat, "-t", "20", "STDIO",
            f"OPENSSL:127.0.0.1:{served.tls},cafile={served.certs.ca}"]
    done = file_echoes([("socat", argv, payload)], work)["socat"]
    served.connections += 1
    check(f"[{served.mode}] tls: socat OPENSSL (verifying) gets its 4 MiB back exactly",
          done[0] == 0 and done[1] == payload, file_echo_detail(*done, payload))


def tls_echo(context, port, payload, session=None):
    """One TLS connection from Python: handshake, `payload` echoed, a clean close (close_notify
    both ways): the echo, whether the session was resumed, and the session to resume next
    (read before the close, which forgets both)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    with context.wrap_socket(raw, server_hostname="localhost", session=session) as s:
        got = echo_on(s, payload)
        reused, session = s.session_reused, s.session
        s.unwrap()
    return got, reused, session


def tls_cycles(served, count=100):
    context = ssl.create_default_context(cafile=served.certs.ca)
    counted_cycles(served, "tls", "connect-handshake-echo-close cycles (Python ssl, verifying)",
                   count, 8446, lambda payload: tls_echo(context, served.tls, payload)[0])


def tls_resumption(served):
    """A second connection offering the first one's session. TLS 1.3 sends its tickets after
    the handshake, so the session is taken only once an echo has been read."""
    for version, kind in ((ssl.TLSVersion.TLSv1_3, "TLS 1.3 ticket"),
                          (ssl.TLSVersion.TLSv1_2, "TLS 1.2 session")):
        context = ssl.create_default_context(cafile=served.certs.ca)
        context.minimum_version = context.maximum_version = version
        session = None
        reused = []
        wrong = []
        for _ in range(2):
            payload = os.urandom(1000)
            got, resumed, session = tls_echo(context, served.tls, payload, session)
            served.connections += 1
            reused.append(resumed)
            if got != payload:
                wrong.append(same(got, payload))
        check(f"[{served.mode}] tls: Python ssl resumes a {kind} on a second "
              "connection (session_reused), each echo exact",
              reused == [False, True] and not wrong, f"session_reused {reused}; {wrong}")


def datagram_tools(served, tools):
    host, port = "127.0.0.1", str(served.udp)
    clients = [
        ("socat", [tools.socat, "STDIO", f"UDP4:{host}:{port}"]),
        ("ncat", [tools.ncat, "-u", host, port]),
        # -W 1: quit once one datagram has come back.
        ("nc", [tools.nc, "-u", "-W", "1", host, port]),
    ]
    for name, argv in clients:
        payload = os.urandom(1200)
        code, reply, err = echo_through(argv, payload)
        check(f"[{served.mode}] udp: {name} sends one datagram and gets exactly it back",
              code == 0 and reply == payload, f"exit {code}, {same(reply, payload)}: {err}")
        served.datagrams += 1


def datagram_sizes(served, family, address, sizes, label, bind=None):
    wrong = []
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        if bind:
            s.bind(bind)
        s.settimeout(WAIT)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        for size in sizes:
            payload = os.urandom(size)
            try:
                s.sendto(payload, address)
                reply, source = s.recvfrom(1 << 17)
            except OSError as e:
                wrong.append(f"{size}: {e}")
                continue
            served.datagrams += 1
            if reply != payload or source != address:
                wrong.append(f"{size}: from {source!r}, {same(reply, payload)}")
    check(f"[{served.mode}] {label}: datagrams of {', '.join(map(str, sizes))} bytes come "
          "back exactly, from the server's address", not wrong, "; ".join(wrong))


def against_sockecho_server(sockecho, tools, mode, work, v6, certs):
    """The checks of part A on one stream I/O path (TLS ones only with `certs`). Returns None,
    or the server's output if it did not start."""
    served = Served(sockecho, mode, work, v6, certs)
    if not served.io:
        code = served.stop()[0]
        return f"exit {code}: {served.child.output()}"
    want = "io_uring" if mode == "uring" else "epoll"
    check(f"[{mode}] sockecho serve --io {mode} says `stream I/O: {want}`",
          served.io.group(1) == want, served.io.group(0))
    tag = f"[{mode}]"
    attempt(f"{tag} tcp: each tool", each_tool_echoes, served, tools,
            ("tcp", "127.0.0.1", served.tcp), "tcp", work)
    attempt(f"{tag} tcp: clients at once", clients_at_once, served, tools, work)
    attempt(f"{tag} tcp: short cycles", short_cycles, served)
    attempt(f"{tag} tcp: half-close", half_close, served)
    attempt(f"{tag} unix: each tool", each_tool_echoes, served, tools, ("unix", served.unix),
            "unix", work)
    if served.tcp6:
        attempt(f"{tag} tcp [::1]: each tool", each_tool_echoes, served, tools,
                ("tcp", "::1", served.tcp6), "tcp [::1]", work)
    if served.tls:
        attempt(f"{tag} tls: openssl s_client", tls_s_client, served, tools)
        attempt(f"{tag} tls: socat", tls_socat, served, tools, work)
        attempt(f"{tag} tls: Python cycles", tls_cycles, served)
        attempt(f"{tag} tls: Python resumption", tls_resumption, served)
    elif served.certs:
        check(f"{tag} tls: the server listens on tls://", False, served.child.output())
    attempt(f"{tag} udp: each tool", datagram_tools, served, tools)
    attempt(f"{tag} udp: Python", datagram_sizes, served, socket.AF_INET,
            ("127.0.0.1", served.udp), [0, 1, 512, 1472, 9000, 32768, 65507],
            "udp (Python socket)")
    attempt(f"{tag} unixgram: Python", datagram_sizes, served, socket.AF_UNIX, served.unixgram,
            [0, 1, 1000, 65507], "unixgram (Python socket bound to a path)",
            bind=os.path.join(work, f"client-{mode}.sock"))
    attempt(f"{tag} tcp: clients that do not read", closers, served)
    code, stopped = served.stop()
    counts = tuple(int(stopped.group(g)) for g in (1, 4)) if stopped else None
    check(f"{tag} the server stops with exit 0 and counts {served.connections} connections "
          f"and {served.datagrams} datagrams",
          code == 0 and counts == (served.connections, served.datagrams),
          f"exit {code}, {stopped.group(0) if stopped else 'no stop line'}")
    return None


# ---------------------------------------------------------------------------------------------
# B. sockecho against independent servers


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)


class DatagramHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data, self.client_address)


def python_server(kind, handler):
    server = kind(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def strip_terminal(raw):
    """The text of what a line editor drew: escape sequences and carriage returns removed."""
    return re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", raw).replace(b"\r", b"").decode(errors="replace")


def interactive_client(sockecho, endpoint, label, options=()):
    """`sockecho client` on a pseudo-terminal, as a person types into it: the banner, a
    `SERVER> ` line for each line sent, and exit 0 on an empty line. `options`: the client's
    own, such as --ca."""
    lines = ["hello", "two words", "héllo, wörld", "x" * 200]
    master, slave = pty.openpty()
    proc = subprocess.Popen([sockecho, "client", endpoint, *options], stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True)
    os.close(slave)
    raw = b""

    def read_until(predicate):
        nonlocal raw
        deadline = time.monotonic() + WAIT
        while not predicate(strip_terminal(raw)):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([master], [], [], left)[0]:
                return False
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the client has exited and closed the terminal
                return predicate(strip_terminal(raw))
            if not chunk:
                return predicate(strip_terminal(raw))
            raw += chunk
        return True

    def replies(text):
        return [row[len("SERVER> "):] for row in text.split("\n") if row.startswith("SERVER> ")]

    banner = read_until(
        lambda t: "Connected to server. Type messages (empty line to quit):\n" in t and "> " in t)
    for i, line in enumerate(lines):
        os.write(master, line.encode() + b"\r")
        read_until(lambda t, n=i + 1: len(replies(t)) >= n)
    os.write(master, b"\r")
    try:
        code = proc.wait(WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    if code is not None:
        read_until(lambda t: False)  # the rest of its output, up to the end of the terminal
    os.close(master)
    text = strip_terminal(raw)
    check(f"{label}: interactive client shows its banner, `SERVER> ` and each line, exits 0 on "
          "an empty line",
          banner and code == 0 and replies(text) == lines,
          f"exit {code}, banner {banner}, replies {replies(text)!r}")


def pipe_client(sockecho, endpoint, label, work, options=()):
    payload = os.urandom(BIG)
    done = file_echoes([("client", [sockecho, "client", endpoint, *options], payload)],
                       work)["client"]
    check(f"{label}: pipe client gets its 4 MiB back exactly", done[0] == 0 and done[1] == payload,
          file_echo_detail(*done, payload))


def pipe_client_in_step(sockecho, endpoint, label, options=(), chunk=16 * 1024, count=64):
    """The pipe client fed one chunk at a time, each read back before the next is written,
    and its input ended only then: ncat's -e/--sh-exec relay (7.93) stops relaying the
    program's output once the peer half-closes (nmap/nmap#2510), and blocks on the program's
    input while the program blocks on its output once more than a pipe's worth is in flight,
    so against it a whole file sent at once cannot come back. The same holds over TLS (its
    --ssl relay), where the client's close_notify is the half-close."""
    proc = subprocess.Popen([sockecho, "client", endpoint, *options], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    fd = proc.stdout.fileno()
    sent = b""
    got = b""
    deadline = time.monotonic() + RUN
    for _ in range(count):
        piece = os.urandom(chunk)
        proc.stdin.write(piece)
        proc.stdin.flush()
        sent += piece
        while len(got) < len(sent):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            more = os.read(fd, 65536)
            if not more:
                break
            got += more
        if got != sent:
            break
    proc.stdin.close()
    try:
        code = proc.wait(WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    got += proc.stdout.read()
    err = proc.stderr.read().decode(errors="replace").strip()
    proc.stdout.close()
    proc.stderr.close()
    check(f"{label}: pipe client, {count} × {chunk // 1024} KiB each echoed before the next, gets "
          "every byte back exactly", code == 0 and got == sent,
          f"exit {code}, {same(got, sent)}: {err}")


def ping(sockecho, endpoint, label, options=(), tls=False):
    code, out, err = run([sockecho, "ping", endpoint, "-c", "3", "-i", "100ms", *options])
    out = out.decode(errors="replace")
    ok = code == 0 and "3 sent, 3 received" in out
    if not tls:
        check(f"{label}: ping, 3 replies, exit 0", ok, f"exit {code}: {out}{err}")
        return
    # Over TLS the first reply used to wait ~42 ms: the server's session tickets, unacknowledged
    # under delayed ACKs (40 ms at least on Linux), held its echo back behind Nagle's algorithm.
    # The client acknowledges at once after the handshake; on loopback every reply is well
    # under the delayed-ACK timer.
    rtt = re.search(r"rtt min/avg/max/mdev = [0-9.]+/[0-9.]+/([0-9.]+)/", out)
    slowest = float(rtt.group(1)) if rtt else None
    check(f"{label}: ping, 3 replies, exit 0, none held back by a delayed ACK (slowest "
          f"{slowest} ms, under 30)", ok and slowest is not None and slowest < 30,
          f"exit {code}: {out}{err}")


def bench(sockecho, endpoint, label, extra, size=1024, churn=False, options=(), slots=None):
    """`options` are given to bench but, unlike `extra`, not shown in the check's name.
    `slots`: a TLS churn run with --tls-resume over that many slots, whose handshakes must be
    full only on each slot's first connection."""
    argv = [sockecho, "bench", endpoint, "-s", str(size), "-d", "1s", "--json", *extra,
            *options]
    code, out, err = run(argv)
    try:
        report = json.loads(out)
    except ValueError:
        report = {}
    sent = report.get("messages_sent", 0)
    errors = report.get("errors", {})
    ok = (code == 0 and report.get("ok") is True and sent > 0
          and report.get("messages_received") == sent
          and report.get("bytes_received") == sent * size
          and errors and not any(errors.values()))
    if churn:
        opened = report.get("churn", {}).get("connections_opened", 0)
        # One message per connection: every connection opened carried exactly one.
        ok = ok and opened > 0 and sent == opened
    handshakes = ""
    if slots:
        stats = report.get("churn", {})
        full = stats.get("tls_handshakes_full")
        resumed = stats.get("tls_handshakes_resumed")
        # Each slot's first connection has nothing to resume; every later one resumes the
        # session its slot's previous connection was given.
        ok = ok and full == slots and resumed == opened - slots
        handshakes = f", {full} full handshakes and {resumed} resumed"
    shown = " ".join(extra)
    check(f"{label}: bench {shown}: {sent} messages, every one verified, no error{handshakes}",
          ok, f"exit {code}, ok {report.get('ok')}, received {report.get('messages_received')}, "
          f"errors {errors}, churn {report.get('churn', {}).get('connections_opened')}: "
          f"{err[-400:]}")


def against_stream_server(sockecho, endpoint, label, modes, work, interactive=True,
                          whole_file=True, options=(), tls=False):
    """The client checks against a stream server; bench on each of `modes`, or once on its only
    loop (TLS runs on tokio) where `modes` is [None]. Over TLS (`tls`) also churn resuming
    sessions."""
    if interactive:
        attempt(f"{label}: interactive client", interactive_client, sockecho, endpoint, label,
                options)
    if whole_file:
        attempt(f"{label}: pipe client", pipe_client, sockecho, endpoint, label, work, options)
    else:
        attempt(f"{label}: pipe client", pipe_client_in_step, sockecho, endpoint, label,
                options)
    attempt(f"{label}: ping", ping, sockecho, endpoint, label, options, tls)
    for mode in modes:
        io = ["--io", mode] if mode else []
        attempt(f"{label}: bench {' '.join(io)}", bench, sockecho, endpoint, label,
                ["-c", "4", "--warmup", "200ms", *io], options=options)
        # A forking server pays a fork (and cat's exec) per connection: a low rate and few
        # slots, so that cost does not show as connect timeouts.
        attempt(f"{label}: bench --churn {' '.join(io)}", bench, sockecho, endpoint, label,
                ["--churn", "--messages-per-conn", "1", "-c", "2", "--conn-rate", "40",
                 "--warmup", "0", *io], churn=True, options=options)
        if tls:
            attempt(f"{label}: bench --churn --tls-resume", bench, sockecho, endpoint, label,
                    ["--churn", "--tls-resume", "--messages-per-conn", "1", "-c", "2",
                     "--conn-rate", "40", "--warmup", "0"], churn=True, options=options,
                    slots=2)


def against_peer_server(argv, ready, endpoint, label, checks):
    """Starts a server of the peers, waits for its line matching `ready`, and runs `checks` on
    the endpoint `endpoint` makes of that match."""
    child = Child(argv, group=True)
    try:
        match = child.wait_for(ready)
        check(f"{label}: starts", match, child.output())
        if match:
            checks(endpoint(match))
    finally:
        child.stop()


def against_datagram_server(sockecho, endpoint, label, connections=4):
    lines = b"one\ntwo words\nh\xc3\xa9llo\n"
    code, out, err = run([sockecho, "client", endpoint], stdin=lines)
    check(f"{label}: datagram client prints each reply on its line, exit 0",
          code == 0 and out == lines, f"exit {code}, {out!r}: {err}")
    attempt(f"{label}: ping", ping, sockecho, endpoint, label)
    attempt(f"{label}: bench", bench, sockecho, endpoint, label,
            ["-c", str(connections), "--warmup", "200ms"], size=512)


def against_python_servers(sockecho, modes, work):
    label = "Python socketserver TCP"
    server = python_server(socketserver.ThreadingTCPServer, EchoHandler)
    try:
        against_stream_server(sockecho, f"tcp://127.0.0.1:{server.server_address[1]}", label,
                              modes, work)
    finally:
        server.shutdown()
        server.server_close()

    server = python_server(socketserver.ThreadingUDPServer, DatagramHandler)
    try:
        against_datagram_server(sockecho, f"udp://127.0.0.1:{server.server_address[1]}",
                                "Python socketserver UDP")
    finally:
        server.shutdown()
        server.server_close()


def against_independent_servers(sockecho, tools, modes, work, certs):
    def stream(label, **kwargs):
        return lambda endpoint: against_stream_server(sockecho, endpoint, label, modes, work,
                                                      **kwargs)

    # ncat cannot say which port it took when given 0 (it prints `Listening on ...:0`), so it
    # gets one that was free a moment ago.
    port = free_port()
    label = "ncat -l -k -e cat"
    attempt(label, against_peer_server,
            [tools.ncat, "-v", "-l", "-k", "127.0.0.1", str(port), "-e", tools.cat],
            r"Listening on 127\.0\.0\.1:\d+", lambda _: f"tcp://127.0.0.1:{port}", label,
            stream(label, whole_file=False))
    # socat -d -d logs the address it took (AF=2 127.0.0.1:PORT). -t 10: after one direction
    # ends, the other gets 10 s to finish instead of 0.5.
    label = "socat TCP-LISTEN,fork EXEC:cat"
    attempt(label, against_peer_server,
            [tools.socat, "-d", "-d", "-t", "10", "TCP-LISTEN:0,bind=127.0.0.1,fork,reuseaddr",
             "EXEC:cat"],
            r"listening on AF=2 127\.0\.0\.1:(\d+)",
            lambda m: f"tcp://127.0.0.1:{m.group(1)}", label, stream(label))
    path = os.path.join(work, "socat.sock")
    label = "socat UNIX-LISTEN,fork EXEC:cat"
    attempt(label, against_peer_server,
            [tools.socat, "-d", "-d", "-t", "10", f"UNIX-LISTEN:{path},fork", "EXEC:cat"],
            r"listening on", lambda _: f"unix:{path}", label, stream(label, interactive=False))
    attempt("Python socketserver", against_python_servers, sockecho, modes, work)

    if certs:
        # TLS: the clients trust this run's CA alone and check the server's name (127.0.0.1,
        # in the certificate). bench has one loop for TLS (tokio), so no --io.
        def tls(label, **kwargs):
            return lambda endpoint: against_stream_server(
                sockecho, endpoint, label, [None], work, options=["--ca", certs.ca], tls=True,
                **kwargs)

        label = "socat OPENSSL-LISTEN,fork PIPE"
        attempt(label, against_peer_server,
                [tools.socat, "-d", "-d", "-t", "10",
                 f"OPENSSL-LISTEN:0,bind=127.0.0.1,fork,reuseaddr,cert={certs.cert},"
                 f"key={certs.key},verify=0", "PIPE"],
                r"listening on AF=2 127\.0\.0\.1:(\d+)",
                lambda m: f"tls://127.0.0.1:{m.group(1)}", label, tls(label))
        port = free_port()
        label = "ncat --ssl -l -k -e cat"
        attempt(label, against_peer_server,
                [tools.ncat, "-v", "--ssl", "--ssl-cert", certs.cert, "--ssl-key", certs.key,
                 "-l", "-k", "127.0.0.1", str(port), "-e", tools.cat],
                r"Listening on 127\.0\.0\.1:\d+", lambda _: f"tls://127.0.0.1:{port}", label,
                tls(label, whole_file=False))

    # UDP. Both peers fork a handler for each new peer and relay through a byte stream (a pipe,
    # cat), which keeps no datagram boundaries: two datagrams in flight from one socket can come
    # back as one. And neither serves peers that start at once: socat's UDP-LISTEN,fork (and
    # ncat -u -l -k alike) hands its first peer every datagram that arrives while that peer's
    # child starts, so four Python sockets sending at once get "sock0sock1sock2sock3" back on
    # the first and nothing on the others; UDP-RECVFROM,fork, a child per datagram, avoids that
    # but now and then drops a few datagrams of sockets sending at once (3 of 2 500 in 2 of 8
    # one-second runs of four Python sockets). So every client here is one socket with one
    # datagram in flight: the datagram client and ping wait for each reply, and bench runs with
    # -c 1 (and --pipeline 1, its default). socat also reads at most its -b size (8192 bytes)
    # of a datagram: bigger ones come back cut.
    label = "socat UDP-LISTEN,fork PIPE"
    attempt(label, against_peer_server,
            [tools.socat, "-d", "-d", "UDP-LISTEN:0,bind=127.0.0.1,fork,reuseaddr", "PIPE"],
            r"listening on UDP AF=2 127\.0\.0\.1:(\d+)",
            lambda m: f"udp://127.0.0.1:{m.group(1)}", label,
            lambda endpoint: against_datagram_server(sockecho, endpoint, label, connections=1))
    port = free_port()
    label = "ncat -u -l -k -e cat"
    attempt(label, against_peer_server,
            [tools.ncat, "-v", "-u", "-l", "-k", "127.0.0.1", str(port), "-e", tools.cat],
            r"Listening on 127\.0\.0\.1:\d+", lambda _: f"udp://127.0.0.1:{port}", label,
            lambda endpoint: against_datagram_server(sockecho, endpoint, label, connections=1))


def io_uring_refused(sockecho):
    """Whether `--io auto` settles on epoll, i.e. the kernel or a sandbox refuses io_uring,
    rather than `--io uring` failing on its own."""
    probe = Child([sockecho, "serve", "--io", "auto", "tcp://127.0.0.1:0"])
    settled = probe.wait_for(r"stream I/O: (\S+)")
    probe.stop()
    return bool(settled) and settled.group(1) == "epoll"


def version(argv, pattern):
    code, out, err = run(argv, timeout=WAIT)
    found = re.search(pattern, out.decode(errors="replace") + err)
    return found.group(0) if found else f"{argv[0]}: version unknown"


def main():
    sockecho = os.path.abspath(sys.argv[1])
    started = time.monotonic()
    tools = Tools()
    missing = [name for name in ("ncat", "socat", "nc", "openssl", "cat")
               if getattr(tools, name) is None]
    check("peers present: ncat, socat, OpenBSD nc, openssl (.ci/interop.sh installs them)",
          not missing, f"missing {', '.join(missing)}")
    if missing:
        sys.exit(1)
    print("     " + "; ".join([version([tools.ncat, "--version"], r"Ncat: Version \S+"),
                                 version([tools.socat, "-V"], r"socat version \S+"),
                                 version([tools.nc, "-h"], r"OpenBSD netcat \(.*\)"),
                                 version([tools.openssl, "version"], r"OpenSSL \S+")])
          + f" ({tools.nc})", flush=True)
    v6 = ipv6_loopback()
    if not v6:
        skip("tcp [::1]", "IPv6 loopback cannot be bound here")
    modes = []
    try:
        with tempfile.TemporaryDirectory(prefix="sockecho-peers-") as work:
            certs = Certificates(tools.openssl, work)
            check("a CA and a server certificate it signed, made with openssl", not certs.failed,
                  certs.failed)
            certs = None if certs.failed else certs
            for mode in ("uring", "epoll"):
                failed = against_sockecho_server(sockecho, tools, mode, work, v6, certs)
                if failed is None:
                    modes.append(mode)
                    continue
                if mode == "uring" and io_uring_refused(sockecho):
                    skip("[uring] the io_uring path", "this machine refuses io_uring "
                         "(`--io auto` settles on epoll), epoll only; `--io uring` said: "
                         + failed.strip().splitlines()[-1])
                    continue
                check(f"[{mode}] sockecho serve --io {mode} starts", False, failed)
            against_independent_servers(sockecho, tools, modes or ["epoll"], work, certs)
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.stop()
    passed = sum(results)
    failed = len(results) - passed
    print(f"peers: {passed} passed, {failed} failed in {time.monotonic() - started:.0f}s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
