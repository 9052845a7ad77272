//! `serve --identity NAME` (or `SOCKECHO_IDENTITY`): the name shows in the `listening on` lines,
//! in `sockecho_info` and on `/info`, and never in the echoed bytes.

use crate::support::{
    Metrics, Server, echo_once, run, series_value, sockecho, stderr_of, tcp_connect, udp_exchange,
    udp_peer,
};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn info(metrics: &Metrics) -> serde_json::Value {
    let response = metrics.get("/info");
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response
            .headers
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{}",
        response.headers
    );
    serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("/info is not JSON ({e}): {}", response.body))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read the host name")
        .trim()
        .to_owned()
}

#[test]
fn the_identity_is_logged_exported_and_served_but_never_echoed() {
    let server = Server::start(
        &["tcp://127.0.0.1:0", "udp://127.0.0.1:0"],
        &["--identity", "pod-7", "--metrics", "127.0.0.1:0"],
    );
    let log = server.log();
    for endpoint in &server.endpoints {
        let line = format!("pod-7: listening on {}", endpoint.arg());
        assert!(log.contains(&line), "no {line:?} in\n{log}");
    }
    let metrics = Metrics::of(&server);

    let info = info(&metrics);
    assert_eq!(info["identity"], "pod-7", "{info}");
    assert_eq!(info["hostname"], hostname().as_str(), "{info}");
    assert_eq!(info["version"], VERSION, "{info}");
    let mut listeners: Vec<String> = info["listeners"]
        .as_array()
        .unwrap_or_else(|| panic!("listeners is not an array: {info}"))
        .iter()
        .map(|l| l.as_str().expect("a listener is a string").to_owned())
        .collect();
    listeners.sort();
    let mut expected: Vec<String> = server.endpoints.iter().map(|e| e.arg()).collect();
    expected.sort();
    assert_eq!(listeners, expected);

    let text = metrics.scrape();
    let series = format!("sockecho_info{{identity=\"pod-7\",version=\"{VERSION}\"}}");
    assert_eq!(series_value(&text, &series), Some(1), "{text}");

    // Out of band only: the echo is exactly what was sent.
    echo_once(&mut tcp_connect(server.tcp()), b"who are you?");
    assert_eq!(
        udp_exchange(&udp_peer(server.udp()), server.udp(), b"and you?"),
        b"and you?"
    );
}

#[test]
fn without_identity_info_says_null_and_the_metric_has_the_version_only() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["--metrics", "127.0.0.1:0"]);
    let metrics = Metrics::of(&server);
    let info = info(&metrics);
    assert!(info["identity"].is_null(), "{info}");
    assert_eq!(info["hostname"], hostname().as_str(), "{info}");
    let text = metrics.scrape();
    let series = format!("sockecho_info{{version=\"{VERSION}\"}}");
    assert_eq!(series_value(&text, &series), Some(1), "{text}");
    let log = server.log();
    assert!(
        log.contains(&format!("listening on {}", server.arg())) && !log.contains(": listening on"),
        "{log}"
    );
}

#[test]
fn the_identity_comes_from_the_environment_or_the_host_name() {
    let mut cmd = sockecho(["serve", "tcp://127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    cmd.env("SOCKECHO_IDENTITY", "from-env");
    let server = Server::start_command(cmd, 1);
    assert!(
        server.log().contains("from-env: listening on"),
        "{}",
        server.log()
    );
    assert_eq!(info(&Metrics::of(&server))["identity"], "from-env");

    let server = Server::start(
        &["tcp://127.0.0.1:0"],
        &["--identity", "auto", "--metrics", "127.0.0.1:0"],
    );
    assert_eq!(info(&Metrics::of(&server))["identity"], hostname().as_str());
}

#[test]
fn an_identity_with_control_characters_is_a_usage_error() {
    let output = run(&["serve", "tcp://127.0.0.1:0", "--identity", "pod\n7"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("--identity"),
        "{}",
        stderr_of(&output)
    );
}
