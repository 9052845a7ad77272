//! `sockecho bench` against `sockecho serve` on every transport: the report's counts add up,
//! every field is there, and the run passes. Also open loop, odd sizes, histogram logs and
//! `bench merge`, and the errors a user meets first (unreachable server, bad arguments).

use crate::support::{
    Server, assert_fields, bench_json, closed_tcp_port, closed_udp_port, int, num, run, stderr_of,
    stdout_of, temp_dir,
};

/// Counts that must hold for any healthy run of `size`-byte messages.
fn assert_healthy(report: &serde_json::Value, size: u64) {
    assert_fields(report);
    let sent = int(report, "messages_sent");
    let received = int(report, "messages_received");
    assert!(received > 0, "no messages received:\n{report:#}");
    assert_eq!(received, sent, "every message answered:\n{report:#}");
    assert_eq!(int(report, "bytes_sent"), sent * size);
    assert_eq!(int(report, "bytes_received"), received * size);
    assert_eq!(report["ok"], true, "{report:#}");
    for kind in [
        "mismatched",
        "truncated",
        "duplicated",
        "lost",
        "connect_failed",
        "disconnected",
    ] {
        assert_eq!(
            int(report, &format!("errors.{kind}")),
            0,
            "{kind}:\n{report:#}"
        );
    }
    let duration = num(report, "duration_s");
    let rate = num(report, "msgs_per_s");
    assert!(
        (rate - received as f64 / duration).abs() < 1.0,
        "{report:#}"
    );
    assert!(
        (num(report, "bytes_per_s_received") - (received * size) as f64 / duration).abs() < 1.0
    );
    assert_eq!(int(report, "latency_us.count"), received);
    let (p50, p99, max) = (
        num(report, "latency_us.p50"),
        num(report, "latency_us.p99"),
        num(report, "latency_us.max"),
    );
    assert!(num(report, "latency_us.min") > 0.0 && p50 <= p99 && p99 <= max);
    assert!(num(report, "client_cpu_s") > 0.0);
    assert!(num(report, "client_cpu_us_per_msg") > 0.0);
}

#[test]
fn every_transport_counts_add_up() {
    let dir = temp_dir();
    let server = Server::start_every_transport(dir.path());
    for (scheme, transport, conns) in [
        ("tcp://", "tcp", "3"),
        ("udp://", "udp", "2"),
        ("unix:", "unix", "2"),
        ("unixgram:", "unixgram", "2"),
    ] {
        let endpoint = server.endpoint(scheme).to_owned();
        let (code, report, out) = bench_json(&[
            &endpoint,
            "-c",
            conns,
            "-s",
            "100",
            "--pipeline",
            "2",
            // A second: enough that every transport gets messages through even while a busy
            // machine holds the run back for a few hundred milliseconds.
            "-d",
            "1s",
            "--warmup",
            "100ms",
        ]);
        assert_eq!(code, 0, "{transport}: {}", stderr_of(&out));
        assert_healthy(&report, 100);
        assert_eq!(report["transport"], transport);
        assert_eq!(report["endpoint"], endpoint.as_str());
        assert_eq!(report["mode"], "closed");
        assert!(report["rate"].is_null());
        assert_eq!(int(&report, "connections"), conns.parse::<u64>().unwrap());
        assert_eq!(
            int(&report, "connect_us.count"),
            int(&report, "connections")
        );
        assert_eq!(int(&report, "pipeline"), 2);
        assert_eq!(num(&report, "duration_s"), 1.0);
        assert_eq!(num(&report, "warmup_s"), 0.1);
        // No progress display when stderr is not a terminal.
        assert!(
            stderr_of(&out).is_empty(),
            "{transport}: {}",
            stderr_of(&out)
        );
    }
}

#[test]
fn one_byte_and_large_messages_verify() {
    let dir = temp_dir();
    let unix = format!("unix:{}", dir.path().join("s.sock").display());
    let server = Server::start(&["tcp://127.0.0.1:0", "udp://127.0.0.1:0", &unix], &["-q"]);
    for (endpoint, size, bytes) in [
        (server.endpoint("tcp://"), "1", 1),
        (server.endpoint("udp://"), "1", 1),
        (server.endpoint("udp://"), "60000", 60_000),
        (server.endpoint("unix:"), "1MiB", 1 << 20),
    ] {
        let (code, report, out) = bench_json(&[
            endpoint,
            "-s",
            size,
            "-c",
            "2",
            "--pipeline",
            "3",
            "-d",
            "300ms",
            "--warmup",
            "0s",
        ]);
        assert_eq!(code, 0, "{endpoint} {size}: {}", stderr_of(&out));
        assert_eq!(int(&report, "size"), bytes);
        assert_healthy(&report, bytes);
    }
}

#[test]
fn both_stream_loops_verify_every_echo_and_say_which_ran() {
    let dir = temp_dir();
    let unix = format!("unix:{}", dir.path().join("s.sock").display());
    let server = Server::start(&["tcp://127.0.0.1:0", "udp://127.0.0.1:0", &unix], &["-q"]);
    for scheme in ["tcp://", "unix:"] {
        for (io, expected) in [("uring", "io_uring"), ("epoll", "epoll")] {
            let (code, report, out) = bench_json(&[
                server.endpoint(scheme),
                "--io",
                io,
                "-c",
                "3",
                "-s",
                "3000",
                "--pipeline",
                "4",
                "-d",
                "300ms",
                "--warmup",
                "0s",
            ]);
            assert_eq!(code, 0, "{scheme} --io {io}: {}", stderr_of(&out));
            assert_healthy(&report, 3000);
            assert_eq!(report["io"], expected, "{scheme} --io {io}");
            assert_eq!(int(&report, "connections_established"), 3);
        }
    }
    // Datagram sockets always run as tasks, whatever is asked.
    let (code, report, out) = bench_json(&[
        server.endpoint("udp://"),
        "--io",
        "uring",
        "-d",
        "200ms",
        "--warmup",
        "0s",
    ]);
    assert_eq!(code, 0, "{}", stderr_of(&out));
    assert_eq!(report["io"], "tokio");
}

#[test]
fn deep_pipelines_of_large_messages_keep_every_connection_going() {
    // 16 × 64 KiB in flight per connection: writes stop part-way and resume when the socket
    // has room, and a wake-up's reads fill the buffer many times in a row. Every byte must
    // still verify, and no connection may be left behind with replies unread at the end.
    let dir = temp_dir();
    let unix = format!("unix:{}", dir.path().join("s.sock").display());
    let server = Server::start(&["tcp://127.0.0.1:0", &unix], &["-q"]);
    for scheme in ["tcp://", "unix:"] {
        let (code, report, out) = bench_json(&[
            server.endpoint(scheme),
            "-c",
            "4",
            "-s",
            "64KiB",
            "--pipeline",
            "16",
            "-d",
            "500ms",
            "--warmup",
            "0s",
        ]);
        assert_eq!(code, 0, "{scheme}: {}", stderr_of(&out));
        assert_healthy(&report, 64 * 1024);
        // Far more than one pipeline's worth per connection went round.
        assert!(int(&report, "messages_received") > 4 * 16 * 4, "{report:#}");
    }
}

#[test]
fn open_loop_keeps_the_rate() {
    let server = Server::start(&["tcp://127.0.0.1:0", "udp://127.0.0.1:0"], &["-q"]);
    for scheme in ["tcp://", "udp://"] {
        let (code, report, out) = bench_json(&[
            server.endpoint(scheme),
            "-c",
            "4",
            "--rate",
            "2000",
            "-d",
            "500ms",
            "--warmup",
            "100ms",
        ]);
        assert_eq!(code, 0, "{}", stderr_of(&out));
        assert_healthy(&report, 64);
        assert_eq!(report["mode"], "open");
        assert_eq!(num(&report, "rate"), 2000.0);
        // 2000/s for 0.5 s is 1000 messages scheduled in the measured period.
        let sent = int(&report, "messages_sent");
        assert!((995..=1005).contains(&sent), "sent {sent}:\n{report:#}");
    }
}

#[test]
fn threads_share_the_connections() {
    let server = Server::start(&["tcp://127.0.0.1:0", "udp://127.0.0.1:0"], &["-q"]);
    for (scheme, extra) in [("tcp://", None), ("udp://", Some("3000"))] {
        let mut args = vec![
            server.endpoint(scheme),
            "-t",
            "2",
            "-c",
            "5",
            "-d",
            "300ms",
            "--warmup",
            "0s",
        ];
        if let Some(rate) = extra {
            args.extend(["--rate", rate]);
        }
        let (code, report, out) = bench_json(&args);
        assert_eq!(code, 0, "{}", stderr_of(&out));
        assert_healthy(&report, 64);
        assert_eq!(int(&report, "threads"), 2);
        assert_eq!(int(&report, "connections_established"), 5);
        if extra.is_some() {
            // 3000/s for 0.3 s, interleaved over both threads' connections.
            let sent = int(&report, "messages_sent");
            assert!((895..=905).contains(&sent), "sent {sent}:\n{report:#}");
        }
    }
}

#[test]
fn histogram_logs_and_merge() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let dir = temp_dir();
    let a = dir.path().join("a.hlog");
    let b = dir.path().join("b.hlog");
    let mut reports = Vec::new();
    for (file, conns) in [(&a, "1"), (&b, "2")] {
        let path = file.to_str().expect("utf-8 path");
        let (code, report, out) = bench_json(&[
            server.endpoint("tcp://"),
            "-c",
            conns,
            "-d",
            "300ms",
            "--warmup",
            "0s",
            "--save-hist",
            path,
        ]);
        assert_eq!(code, 0, "{}", stderr_of(&out));
        reports.push(report);
        let log = std::fs::read_to_string(file).expect("log written");
        let lines: Vec<&str> = log.lines().collect();
        assert!(
            lines.contains(&"#[Histogram log format version 1.3]"),
            "{log}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("#[StartTime: ")),
            "{log}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("\"StartTimestamp\"")),
            "{log}"
        );
        // One untagged interval (the latencies) holding a compressed V2 histogram.
        let interval: Vec<&str> = lines
            .iter()
            .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .copied()
            .collect();
        assert_eq!(interval.len(), 1, "{log}");
        let fields: Vec<&str> = interval[0].split(',').collect();
        assert_eq!(fields.len(), 4);
        assert_eq!(fields[1], "0.300");
        assert!(
            fields[3].starts_with("HISTF"),
            "compressed V2: {}",
            fields[3]
        );
    }
    let (code, merged, out) = bench_json(&[
        "merge",
        a.to_str().expect("utf-8"),
        b.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{}", stderr_of(&out));
    assert_fields(&merged);
    let sum = |field: &str| reports.iter().map(|r| int(r, field)).sum::<u64>();
    for field in [
        "messages_sent",
        "messages_received",
        "bytes_sent",
        "bytes_received",
        "connections",
    ] {
        assert_eq!(int(&merged, field), sum(field), "{field}");
    }
    assert_eq!(int(&merged, "latency_us.count"), sum("latency_us.count"));
    assert_eq!(int(&merged, "runs"), 2);
    let lo = reports
        .iter()
        .map(|r| num(r, "latency_us.min"))
        .fold(f64::MAX, f64::min);
    let hi = reports
        .iter()
        .map(|r| num(r, "latency_us.max"))
        .fold(0.0, f64::max);
    assert_eq!(num(&merged, "latency_us.min"), lo);
    assert_eq!(num(&merged, "latency_us.max"), hi);
    assert_eq!(merged["ok"], true);

    // The readable form of the same merge.
    let out = run(&[
        "bench",
        "merge",
        a.to_str().expect("utf-8"),
        b.to_str().expect("utf-8"),
    ]);
    let table = stdout_of(&out);
    assert!(table.contains("merge of 2 runs"), "{table}");
    assert!(table.contains("result       OK"), "{table}");
}

#[test]
fn readable_table_names_units() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let out = run(&[
        "bench",
        server.endpoint("tcp://"),
        "-d",
        "200ms",
        "--warmup",
        "0s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let table = stdout_of(&out);
    for needle in [
        "msg/s round trips",
        "p99.99",
        "µs",
        "latency",
        "connect",
        "errors       none",
        "result       OK",
    ] {
        assert!(table.contains(needle), "{needle:?} missing:\n{table}");
    }
}

#[test]
fn unreachable_servers_are_one_line_and_exit_1() {
    let tcp = format!("tcp://{}", closed_tcp_port());
    let udp = format!("udp://{}", closed_udp_port());
    let dir = temp_dir();
    let unix = format!("unix:{}", dir.path().join("none.sock").display());
    for endpoint in [&tcp, &udp, &unix] {
        let out = run(&["bench", endpoint, "-d", "300ms", "--timeout", "300ms"]);
        assert_eq!(out.status.code(), Some(1), "{endpoint}");
        let err = stderr_of(&out);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{endpoint}: {err}");
        assert!(
            lines[0].starts_with(&format!("error: cannot reach {endpoint}: ")),
            "{err}"
        );
        assert!(stdout_of(&out).is_empty());
    }
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["bench", "-c", "0"][..],
        &["bench", "-s", "4XB"],
        &["bench", "-d", "soon"],
        &["bench", "--rate", "-5"],
        &["bench", "--io", "kqueue"],
        &["bench", "--source", "127.0.0.9-127.0.0.1"],
        &["bench", "udp://127.0.0.1:9", "-s", "70000"],
        &["bench", "merge"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
        assert!(!stderr_of(&out).is_empty());
    }
}
