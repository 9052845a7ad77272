#!/usr/bin/env python3
"""Side-by-side benchmark of `sockecho serve` against a C epoll yardstick and plain tokio (and,
for WebSocket, a reference server written with Python's `websockets`, bench/ws_echo.py; for TLS,
a minimal tokio-rustls server, crates/sockecho/examples/tls_echo.rs).

Builds everything, then runs each case's servers in alternating rounds (A, B, C, A, B, C, ...)
under each load generator in turn (`sockecho bench` and the C epoll_load; openssl s_time for
TLS), with the server pinned to one CPU and the load generator to another, and prints markdown
tables of medians, with per-round ratios against the yardstick server under the same load
generator. docs/benchmarks.md explains method and columns.

    python3 bench/compare.py --write docs/benchmarks.md   # the whole matrix, into the docs
    python3 bench/compare.py                      # every case, 5 rounds of 5 s, to stdout
    python3 bench/compare.py --quick              # smoke test: 2 rounds of 1 s
    python3 bench/compare.py --cases tcp-50x64 mem --rounds 9 --load c

Python 3.11, standard library only. Every process it starts runs in its own process group and
is killed on the way out, on Ctrl-C and on failure too.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
YARDSTICK_SRC = ROOT / "bench" / "yardstick"
C_PROGRAMS = ("epoll_echo", "udp_echo", "epoll_load")
# The load generators `--load` chooses between: `sockecho bench`, or the C ones (epoll_load for
# TCP, openssl s_time for TLS).
LOAD_CHOICES = ("sockecho", "c")
# How each load generator is named in the tables.
LOAD_NAMES = {
    "sockecho": "sockecho bench",
    "sockecho-epoll": "sockecho bench --io epoll",
    "epoll_load": "epoll_load",
    "s_time": "openssl s_time",
    "python": "the harness itself (memory case)",
}
CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror"]

BUILD_TIMEOUT_S = 1800.0
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# A load generator gets warmup + duration + this (connection setup, teardown) before it is
# killed as hung.
LOAD_SLACK_S = 60.0
# How often the server's CPU time is read while a load generator runs.
CPU_SAMPLE_S = 0.02
MEM_PAYLOAD = 16 * 1024
# Churn cases connect from these local addresses in turn: each closed connection holds its
# source port for a minute in TIME_WAIT, and one address has ~28 000 ports toward the server.
CHURN_SOURCES = "127.0.0.2-127.0.0.65"
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_LINE = re.compile(r"listening on (tcp|udp|ws|tls)://(\d+\.\d+\.\d+\.\d+):(\d+)")
# `openssl s_time`'s summary line, "N connections in U.UUs; ..." (U is its user CPU time).
S_TIME_SUMMARY = re.compile(r"^(\d+) connections in [\d.]+s;", re.M)
# Where `--write` puts its tables: everything between these lines is replaced.
WRITE_BEGIN = "<!-- compare.py results begin -->"
WRITE_END = "<!-- compare.py results end -->"
# The WebSocket reference server, written with Python's `websockets`, and where that package is
# looked for first (the venv .ci/interop.sh makes).
WS_REFERENCE = ROOT / "bench" / "ws_echo.py"
WS_VENV_PYTHON = ROOT / "target" / "interop" / "venv" / "bin" / "python"


class HarnessError(Exception):
    """Ends the whole run: a failed build, a missing tool, a bad option."""


class RunError(Exception):
    """Fails one measurement; the harness records it under Problems and goes on."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# What is measured


@dataclass(frozen=True)
class Case:
    name: str
    # "load": every server under each load generator; "loadgen": the load generators compared
    # against the C server; "mem": idle connections held open; "churn": connect, echo, close,
    # repeat, in `conns` slots (`bench --churn`; over TLS, a handshake per connection).
    kind: str
    transport: str
    conns: int
    size: int
    # Messages in flight per connection (`bench --pipeline`); in a churn case, the messages
    # each connection exchanges before it closes.
    pipeline: int = 1
    # More `sockecho bench` flags.
    bench_flags: tuple[str, ...] = ()


def size_label(n: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def all_cases(mem_conns: int) -> list[Case]:
    load = [
        ("tcp", 1, 64),
        ("tcp", 50, 64),
        ("tcp", 1000, 64),
        ("tcp", 50, 4 << 10),
        ("tcp", 10, 1 << 20),
        ("udp", 50, 64),
    ]
    cases = [Case(f"{t}-{c}x{size_label(s)}", "load", t, c, s) for t, c, s in load]
    # 16 datagrams in flight per socket: the server's queue never runs dry. Then the same from
    # clients that send their queued datagrams in one call (UDP GSO), as QUIC stacks do: a burst
    # arrives at once, and a server with UDP GRO takes and echoes it as one buffer.
    cases.append(Case("udp-50x64-p16", "load", "udp", 50, 64, 16))
    cases.append(Case("udp-50x64-p16-gso", "load", "udp", 50, 64, 16, ("--udp-offload",)))
    # WebSocket: every message one binary frame, against a server written with a popular
    # library (Python's websockets) as the reference; its ratios are against that server.
    cases.append(Case("ws-50x64", "load", "ws", 50, 64))
    cases.append(Case("loadgen-50x64", "loadgen", "tcp", 50, 64))
    # The tutorial's accept-echo-close cycle: slots x messages per connection x bytes.
    for slots in (50, 1000):
        flags = ("--churn", "--messages-per-conn", "1", "--source", CHURN_SOURCES)
        cases.append(Case(f"churn-{slots}x1x64", "churn", "tcp", slots, 64, 1, flags))
    # The same over TLS: a full handshake per connection, then with sessions resumed.
    tls = ("--churn", "--messages-per-conn", "1", "--source", CHURN_SOURCES, "--insecure")
    cases.append(Case("tls-churn-50x1x64", "churn", "tls", 50, 64, 1, tls))
    resume = tls + ("--tls-resume",)
    cases.append(Case("tls-churn-resume-50x1x64", "churn", "tls", 50, 64, 1, resume))
    cases.append(Case(f"mem-{mem_conns}x16KiB", "mem", "tcp", mem_conns, MEM_PAYLOAD))
    return cases


def select_cases(cases: list[Case], selectors: list[str] | None) -> list[Case]:
    """A selector is a case name or its group, the part before the dash (`tcp`, `mem`)."""
    if not selectors:
        return cases
    wanted = [s for arg in selectors for s in arg.split(",") if s]

    def matches(case: Case, sel: str) -> bool:
        return case.name == sel or case.name.startswith(sel + "-")

    unknown = [s for s in wanted if not any(matches(c, s) for c in cases)]
    if unknown:
        names = " ".join(c.name for c in cases)
        raise HarnessError(f"unknown case {', '.join(unknown)}; choose from {names}")
    return [c for c in cases if any(matches(c, s) for s in wanted)]


@dataclass(frozen=True)
class Server:
    name: str
    transport: str
    # The C server a case's ratios are computed against.
    yardstick: bool


SERVERS = [
    Server("sockecho", "tcp", False),
    # The same server on its epoll (tokio) stream path, to show what the io_uring path buys.
    Server("sockecho-epoll", "tcp", False),
    Server("c-epoll", "tcp", True),
    Server("tokio", "tcp", False),
    Server("sockecho", "udp", False),
    Server("c-udp", "udp", True),
    Server("sockecho", "ws", False),
    # Not C, but the reference the ws case is measured against.
    Server("py-websockets", "ws", True),
    Server("sockecho", "tls", False),
    # Not C either: the minimal tokio-rustls server the TLS cases are measured against.
    Server("tokio-rustls", "tls", True),
]


def server_named(name: str, transport: str) -> Server:
    return next(s for s in SERVERS if s.name == name and s.transport == transport)


@dataclass
class Context:
    """What every measurement needs: options, built programs, a scratch directory."""

    opts: argparse.Namespace
    bins: dict[str, Path]
    workdir: Path
    # `-q` if `sockecho serve -q` still prints `listening on` (checked once at start-up).
    sockecho_quiet: list[str] = field(default_factory=list)

    def server_argv(self, server: Server) -> list[str]:
        if server.name.startswith("sockecho"):
            # One worker thread: one CPU, like the single-threaded C server. `sockecho` takes
            # the default stream path (io_uring where the kernel allows it).
            endpoint = f"{server.transport}://127.0.0.1:0"
            io = ["--io", "epoll"] if server.name == "sockecho-epoll" else []
            return [str(self.bins["sockecho"]), "serve", endpoint, "--threads", "1"] + (
                io + self.sockecho_quiet
            )
        if server.name == "tokio":
            return [str(self.bins["tokio_echo"]), "127.0.0.1:0"]
        if server.name == "py-websockets":
            return [str(ws_python()), str(WS_REFERENCE), "127.0.0.1", "0"]
        if server.name == "tokio-rustls":
            return [str(self.bins["tls_echo"]), "127.0.0.1:0"]
        return [str(self.bins["epoll_echo" if server.transport == "tcp" else "udp_echo"]), "0"]


# ---------------------------------------------------------------------------------------------
# Processes: each in its own process group, all killed on the way out.

LIVE: dict[int, subprocess.Popen] = {}


def spawn(argv: list[str], cpu: int, stdout, stderr, env=None) -> subprocess.Popen:
    """Starts `argv` pinned to `cpu`. taskset execs the program, so the pid is the program's."""
    proc = subprocess.Popen(
        ["taskset", "-c", str(cpu), *argv],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        env=env,
    )
    LIVE[proc.pid] = proc
    return proc


def stop(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> int | None:
    """SIGTERM to the process group, then SIGKILL to whatever is left of it."""
    try:
        if proc.poll() is None:
            signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"  pid {proc.pid} ignored SIGTERM for {timeout:.0f}s; killing it")
        signal_group(proc, signal.SIGKILL)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"  pid {proc.pid} survived SIGKILL")
        return proc.returncode
    finally:
        LIVE.pop(proc.pid, None)


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_all() -> None:
    for proc in list(LIVE.values()):
        stop(proc, timeout=3.0)


def on_terminate(signum, _frame):
    raise SystemExit(128 + signum)


def cpu_seconds(pid: int) -> float:
    """User + system time of the whole process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # The command name is in parentheses and may hold spaces; after it come fields 3...,
    # so utime and stime (fields 14 and 15 in proc(5)) are 11 and 12 here.
    rest = stat[stat.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RunError(f"no VmRSS in /proc/{pid}/status")


# ---------------------------------------------------------------------------------------------
# Building


def build(opts) -> dict[str, Path]:
    for tool in ("cargo", opts.cc):
        if shutil.which(tool) is None:
            raise HarnessError(f"{tool} not found on PATH; it is needed to build")
    log("building: cargo build --release (sockecho, examples tokio_echo and tls_echo)")
    run_build(
        ["cargo", "build", "--release", "-p", "sockecho-cli", "-p", "sockecho"]
        + ["--bin", "sockecho", "--example", "tokio_echo", "--example", "tls_echo"],
        "cargo build",
    )
    target = target_dir()
    out = target / "yardstick"
    out.mkdir(parents=True, exist_ok=True)
    for name in C_PROGRAMS:
        src = YARDSTICK_SRC / f"{name}.c"
        log(f"building: {opts.cc} {' '.join(CFLAGS)} {src.relative_to(ROOT)}")
        run_build([opts.cc, *CFLAGS, "-o", str(out / name), str(src)], f"compiling {src.name}")
    return built_programs(target)


def run_build(cmd: list[str], what: str) -> None:
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{what} took over {BUILD_TIMEOUT_S:.0f}s; gave up") from None
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).splitlines()[-40:])
        raise HarnessError(f"{what} failed (exit {r.returncode}): {shlex.join(cmd)}\n{tail}")


def target_dir() -> Path:
    r = subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if r.returncode != 0:
        raise HarnessError(f"cargo metadata failed:\n{r.stderr}")
    return Path(json.loads(r.stdout)["target_directory"])


def built_programs(target: Path) -> dict[str, Path]:
    bins = {
        "sockecho": target / "release" / "sockecho",
        "tokio_echo": target / "release" / "examples" / "tokio_echo",
        "tls_echo": target / "release" / "examples" / "tls_echo",
        **{name: target / "yardstick" / name for name in C_PROGRAMS},
    }
    missing = [str(p) for p in bins.values() if not os.access(p, os.X_OK)]
    if missing:
        raise HarnessError(f"not built: {', '.join(missing)}")
    return bins


def has_bench(bins) -> bool:
    r = subprocess.run(
        [str(bins["sockecho"]), "bench", "--help"], capture_output=True, timeout=30
    )
    return r.returncode == 0


# ---------------------------------------------------------------------------------------------
# Servers


class Running:
    """A started server and the address it reported in its `listening on` line."""

    def __init__(self, ctx: Context, server: Server, argv: list[str] | None = None):
        self.server = server
        self.log_path = ctx.workdir / f"{server.name}-{server.transport}.log"
        # RUST_LOG overrides -q; SOCKECHO_IO would override the default stream path.
        env = {k: v for k, v in os.environ.items() if k not in ("RUST_LOG", "SOCKECHO_IO")}
        if server.name == "tokio":
            # The one worker `sockecho serve --threads 1` gets.
            env["TOKIO_WORKER_THREADS"] = "1"
        with open(self.log_path, "wb") as err:
            argv = argv or ctx.server_argv(server)
            self.proc = spawn(argv, ctx.opts.server_cpu, subprocess.DEVNULL, err, env)
        try:
            self.host, self.port = self._wait_ready()
        except BaseException:
            stop(self.proc)
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def endpoint(self) -> str:
        return f"{self.server.transport}://{self.host}:{self.port}"

    def _wait_ready(self) -> tuple[str, int]:
        name = self.server.name
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            m = READY_LINE.search(self.log_path.read_text(errors="replace"))
            if m:
                return m.group(2), int(m.group(3))
            if self.proc.poll() is not None:
                raise RunError(
                    f"{name} exited ({self.proc.returncode}) before listening:\n{self.log_tail()}"
                )
            time.sleep(0.01)
        raise RunError(
            f"{name} printed no 'listening on' line in {READY_TIMEOUT_S:.0f}s:\n{self.log_tail()}"
        )

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RunError(
                f"{self.server.name} died (exit {self.proc.returncode}):\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "    (no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def stop(self) -> None:
        stop(self.proc)


def quiet_flag_works(ctx: Context) -> bool:
    """Whether `sockecho serve -q` still prints the `listening on` line the harness needs."""
    argv = [str(ctx.bins["sockecho"]), "serve", "tcp://127.0.0.1:0", "-q"]
    try:
        Running(ctx, server_named("sockecho", "tcp"), argv).stop()
        return True
    except RunError:
        return False


# ---------------------------------------------------------------------------------------------
# One run under a load generator


@dataclass
class Sample:
    case: str
    server: str
    loadgen: str
    round: int
    msgs_per_s: float | None = None
    p99_us: float | None = None
    server_cpu_us: float | None = None
    client_cpu_us: float | None = None
    bytes_per_conn: float | None = None
    rss_before: int | None = None
    rss_after: int | None = None
    # Churn cases: p99 of the connect time, microseconds.
    connect_p99_us: float | None = None
    warnings: list[str] = field(default_factory=list)


def load_argv(ctx: Context, loadgen: str, case: Case, srv: Running) -> list[str]:
    opts = ctx.opts
    if loadgen in ("sockecho", "sockecho-epoll"):
        io = "epoll" if loadgen == "sockecho-epoll" else "auto"
        return [
            str(ctx.bins["sockecho"]),
            "bench",
            srv.endpoint,
            "--io",
            io,
            "-c",
            str(case.conns),
            "-s",
            str(case.size),
            "-d",
            f"{round(opts.duration * 1000)}ms",
            "--warmup",
            f"{round(opts.warmup * 1000)}ms",
            "--pipeline",
            str(case.pipeline),
            *case.bench_flags,
            "--json",
        ]
    if loadgen == "s_time":
        # TLS 1.2 for resumption: under TLS 1.3 s_time closes before it reads the session
        # ticket, so it never resumes (every connection a full handshake, checked below).
        mode = ["-reuse", "-tls1_2"] if "--tls-resume" in case.bench_flags else ["-new"]
        return [
            "openssl",
            "s_time",
            "-connect",
            f"{srv.host}:{srv.port}",
            *mode,
            "-time",
            str(s_time_seconds(opts)),
        ]
    churn = []
    if case.kind == "churn":
        churn = ["--churn", "--messages-per-conn", str(case.pipeline), "--source", CHURN_SOURCES]
    return [
        str(ctx.bins["epoll_load"]),
        *churn,
        srv.host,
        str(srv.port),
        str(case.conns),
        str(case.size),
        str(opts.duration),
        str(opts.warmup),
    ]


def s_time_seconds(opts) -> int:
    """`openssl s_time -time` takes whole seconds."""
    return max(1, round(opts.duration))


def run_load(ctx: Context, case: Case, server: Server, loadgen: str, rnd: int) -> Sample:
    opts = ctx.opts
    sample = Sample(case.name, server.name, loadgen, rnd)
    out_path, err_path = ctx.workdir / "load.out", ctx.workdir / "load.err"
    srv = Running(ctx, server)
    load = None
    try:
        argv = load_argv(ctx, loadgen, case, srv)
        started = time.monotonic()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            load = spawn(argv, opts.load_cpu, out, err)
        limit = opts.warmup + opts.duration + LOAD_SLACK_S
        trace, load_cpu = trace_cpu(srv, load, limit, argv, watch_load=loadgen == "s_time")
        ended = time.monotonic()
        srv.check_alive()
        if loadgen == "s_time":
            report = s_time_report(out_path, err_path, load.returncode, argv, sample)
            # s_time has no warm-up and runs whole seconds by the clock, so its measured
            # period is its whole life as seen from here (start-up included, a few ms).
            report["duration_s"] = ended - started
            report["churn"]["connections_per_s"] = report["churn"]["connections_opened"] / (
                ended - started
            )
            report["msgs_per_s"] = report["churn"]["connections_per_s"]
            report["client_cpu_s"] = load_cpu
        else:
            report = parse_report(out_path, err_path, load.returncode, argv)
        rate = float(report["msgs_per_s"])
        if rate <= 0:
            raise RunError(f"no round trips completed: {shlex.join(argv)}")
        if case.kind == "churn":
            # A cycle (connect, one echo, close) is the unit: per-cycle CPU on both sides.
            churn = report.get("churn") or {}
            rate = float(churn.get("connections_per_s") or 0)
            if rate <= 0:
                raise RunError(f"no connection completed its cycle: {shlex.join(argv)}")
            opened = churn.get("connections_opened") or 0
            if opened and report.get("client_cpu_s") is not None:
                sample.client_cpu_us = float(report["client_cpu_s"]) / opened * 1e6
            # As for s_time: a resumption case whose handshakes mostly were full measured those.
            resumed = churn.get("tls_handshakes_resumed")
            if "--tls-resume" in argv and resumed is not None and resumed < 0.9 * opened:
                sample.warnings.append(f"bench resumed only {resumed} of {opened} TLS handshakes")
            sample.connect_p99_us = (churn.get("connect_us") or {}).get("p99")
        sample.msgs_per_s = rate
        # The measured period is the `duration_s` just before the load generator exits;
        # connection setup (seconds, if SYNs overflow a backlog) and warmup come before it.
        # Server CPU is read over a window inside it, a margin in from each end for start-up
        # and teardown skew, and divided by the echoes in the window: rate × its length.
        measured = float(report.get("duration_s") or opts.duration)
        margin = min(0.5, 0.1 * measured)
        window = cpu_window(trace, ended - measured + margin, ended - margin)
        if window is None:
            sample.warnings.append("too few server CPU samples inside the measured period")
        else:
            cpu, seconds = window
            sample.server_cpu_us = cpu / (seconds * rate) * 1e6
        sample.p99_us = (report.get("latency_us") or {}).get("p99")
        if case.kind == "churn":
            pass
        elif "client_cpu_us_per_msg" in report:
            sample.client_cpu_us = float(report["client_cpu_us_per_msg"])
        elif report.get("messages"):
            sample.client_cpu_us = float(report["client_cpu_s"]) / report["messages"] * 1e6
        if report.get("ok") is False:
            errors = {k: v for k, v in (report.get("errors") or {}).items() if v}
            connect = (report.get("churn") or {}).get("connect_errors") or {}
            errors.update({f"connect {k}": v for k, v in connect.items() if v})
            sample.warnings.append(f"load generator reported ok=false, errors {errors}")
        return sample
    finally:
        if load is not None:
            stop(load)
        srv.stop()


def trace_cpu(
    srv: Running, load: subprocess.Popen, timeout: float, argv, watch_load: bool
) -> tuple[list, float | None]:
    """Reads the server's CPU time every CPU_SAMPLE_S until the load generator exits.
    Returns [(monotonic time, CPU seconds)] and, with `watch_load` (for a load generator that
    reports no CPU time of its own), the load generator's CPU seconds at the last reading."""
    trace = []
    load_cpu = None
    deadline = time.monotonic() + timeout
    while load.poll() is None:
        now = time.monotonic()
        if now > deadline:
            raise RunError(f"load generator still running after {timeout:.0f}s: {shlex.join(argv)}")
        try:
            trace.append((now, cpu_seconds(srv.pid)))
        except OSError:
            srv.check_alive()
            raise
        if watch_load:
            try:
                load_cpu = cpu_seconds(load.pid)
            except OSError:
                pass  # it has just exited; the previous reading stands
        time.sleep(CPU_SAMPLE_S)
    return trace, load_cpu


def cpu_window(trace, start: float, end: float) -> tuple[float, float] | None:
    """(CPU seconds, wall seconds) between the first sample at or after `start` and the last at
    or before `end`; None if that spans under 0.1 s."""
    inside = [(t, c) for t, c in trace if start <= t <= end]
    if len(inside) < 2 or inside[-1][0] - inside[0][0] < 0.1:
        return None
    (t0, c0), (t1, c1) = inside[0], inside[-1]
    return c1 - c0, t1 - t0


def parse_report(out_path: Path, err_path: Path, code: int | None, argv: list[str]) -> dict:
    """The load generator's JSON report: all of stdout (`sockecho bench --json` pretty-prints
    one object) or else its last line that is a JSON object. A report whose run went wrong
    (exit status 1 with a report: some echo wrong or missing) is kept; its `ok` says so."""
    out = out_path.read_text(errors="replace")
    report = None
    for text in [out, *reversed(out.splitlines())]:
        try:
            candidate = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(candidate, dict) and "msgs_per_s" in candidate:
            report = candidate
            break
    if report is None or code not in (0, 1):
        err = err_path.read_text(errors="replace")
        tail = "\n".join("    " + line for line in (err or out).splitlines()[-15:])
        raise RunError(
            f"load generator exited {code} without a JSON report: {shlex.join(argv)}\n{tail}"
        )
    if code != 0 and report.get("ok") is not False:
        report["ok"] = False  # epoll_load has no `ok`; its exit status is what tells
    return report


def s_time_report(
    out_path: Path, err_path: Path, code: int | None, argv: list[str], sample: Sample
) -> dict:
    """`openssl s_time`'s connection count, as a churn report without timings (the caller
    adds them). s_time prints a character per connection: `r` when the session was resumed;
    a resumption run where most were not is flagged, since it measured full handshakes."""
    out = out_path.read_text(errors="replace")
    found = S_TIME_SUMMARY.findall(out)
    if code != 0 or not found:
        err = err_path.read_text(errors="replace")
        tail = "\n".join("    " + line for line in (err or out).splitlines()[-15:])
        raise RunError(f"s_time exited {code} without its summary: {shlex.join(argv)}\n{tail}")
    opened = int(found[-1])
    if "-reuse" in argv:
        marks = "".join(line for line in out.splitlines() if re.fullmatch(r"[*rt3]+", line))
        resumed = marks.count("r")
        if resumed < 0.9 * len(marks):
            sample.warnings.append(f"s_time resumed only {resumed} of {len(marks)} sessions")
    return {"churn": {"connections_opened": opened}}


# ---------------------------------------------------------------------------------------------
# One memory run: server RSS per idle connection


def run_mem(ctx: Context, case: Case, server: Server, rnd: int) -> Sample:
    sample = Sample(case.name, server.name, "python", rnd)
    srv = Running(ctx, server)
    socks: list[socket.socket] = []
    try:
        time.sleep(0.2)  # start-up allocations settle
        before = rss_bytes(srv.pid)
        payload = os.urandom(case.size)
        for i in range(case.conns):
            s = socket.create_connection((srv.host, srv.port), timeout=10)
            socks.append(s)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(payload)
            if recv_exact(s, len(payload)) != payload:
                raise RunError(f"{server.name}: connection {i} got back different bytes")
        time.sleep(0.3)  # let the server finish whatever follows the last echo
        srv.check_alive()
        after = rss_bytes(srv.pid)
        sample.rss_before, sample.rss_after = before, after
        sample.bytes_per_conn = (after - before) / case.conns
        return sample
    except OSError as e:
        raise RunError(f"{server.name}: after {len(socks)} connections: {e}") from None
    finally:
        for s in socks:
            s.close()
        srv.stop()


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise RunError(f"server closed the connection after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


# ---------------------------------------------------------------------------------------------
# Report


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v: float | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def half_range(values: list[float]) -> str:
    """Half the range of `values`, as a percentage of their median."""
    if len(values) < 2 or not statistics.median(values):
        return "–"
    return f"±{(max(values) - min(values)) / 2 / statistics.median(values) * 100:.0f}%"


def spread(values) -> str:
    """Half the range of the runs, as a percentage of their median."""
    return half_range([v for v in values if v is not None])


def paired_ratio(samples: list[Sample], base: dict[int, Sample], attr: str) -> str:
    """The median of the per-round ratios of `attr` to the base run of the same round (same
    case, same load generator), with their spread: a slow round slows both runs it pairs, so
    this is steadier than a ratio of two medians. "1.00×" for the base row itself."""
    ratios = []
    for s in samples:
        b = base.get(s.round)
        if b is s:
            return "1.00×" if any(getattr(x, attr) for x in samples) else "–"
        v, bv = getattr(s, attr), getattr(b, attr) if b else None
        if v is not None and bv:
            ratios.append(v / bv)
    if not ratios:
        return "–"
    cell = f"{statistics.median(ratios):.2f}×"
    return cell if len(ratios) < 2 else f"{cell} {half_range(ratios)}"


class Runs:
    """The samples of a run, grouped by case, load generator and server in the order they ran."""

    def __init__(self, samples: list[Sample]):
        self.groups: dict[tuple[str, str, str], list[Sample]] = {}
        for s in samples:
            self.groups.setdefault((s.case, s.loadgen, s.server), []).append(s)

    def rows(self, case: Case) -> list[tuple[str, str, list[Sample]]]:
        """(load generator, server, samples), load generator by load generator."""
        rows = [(k[1], k[2], v) for k, v in self.groups.items() if k[0] == case.name]
        order = list(dict.fromkeys(loadgen for loadgen, _, _ in rows))
        return sorted(rows, key=lambda row: order.index(row[0]))

    def base(self, case: Case, loadgen: str) -> dict[int, Sample]:
        """The yardstick server's runs of `case` under `loadgen`, by round."""
        for lg, server, ss in self.rows(case):
            if lg == loadgen and server_named(server, case.transport).yardstick:
                return {s.round: s for s in ss}
        return {}


def header(opts, loadgens: list[str]) -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith("model name")]
        model = lines[0].split(":", 1)[1].strip() if lines else "?"
    except OSError:
        model = "?"
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    used = ", ".join(LOAD_NAMES[lg] for lg in loadgens) or "none"
    return [
        "# sockecho benchmark comparison",
        "",
        f"- date: {now}",
        f"- machine: nproc {opts.nproc} ({model}), Linux {platform.release()}",
        f"- commit: {commit or '?'}",
        f"- command: `{shlex.join(sys.orig_argv)}`",
        f"- {opts.rounds} round(s) of {opts.duration:g} s after {opts.warmup:g} s warmup; "
        f"server on CPU {opts.server_cpu}, load generator on CPU {opts.load_cpu}; "
        f"load generators: {used}",
        "",
    ]


def tables(samples: list[Sample], cases: list[Case]) -> list[str]:
    runs = Runs(samples)
    lines: list[str] = []
    load_cases = [c for c in cases if c.kind == "load" and runs.rows(c)]
    if load_cases:
        lines += [
            "## Throughput, CPU and latency (medians; ratios against the C yardstick under the "
            "same load generator)",
            "",
            "Each `vs` cell is the median of the rounds' ratios to the yardstick's run of the "
            "same round, ± half their range. The ws case's yardstick is the Python websockets "
            "server. epoll_load measures no latency.",
            "",
            "| case | load | server | round trips/s | spread | vs C | server CPU µs/echo | vs C "
            "| p99 µs | vs C |",
            "|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for case in load_cases:
            for loadgen, server, ss in runs.rows(case):
                base = runs.base(case, loadgen)
                lines.append(
                    f"| {case.name} | {LOAD_NAMES[loadgen]} | {server} | "
                    f"{fmt(median(s.msgs_per_s for s in ss))} | "
                    f"{spread(s.msgs_per_s for s in ss)} | "
                    f"{paired_ratio(ss, base, 'msgs_per_s')} | "
                    f"{fmt(median(s.server_cpu_us for s in ss), 2)} | "
                    f"{paired_ratio(ss, base, 'server_cpu_us')} | "
                    f"{fmt(median(s.p99_us for s in ss))} | {paired_ratio(ss, base, 'p99_us')} |"
                )
        lines.append("")
    for case in (c for c in cases if c.kind == "loadgen" and runs.rows(c)):
        base = next(({s.round: s for s in ss} for lg, _, ss in runs.rows(case)
                     if lg == "epoll_load"), {})
        lines += [
            f"## Load generators against the C server ({case.name}; medians)",
            "",
            "The last column divides the load generator's CPU per message by the server's CPU "
            "per echo in the same run (median of the rounds' ratios): below 1 the load "
            "generator is the cheaper side.",
            "",
            "| load generator | round trips/s | spread | vs epoll_load | client CPU µs/msg "
            "| vs epoll_load | server CPU µs/echo | client ÷ server |",
            "|---|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for loadgen, _, ss in runs.rows(case):
            own = median(
                s.client_cpu_us / s.server_cpu_us
                for s in ss
                if s.client_cpu_us is not None and s.server_cpu_us
            )
            lines.append(
                f"| {LOAD_NAMES[loadgen]} | {fmt(median(s.msgs_per_s for s in ss))} | "
                f"{spread(s.msgs_per_s for s in ss)} | {paired_ratio(ss, base, 'msgs_per_s')} | "
                f"{fmt(median(s.client_cpu_us for s in ss), 2)} | "
                f"{paired_ratio(ss, base, 'client_cpu_us')} | "
                f"{fmt(median(s.server_cpu_us for s in ss), 2)} | {fmt(own, 3)} |"
            )
        lines.append("")
    churn_cases = [c for c in cases if c.kind == "churn" and c.transport == "tcp" and runs.rows(c)]
    if churn_cases:
        lines += [
            "## Churn: connect, echo, close (medians; ratios against the C yardstick under the "
            "same load generator)",
            "",
            "A cycle is one connection: connect, one verified echo, close (client first). In a "
            "closed loop on two CPUs the load generator's own connect and close cost caps the "
            "cycle rate, so server CPU per cycle is the figure that shows the server's work.",
            "",
            "| case | load | server | cycles/s | spread | vs C | server CPU µs/cycle | vs C "
            "| load CPU µs/cycle | connect p99 µs |",
            "|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
        ]
        lines += churn_rows(runs, churn_cases)
        lines.append("")
    tls_cases = [c for c in cases if c.kind == "churn" and c.transport == "tls" and runs.rows(c)]
    if tls_cases:
        lines += [
            "## TLS churn: a handshake per connection (medians; ratios against the tokio-rustls "
            "reference under the same load generator)",
            "",
            "`sockecho bench` runs 50 slots, each connecting, handshaking, echoing 64 bytes once "
            "and closing; in `-resume` cases each slot resumes its own last session (TLS 1.3 "
            "tickets; a run that resumed under 90% is listed under Problems). openssl s_time "
            "opens one "
            "connection at a time and only handshakes (no echo); its `-resume` runs use "
            "`-reuse -tls1_2` (TLS 1.2 session IDs), since under TLS 1.3 it closes before "
            "reading the session ticket and never resumes.",
            "",
            "| case | load | server | handshakes/s | spread | vs ref | server CPU µs/handshake "
            "| vs ref | load CPU µs/handshake | connect p99 µs |",
            "|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
        ]
        lines += churn_rows(runs, tls_cases)
        lines.append("")
    for case in (c for c in cases if c.kind == "mem" and runs.rows(c)):
        lines += [
            f"## Memory per idle connection ({case.conns} connections, each echoed "
            f"{size_label(case.size)} once; medians)",
            "",
            "| server | bytes/conn | vs C | RSS before (MiB) | RSS after (MiB) |",
            "|---|--:|--:|--:|--:|",
        ]
        for loadgen, server, ss in runs.rows(case):
            base = runs.base(case, loadgen)
            before = median(s.rss_before for s in ss)
            after = median(s.rss_after for s in ss)
            mib = 1 << 20
            lines.append(
                f"| {server} | {fmt(median(s.bytes_per_conn for s in ss))} | "
                f"{paired_ratio(ss, base, 'bytes_per_conn')} | "
                f"{fmt(before / mib if before else None, 1)} | "
                f"{fmt(after / mib if after else None, 1)} |"
            )
        lines.append("")
    return lines


def churn_rows(runs: Runs, cases: list[Case]) -> list[str]:
    lines = []
    for case in cases:
        for loadgen, server, ss in runs.rows(case):
            base = runs.base(case, loadgen)
            lines.append(
                f"| {case.name} | {LOAD_NAMES[loadgen]} | {server} | "
                f"{fmt(median(s.msgs_per_s for s in ss))} | {spread(s.msgs_per_s for s in ss)} | "
                f"{paired_ratio(ss, base, 'msgs_per_s')} | "
                f"{fmt(median(s.server_cpu_us for s in ss), 2)} | "
                f"{paired_ratio(ss, base, 'server_cpu_us')} | "
                f"{fmt(median(s.client_cpu_us for s in ss), 2)} | "
                f"{fmt(median(s.connect_p99_us for s in ss))} |"
            )
    return lines


def describe(s: Sample) -> str:
    if s.bytes_per_conn is not None:
        return f"{s.bytes_per_conn:,.0f} bytes/conn"
    if "churn-" in s.case:
        return (
            f"{fmt(s.msgs_per_s)} cycles/s, server {fmt(s.server_cpu_us, 2)} µs/cycle, "
            f"connect p99 {fmt(s.connect_p99_us)} µs, load {fmt(s.client_cpu_us, 2)} µs/cycle"
        )
    return (
        f"{fmt(s.msgs_per_s)} rt/s, server {fmt(s.server_cpu_us, 2)} µs/echo, "
        f"p99 {fmt(s.p99_us)} µs, client {fmt(s.client_cpu_us, 2)} µs/msg"
    )


def write_block(path: Path, lines: list[str]) -> None:
    """Replaces the lines between the WRITE_BEGIN and WRITE_END lines of `path` with `lines`,
    their headings moved two levels down (the block sits under a `##` section)."""
    text = path.read_text()
    begin, end = marker_lines(path, text)
    kept = text.splitlines(keepends=True)
    block = ["##" + line if line.startswith("#") else line for line in lines]
    body = "\n".join(block).strip("\n") + "\n"
    path.write_text("".join(kept[: begin + 1]) + body + "".join(kept[end:]))


def marker_lines(path: Path, text: str) -> tuple[int, int]:
    """The indexes of the WRITE_BEGIN and WRITE_END lines: each must be there exactly once,
    alone on its line, in that order."""
    lines = [line.strip() for line in text.splitlines()]
    begins = [i for i, line in enumerate(lines) if line == WRITE_BEGIN]
    ends = [i for i, line in enumerate(lines) if line == WRITE_END]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise HarnessError(
            f"--write {path}: needs one line `{WRITE_BEGIN}` and, after it, one line "
            f"`{WRITE_END}`; the results go between them"
        )
    return begins[0], ends[0]


def check_writable(path: Path) -> None:
    """Fails before any measuring if `--write` could not put its block into `path`."""
    try:
        marker_lines(path, path.read_text())
    except OSError as e:
        raise HarnessError(f"--write {path}: {e}") from None
    if not os.access(path, os.W_OK):
        raise HarnessError(f"--write {path}: not writable")


# ---------------------------------------------------------------------------------------------
# Main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark `sockecho serve` against a C epoll yardstick and plain tokio.",
        epilog="Cases: " + " ".join(c.name for c in all_cases(9000)) + ". Select by name or "
        "group (tcp, udp, ws, loadgen, churn, tls, tls-churn, mem). Method and columns: "
        "docs/benchmarks.md.",
    )
    p.add_argument("--rounds", type=int, help="rounds per case (default 5; --quick 2)")
    p.add_argument("--duration", type=float, help="measured seconds per run (default 5; --quick 1)")
    p.add_argument("--warmup", type=float, help="warmup seconds per run (default 1; --quick 0.5)")
    p.add_argument("--quick", action="store_true", help="2 short rounds: a smoke test, not figures")
    p.add_argument("--cases", nargs="+", metavar="CASE", help="cases or groups to run")
    p.add_argument(
        "--servers",
        nargs="+",
        metavar="NAME",
        help="servers to run: sockecho sockecho-epoll tokio (the C yardstick, for ws the "
        "Python websockets reference and for tls the tokio-rustls one always run, for the "
        "ratios)",
    )
    p.add_argument(
        "--load",
        nargs="+",
        choices=LOAD_CHOICES,
        default=list(LOAD_CHOICES),
        help="load generators, each case under each in turn (default both): `sockecho bench`, "
        "and c: the C epoll_load for TCP (no p99), openssl s_time for TLS",
    )
    p.add_argument("--mem-conns", type=int, default=9000, help="connections in the memory case")
    p.add_argument("--server-cpu", type=int, default=0, help="CPU for servers (default 0)")
    p.add_argument("--load-cpu", type=int, default=1, help="CPU for load generators (default 1)")
    p.add_argument("--cc", default=os.environ.get("CC", "cc"), help="C compiler ($CC or cc)")
    p.add_argument("--no-build", action="store_true", help="use what target/ already holds")
    p.add_argument("--raw", type=Path, metavar="FILE", help="also write every run to FILE as JSON")
    p.add_argument(
        "--write",
        type=Path,
        metavar="FILE",
        help="also put the header and tables into FILE (docs/benchmarks.md), between its lines "
        f"`{WRITE_BEGIN}` and `{WRITE_END}`",
    )
    opts = p.parse_args(argv)
    if opts.rounds is None:
        opts.rounds = 2 if opts.quick else 5
    if opts.duration is None:
        opts.duration = 1.0 if opts.quick else 5.0
    if opts.warmup is None:
        opts.warmup = 0.5 if opts.quick else 1.0
    if opts.rounds < 1 or opts.duration <= 0 or opts.warmup < 0 or opts.mem_conns < 1:
        p.error("--rounds, --duration and --mem-conns must be positive, --warmup not negative")
    if opts.servers:
        unknown = set(opts.servers) - {s.name for s in SERVERS}
        if unknown:
            p.error(f"unknown server {', '.join(sorted(unknown))}")
    opts.load = list(dict.fromkeys(opts.load))
    return opts


def main(argv=None) -> int:
    opts = parse_args(argv)
    # Ctrl-C must stop the run even where SIGINT came in ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_terminate)
    signal.signal(signal.SIGHUP, on_terminate)
    atexit.register(stop_all)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    try:
        return run(opts)
    except HarnessError as e:
        log(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; stopping every process started")
        return 130
    finally:
        stop_all()


def run(opts) -> int:
    cases = select_cases(all_cases(opts.mem_conns), opts.cases)
    cpus = os.sched_getaffinity(0)
    opts.nproc = len(cpus)
    if {opts.server_cpu, opts.load_cpu} - cpus or opts.server_cpu == opts.load_cpu:
        raise HarnessError(
            f"--server-cpu and --load-cpu must be two different usable CPUs; usable: {sorted(cpus)}"
        )
    if shutil.which("taskset") is None:
        raise HarnessError("taskset not found on PATH (util-linux); it pins the processes")
    if opts.write:
        check_writable(opts.write)
    bins = built_programs(target_dir()) if opts.no_build else build(opts)
    bench_ok = has_bench(bins)
    if opts.load == ["sockecho"] and not bench_ok:
        raise HarnessError(
            "this sockecho has no `bench` subcommand; use --load c for the C epoll_load (TCP)"
        )
    notes: list[str] = []  # what was left out, and why
    problems: list[str] = []  # what went wrong: the exit status is 1 if there are any
    samples: list[Sample] = []
    # From here on this process only watches, or is the client of the memory case: keep it
    # off the servers' CPU.
    os.sched_setaffinity(0, {opts.load_cpu})
    with tempfile.TemporaryDirectory(prefix="sockecho-bench-") as tmp:
        ctx = Context(opts, bins, Path(tmp))
        if quiet_flag_works(ctx):
            ctx.sockecho_quiet = ["-q"]
        else:
            notes.append(
                "`sockecho serve -q` prints no `listening on` line, so sockecho ran without -q "
                "(per-connection log lines on, written to a file)"
            )
        for case in cases:
            plan = plan_case(case, opts, bench_ok, notes)
            for rnd in range(1, opts.rounds + 1):
                for server, loadgen in plan:
                    label = f"{case.name} round {rnd}/{opts.rounds} {server.name}"
                    if loadgen != "python":
                        label += f" <- {LOAD_NAMES[loadgen]}"
                    try:
                        if case.kind == "mem":
                            s = run_mem(ctx, case, server, rnd)
                        else:
                            s = run_load(ctx, case, server, loadgen, rnd)
                    except RunError as e:
                        log(f"{label}: FAILED: {e}")
                        problems.append(f"{label}: {str(e).splitlines()[0].rstrip(':')}")
                        continue
                    samples.append(s)
                    problems += [f"{label}: {w}" for w in s.warnings]
                    log(f"{label}: {describe(s)}")
    loadgens = list(dict.fromkeys(s.loadgen for s in samples))
    out = header(opts, loadgens) + tables(samples, cases)
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in dict.fromkeys(notes)] + [""]
    if problems:
        out += ["## Problems", ""] + [f"- {p}" for p in problems] + [""]
    print("\n".join(out))
    if opts.raw:
        opts.raw.write_text(json.dumps([s.__dict__ for s in samples], indent=1) + "\n")
    if opts.write:
        write_block(opts.write, out)
        log(f"wrote the results into {opts.write}")
    return 1 if problems else 0


def ws_python() -> Path | None:
    """A Python interpreter that has the `websockets` package, or None."""
    for python in (WS_VENV_PYTHON, Path(sys.executable)):
        if python.exists() and subprocess.run(
            [str(python), "-c", "import websockets"], capture_output=True, timeout=60
        ).returncode == 0:
            return python
    return None


def plan_case(case: Case, opts, bench_ok: bool, notes: list[str]) -> list:
    """The (server, load generator) pairs one round of a case runs, in order."""
    if case.kind == "loadgen":
        if not bench_ok:
            notes.append(f"{case.name}: skipped, this sockecho has no `bench` subcommand")
            return []
        c_server = server_named("c-epoll", "tcp")
        return [(c_server, "epoll_load"), (c_server, "sockecho"), (c_server, "sockecho-epoll")]
    servers = [s for s in SERVERS if s.transport == case.transport]
    if case.transport == "ws" and ws_python() is None:
        notes.append(
            f"{case.name}: skipped, no Python with the `websockets` package "
            "(bash .ci/interop.sh makes one in target/interop/venv)"
        )
        return []
    if opts.servers:
        servers = [s for s in servers if s.name in opts.servers or s.yardstick]
    if case.kind == "mem":
        return [(s, "python") for s in servers]
    loadgens = []
    for choice in opts.load:
        if choice == "sockecho":
            if bench_ok:
                loadgens.append("sockecho")
            else:
                notes.append(f"{case.name}: not under `sockecho bench`: this sockecho has none")
        elif case.transport == "tcp":
            loadgens.append("epoll_load")
        elif case.transport == "tls":
            if shutil.which("openssl"):
                loadgens.append("s_time")
            else:
                notes.append(f"{case.name}: not under openssl s_time: no `openssl` on PATH")
        else:
            notes.append(
                f"{case.name}: not under the C load generators (they speak TCP and, through "
                "openssl s_time, TLS): `sockecho bench` only"
            )
    # Every server under one load generator, then under the next: each load generator's
    # runs of a round sit close together in time, and so do the runs its ratios pair.
    return [(s, loadgen) for loadgen in loadgens for s in servers]


if __name__ == "__main__":
    sys.exit(main())
