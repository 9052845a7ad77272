//! Settings from the environment (`SOCKECHO_<FLAG>`), shell completions and the man page, as a
//! user of the real binary sees them. The harness clears the test process's own `SOCKECHO_*`
//! variables (all but `SOCKECHO_IO`) from every command, so only those a test sets count.

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use crate::support::{
    Server, WAIT, echo_once, run, run_command, sockecho, tcp_connect, temp_dir, udp_exchange,
    udp_peer, unix_connect,
};

#[test]
fn endpoints_and_idle_timeout_come_from_the_environment() {
    let mut cmd = sockecho(["serve"]);
    cmd.env("SOCKECHO_ENDPOINTS", "tcp://127.0.0.1:0,udp://127.0.0.1:0")
        .env("SOCKECHO_IDLE_TIMEOUT", "300ms");
    let server = Server::start_command(cmd, 2);

    let socket = udp_peer(server.udp());
    assert_eq!(
        udp_exchange(&socket, server.udp(), b"datagram"),
        b"datagram"
    );

    let mut stream = tcp_connect(server.tcp());
    echo_once(&mut stream, b"hello");
    let mut buf = [0u8; 16];
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
    let mut cmd = sockecho(["serve", "tcp://127.0.0.1:0"]);
    cmd.env("SOCKECHO_ENDPOINTS", "udp://127.0.0.1:0,tcp://127.0.0.1:0")
        .env("SOCKECHO_MAX_CONNS", "1")
        .args(["--max-conns", "2"]);
    let server = Server::start_command(cmd, 1);
    assert_eq!(server.endpoints.len(), 1);
    let tcp = server.tcp();
    // Two at once are served: --max-conns 2 overrode the variable's 1.
    let mut first = tcp_connect(tcp);
    let mut second = tcp_connect(tcp);
    echo_once(&mut first, b"first");
    echo_once(&mut second, b"second");
    // Nothing else was bound: the line's one endpoint replaced the variable's two.
    assert!(!server.log().contains("udp://"), "{}", server.log());
}

#[test]
fn a_comma_in_a_unix_path_on_the_command_line_is_part_of_the_path() {
    let dir = temp_dir();
    let path = dir.path().join("echo,one.sock");
    let server = Server::start(&[&format!("unix:{}", path.display())], &[]);
    let mut stream = unix_connect(&path);
    echo_once(&mut stream, b"through the comma");
    assert!(
        !dir.path().join("echo").exists(),
        "the path was not split at its comma"
    );
    drop(server);
}

#[test]
fn a_bad_endpoint_in_the_variable_is_a_usage_error_naming_it() {
    let mut cmd = sockecho(["serve"]);
    cmd.env("SOCKECHO_ENDPOINTS", "tcp://127.0.0.1:0, nowhere:port");
    let output = run_command(cmd);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("SOCKECHO_ENDPOINTS") && stderr.contains("nowhere:port"),
        "{stderr}"
    );
}

#[test]
fn max_conns_from_the_environment_holds_the_next_client_back() {
    let mut cmd = sockecho(["serve", "tcp://127.0.0.1:0"]);
    cmd.env("SOCKECHO_MAX_CONNS", "1");
    let server = Server::start_command(cmd, 1);
    let tcp = server.tcp();
    let mut first = tcp_connect(tcp);
    echo_once(&mut first, b"first");

    let mut second = tcp_connect(tcp);
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
    let server = Server::start(&["tcp://127.0.0.1:0"], &[]);
    let endpoint = server.endpoint("tcp://").to_owned();
    let mut cmd = sockecho(["bench"]);
    cmd.env("SOCKECHO_ENDPOINT", &endpoint)
        .env("SOCKECHO_CONNECTIONS", "2")
        .env("SOCKECHO_SIZE", "100")
        .env("SOCKECHO_DURATION", "200ms")
        .env("SOCKECHO_WARMUP", "100ms")
        .env("SOCKECHO_JSON", "yes");
    let output = run_command(cmd);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("SOCKECHO_JSON=yes prints JSON");
    assert_eq!(report["connections"], 2);
    assert_eq!(report["size"], 100);
    assert_eq!(report["endpoint"], endpoint.as_str());

    // `off` is a boolean too: the table is printed.
    let mut cmd = sockecho(["bench", &endpoint, "-d", "100ms", "--warmup", "0s"]);
    cmd.env("SOCKECHO_JSON", "off");
    let output = run_command(cmd);
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
        let mut cmd = sockecho(["serve", "tcp://127.0.0.1:0"]);
        cmd.env(name, value);
        let output = run_command(cmd);
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
        let output = run(&[subcommand, "--help"]);
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
    let output = run(&["completions", "bash"]);
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
        let output = run(&["completions", shell]);
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
    let output = run(&["completions", "tcsh"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("tcsh"));
}

#[test]
fn man_prints_the_main_page() {
    let output = run(&["man"]);
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
    let dir = temp_dir();
    let output = run(&["man", "--dir", &dir.path().to_string_lossy()]);
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
