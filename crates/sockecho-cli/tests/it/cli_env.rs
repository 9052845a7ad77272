//! Settings from the environment (`SOCKECHO_<FLAG>`), shell completions and the man page, as a
//! user of the real binary sees them. Self-contained: its helpers are its own.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// Upper bound for anything that should happen "at once".
const WAIT: Duration = Duration::from_secs(10);

/// `sockecho ARGS` with the `SOCKECHO_*` variables of the test's own environment removed, so
/// only the ones a test sets count; all but `SOCKECHO_IO`, which picks the I/O path the whole
/// suite runs on.
fn sockecho(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sockecho"));
    cmd.args(args).env_remove("RUST_LOG").env_remove("NO_COLOR");
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("SOCKECHO_") && name_text != "SOCKECHO_IO" {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Runs a one-shot command to completion, killing it if it takes longer than `WAIT`.
fn run(mut cmd: Command) -> Output {
    let output = assert_cmd::Command::from_std({
        cmd.stdin(Stdio::null());
        cmd
    })
    .timeout(WAIT)
    .output()
    .expect("the command finishes in time");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked"),
        "the binary panicked:\n{stderr}"
    );
    output
}

/// A running `sockecho serve`, with its log lines arriving on a channel. Killed when dropped.
struct Server {
    child: Child,
    lines: Receiver<String>,
    log: String,
}

impl Server {
    fn start(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sockecho starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Server {
            child,
            lines,
            log: String::new(),
        }
    }

    /// Waits for `count` `listening on` lines and returns their endpoints.
    fn listening(&mut self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut endpoints = Vec::new();
        while endpoints.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no {count} `listening on` lines in time; log:\n{}",
                    self.log
                )
            });
            self.log.push_str(&line);
            self.log.push('\n');
            if let Some((_, endpoint)) = line.split_once("listening on ") {
                endpoints.push(endpoint.trim().to_owned());
            }
        }
        endpoints
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn addr(endpoint: &str, scheme: &str) -> SocketAddr {
    endpoint
        .strip_prefix(scheme)
        .and_then(|rest| rest.parse().ok())
        .unwrap_or_else(|| panic!("{endpoint:?} is not a {scheme} address"))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream
}

fn echo_once(stream: &mut TcpStream, data: &[u8]) {
    stream.write_all(data).expect("write");
    let mut back = vec![0; data.len()];
    stream.read_exact(&mut back).expect("the echo comes back");
    assert_eq!(back, data);
}

#[test]
fn endpoints_and_idle_timeout_come_from_the_environment() {
    let mut cmd = sockecho(&["serve"]);
    cmd.env("SOCKECHO_ENDPOINTS", "tcp://127.0.0.1:0,udp://127.0.0.1:0")
        .env("SOCKECHO_IDLE_TIMEOUT", "300ms");
    let mut server = Server::start(cmd);
    let endpoints = server.listening(2);
    let tcp = endpoints
        .iter()
        .find(|e| e.starts_with("tcp://"))
        .expect("a TCP endpoint");
    let udp = endpoints
        .iter()
        .find(|e| e.starts_with("udp://"))
        .expect("a UDP endpoint");

    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(WAIT)).expect("read timeout");
    socket
        .send_to(b"datagram", addr(udp, "udp://"))
        .expect("send");
    let mut buf = [0u8; 16];
    let (n, _) = socket.recv_from(&mut buf).expect("the datagram comes back");
    assert_eq!(&buf[..n], b"datagram");

    let mut stream = connect(addr(tcp, "tcp://"));
    echo_once(&mut stream, b"hello");
    let quiet_since = Instant::now();
    let n = stream
        .read(&mut buf)
        .expect("the server closes, not an error");
    assert_eq!(n, 0, "the idle connection is closed by the server");
    let idle = quiet_since.elapsed();
    assert!(
        idle >= Duration::from_millis(250) && idle < Duration::from_secs(5),
        "closed after {idle:?}"
    );
}

#[test]
fn the_command_line_wins_over_the_environment() {
    let mut cmd = sockecho(&["serve", "tcp://127.0.0.1:0"]);
    cmd.env("SOCKECHO_ENDPOINTS", "udp://127.0.0.1:0,tcp://127.0.0.1:0")
        .env("SOCKECHO_MAX_CONNS", "1")
        .args(["--max-conns", "2"]);
    let mut server = Server::start(cmd);
    let endpoints = server.listening(1);
    assert_eq!(endpoints.len(), 1);
    let tcp = addr(&endpoints[0], "tcp://");
    // Two at once are served: --max-conns 2 overrode the variable's 1.
    let mut first = connect(tcp);
    let mut second = connect(tcp);
    echo_once(&mut first, b"first");
    echo_once(&mut second, b"second");
    // Nothing else was bound: the line's one endpoint replaced the variable's two.
    assert!(!server.log.contains("udp://"), "{}", server.log);
}

#[test]
fn max_conns_from_the_environment_holds_the_next_client_back() {
    let mut cmd = sockecho(&["serve", "tcp://127.0.0.1:0"]);
    cmd.env("SOCKECHO_MAX_CONNS", "1");
    let mut server = Server::start(cmd);
    let tcp = addr(&server.listening(1)[0], "tcp://");
    let mut first = connect(tcp);
    echo_once(&mut first, b"first");

    let mut second = connect(tcp);
    second.write_all(b"second").expect("write");
    second
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("read timeout");
    let early = second.read(&mut [0u8; 16]);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the second client was served beyond SOCKECHO_MAX_CONNS=1: {early:?}"
    );
    drop(first);
    second.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut back = [0u8; 6];
    second
        .read_exact(&mut back)
        .expect("served once the slot frees");
    assert_eq!(&back, b"second");
}

#[test]
fn bench_takes_its_settings_and_booleans_from_the_environment() {
    let mut server = Server::start(sockecho(&["serve", "tcp://127.0.0.1:0"]));
    let endpoint = server.listening(1).remove(0);
    let mut cmd = sockecho(&["bench"]);
    cmd.env("SOCKECHO_ENDPOINT", &endpoint)
        .env("SOCKECHO_CONNECTIONS", "2")
        .env("SOCKECHO_SIZE", "100")
        .env("SOCKECHO_DURATION", "200ms")
        .env("SOCKECHO_WARMUP", "100ms")
        .env("SOCKECHO_JSON", "yes");
    let output = run(cmd);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("SOCKECHO_JSON=yes prints JSON");
    assert_eq!(report["connections"], 2);
    assert_eq!(report["size"], 100);
    assert_eq!(report["endpoint"], endpoint.as_str());

    // `off` is a boolean too: the table is printed.
    let mut cmd = sockecho(&["bench", &endpoint, "-d", "100ms", "--warmup", "0s"]);
    cmd.env("SOCKECHO_JSON", "off");
    let output = run(cmd);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("sockecho bench "));
}

#[test]
fn a_variable_that_does_not_parse_is_a_usage_error() {
    for (name, value, flag) in [
        ("SOCKECHO_LOG_DATA", "maybe", "--log-data"),
        ("SOCKECHO_MAX_CONNS", "0", "--max-conns"),
        ("SOCKECHO_GRACE", "soon", "--grace"),
    ] {
        let mut cmd = sockecho(&["serve", "tcp://127.0.0.1:0"]);
        cmd.env(name, value);
        let output = run(cmd);
        assert_eq!(output.status.code(), Some(2), "{name}={value}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag), "{name}={value}: {stderr}");
    }
}

#[test]
fn help_names_the_variables() {
    for (subcommand, names) in [
        (
            "serve",
            &[
                "SOCKECHO_ENDPOINTS",
                "SOCKECHO_MAX_CONNS",
                "SOCKECHO_IDLE_TIMEOUT",
                "SOCKECHO_GRACE",
                "SOCKECHO_METRICS",
                "SOCKECHO_IO",
            ][..],
        ),
        (
            "bench",
            &[
                "SOCKECHO_ENDPOINT",
                "SOCKECHO_CONNECTIONS",
                "SOCKECHO_DURATION",
                "SOCKECHO_RATE",
                "SOCKECHO_JSON",
            ][..],
        ),
        ("ping", &["SOCKECHO_COUNT", "SOCKECHO_INTERVAL"][..]),
        ("client", &["SOCKECHO_ENDPOINT", "SOCKECHO_TIMEOUT"][..]),
    ] {
        let output = run(sockecho(&[subcommand, "--help"]));
        assert_eq!(output.status.code(), Some(0));
        let help = String::from_utf8_lossy(&output.stdout);
        for name in names {
            assert!(
                help.contains(&format!("[env: {name}")),
                "{subcommand}: {name}\n{help}"
            );
        }
    }
}

#[test]
fn completions_cover_every_subcommand_and_flag() {
    let output = run(sockecho(&["completions", "bash"]));
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let script = String::from_utf8_lossy(&output.stdout);
    for word in [
        "serve",
        "client",
        "bench",
        "ping",
        "merge",
        "--max-conns",
        "--idle-timeout",
    ] {
        assert!(script.contains(word), "bash completions lack {word}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let output = run(sockecho(&["completions", shell]));
        assert_eq!(output.status.code(), Some(0), "{shell}: {output:?}");
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(
            script.contains("max-conns"),
            "{shell} completions lack --max-conns"
        );
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let output = run(sockecho(&["completions", "tcsh"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("tcsh"));
}

#[test]
fn man_prints_the_main_page() {
    let output = run(sockecho(&["man"]));
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let page = String::from_utf8_lossy(&output.stdout);
    // Before the title come only the string definitions for quotes (`.ie`/`.el` requests).
    let title = page
        .lines()
        .position(|l| l.starts_with(".TH sockecho 1"))
        .expect("a .TH title line");
    assert!(
        page.lines()
            .take(title)
            .all(|l| l.starts_with(".ie") || l.starts_with(".el")),
        "{page}"
    );
    for subcommand in ["serve", "client", "bench", "ping", "completions", "man"] {
        assert!(
            page.contains(&format!("sockecho\\-{subcommand}(1)")),
            "the page does not name {subcommand}"
        );
    }
}

#[test]
fn man_writes_one_page_per_command_into_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run(sockecho(&["man", "--dir", &dir.path().to_string_lossy()]));
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(output.stdout.is_empty());
    for name in [
        "sockecho",
        "sockecho-serve",
        "sockecho-bench",
        "sockecho-bench-merge",
    ] {
        let page = std::fs::read_to_string(dir.path().join(format!("{name}.1")))
            .unwrap_or_else(|e| panic!("{name}.1: {e}"));
        assert!(page.contains(&format!(".TH {name} 1")), "{name}.1:\n{page}");
    }
    let serve = std::fs::read_to_string(dir.path().join("sockecho-serve.1")).expect("read");
    assert!(
        serve.contains("SOCKECHO_MAX_CONNS"),
        "the page names the variables"
    );
}
