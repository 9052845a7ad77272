//! `--log-format json`: every stderr line is one JSON object, and connection events carry their
//! fields (peer, transport, event, bytes, duration_ms, reason) for machines to read.

use std::io::{Read, Write};
use std::net::Shutdown;

use crate::support::{Server, WAIT, echo_once, pattern, tcp_connect, temp_dir, unix_connect};
use rustix::process::Signal;
use serde_json::{Map, Value};

/// Parses every line of `log`, failing on any that is not a JSON object.
fn events(log: &str) -> Vec<Map<String, Value>> {
    log.lines()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(map)) => map,
            other => panic!("log line is not a JSON object ({other:?}): {line:?}"),
        })
        .collect()
}

fn message(event: &Map<String, Value>) -> &str {
    event
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("event without a message: {event:?}"))
}

/// The endpoints of the `listening on` events.
fn listening(log: &str) -> Vec<String> {
    events(log)
        .iter()
        .filter_map(|e| message(e).strip_prefix("listening on ").map(str::to_owned))
        .collect()
}

/// The one event with `event` == `kind` for `peer`.
fn connection_event<'a>(
    all: &'a [Map<String, Value>],
    peer: &str,
    kind: &str,
) -> &'a Map<String, Value> {
    let found: Vec<_> = all
        .iter()
        .filter(|e| {
            e.get("peer").and_then(Value::as_str) == Some(peer)
                && e.get("event").and_then(Value::as_str) == Some(kind)
        })
        .collect();
    match found[..] {
        [one] => one,
        _ => panic!("expected one {kind:?} event for {peer}, found {found:?}"),
    }
}

#[test]
fn connection_events_are_json_objects_with_their_fields() {
    let dir = temp_dir();
    let path = dir.path().join("j.sock");
    let unix_arg = format!("unix:{}", path.display());
    let mut server = Server::spawn(&[
        "serve",
        "tcp://127.0.0.1:0",
        &unix_arg,
        "--log-format",
        "json",
    ]);
    let log = server.wait_log("two JSON `listening on` events", |log| {
        log.ends_with('\n') && listening(log).len() >= 2
    });
    let tcp: std::net::SocketAddr = listening(&log)
        .iter()
        .find_map(|e| e.strip_prefix("tcp://"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no tcp listener in\n{log}"));

    // TCP: 3 + 1000 bytes in two messages, then a clean close.
    let mut stream = tcp_connect(tcp);
    let peer = stream.local_addr().expect("local addr").to_string();
    echo_once(&mut stream, b"abc");
    echo_once(&mut stream, &pattern(1000, 1));
    stream.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(stream.read(&mut [0u8; 8]).expect("EOF"), 0);
    drop(stream);

    // Unix: 5 bytes.
    let mut unix = unix_connect(&path);
    unix.write_all(b"unix!").expect("write");
    let mut back = [0u8; 5];
    unix.read_exact(&mut back).expect("echo");
    assert_eq!(&back, b"unix!");
    drop(unix);

    let log = server.wait_log("both disconnect events", |log| {
        log.ends_with('\n')
            && events(log)
                .iter()
                .filter(|e| e.get("event").and_then(Value::as_str) == Some("disconnected"))
                .count()
                >= 2
    });
    let all = events(&log);

    let connected = connection_event(&all, &peer, "connected");
    assert_eq!(connected.get("transport"), Some(&Value::from("tcp")));
    let gone = connection_event(&all, &peer, "disconnected");
    assert_eq!(gone.get("transport"), Some(&Value::from("tcp")));
    assert_eq!(
        gone.get("bytes").and_then(Value::as_u64),
        Some(1003),
        "{gone:?}"
    );
    assert_eq!(
        gone.get("reason"),
        Some(&Value::from("peer closed")),
        "{gone:?}"
    );
    let duration = gone
        .get("duration_ms")
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("duration_ms is not a number: {gone:?}"));
    assert!(
        (0.0..WAIT.as_secs_f64() * 1e3).contains(&duration),
        "{duration}"
    );
    assert!(gone.get("level").is_some(), "{gone:?}");

    let unix_gone = all
        .iter()
        .find(|e| {
            e.get("event").and_then(Value::as_str) == Some("disconnected")
                && e.get("transport").and_then(Value::as_str) == Some("unix")
        })
        .unwrap_or_else(|| panic!("no unix disconnect event in\n{log}"));
    assert_eq!(unix_gone.get("bytes").and_then(Value::as_u64), Some(5));
    let unix_peer = unix_gone
        .get("peer")
        .and_then(Value::as_str)
        .expect("unix peer");
    assert_eq!(
        connection_event(&all, unix_peer, "connected").get("transport"),
        Some(&Value::from("unix"))
    );

    // The shutdown lines are JSON too.
    server.signal(Signal::TERM);
    let status = server.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0));
    let all = events(&server.log());
    assert!(
        all.iter().any(|e| message(e).starts_with("stopped: ")),
        "{}",
        server.log()
    );
}

/// The JSON log is safe by construction: a payload with line breaks and terminal escapes stays
/// inside one JSON string of one line, and reads back as the escaped text the text log shows.
#[test]
fn log_data_payloads_stay_inside_one_json_line() {
    let mut server = Server::spawn(&[
        "serve",
        "tcp://127.0.0.1:0",
        "--log-data",
        "--log-format",
        "json",
    ]);
    let log = server.wait_log("a JSON `listening on` event", |log| {
        log.ends_with('\n') && !listening(log).is_empty()
    });
    let tcp: std::net::SocketAddr = listening(&log)
        .iter()
        .find_map(|e| e.strip_prefix("tcp://"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no tcp listener in\n{log}"));
    let mut stream = tcp_connect(tcp);
    let peer = stream.local_addr().expect("local addr").to_string();
    echo_once(&mut stream, b"a\n{\"forged\":1}\r\x1b[2Jb\n");
    let expected = format!(r#"{peer}: a\n{{"forged":1}}\r\x1b[2Jb"#);
    server.wait_log("the payload event", |log| {
        log.ends_with('\n') && events(log).iter().any(|e| message(e) == expected)
    });
    drop(stream);
    server.signal(Signal::TERM);
    assert_eq!(server.wait_exit(WAIT).code(), Some(0));
    let log = server.log();
    let all = events(&log);
    assert!(
        !all.iter().any(|e| e.contains_key("forged")),
        "a payload became an event of its own:\n{log}"
    );
    assert!(
        !log.contains('\x1b'),
        "raw escape character in the log:\n{log}"
    );
}
