//! Open-loop rates beyond what the load generator can send: a rate no machine could schedule
//! is a usage error, and a rate merely too high for this one ends on time with the shortfall
//! reported apart (`not_sent`), neither as sent nor as lost.

use std::time::{Duration, Instant};

use crate::support::{Server, bench_json, int, run, stderr_of, stdout_of};

#[test]
fn a_rate_no_machine_can_schedule_is_a_usage_error() {
    let began = Instant::now();
    // Nothing listens there: the rate is refused before anything connects.
    let out = run(&["bench", "tcp://127.0.0.1:9", "--rate", "1e12", "-d", "1s"]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("the most is 1e9"), "{err}");
    assert!(stdout_of(&out).is_empty());
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "took {:?}",
        began.elapsed()
    );
}

#[test]
fn a_rate_beyond_the_generator_ends_on_time_and_reports_what_was_not_sent() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let endpoint = server.endpoint("tcp://");
    let began = Instant::now();
    let (code, report, out) =
        bench_json(&[endpoint, "--rate", "5e7", "-d", "1s", "--warmup", "0s"]);
    let elapsed = began.elapsed();
    assert_eq!(code, 0, "{report:#}\n{}", stderr_of(&out));
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    let sent = int(&report, "messages_sent");
    let not_sent = int(&report, "not_sent");
    // One connection with one message in flight sends far fewer than 50 million a second.
    assert!(sent > 0 && not_sent > sent, "{report:#}");
    // Together they are the schedule of the measured period (the rounding of its end aside).
    let scheduled = (sent + not_sent) as f64;
    let expected = 5e7 * report["duration_s"].as_f64().expect("duration");
    assert!((scheduled - expected).abs() / expected < 0.01, "{report:#}");
    // None of it is blamed on the server.
    assert_eq!(int(&report, "errors.lost"), 0, "{report:#}");
    assert_eq!(int(&report, "messages_received"), sent, "{report:#}");
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(
        stderr_of(&out).contains("fell behind its schedule"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn the_table_warns_of_what_was_not_sent() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let endpoint = server.endpoint("tcp://");
    let out = run(&[
        "bench", endpoint, "--rate", "1e8", "-d", "300ms", "--warmup", "0s",
    ]);
    let text = stdout_of(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr_of(&out));
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("not sent"))
        .unwrap_or_else(|| panic!("no not-sent line:\n{text}"));
    assert!(
        line.contains("WARNING the load generator fell behind its schedule"),
        "{line}"
    );
    assert!(text.contains("result       OK"), "{text}");
}

/// A rate so low that the schedule's times pass the clock's range: nothing overflows, the one
/// message due at the start goes out, and the run ends on time.
#[test]
fn a_rate_of_one_message_in_ages_sends_what_is_due() {
    let server = Server::start(&["tcp://127.0.0.1:0", "udp://127.0.0.1:0"], &["-q"]);
    for scheme in ["tcp://", "udp://"] {
        let (code, report, out) = bench_json(&[
            server.endpoint(scheme),
            "--rate",
            "1e-12",
            "-c",
            "2",
            "-d",
            "300ms",
            "--warmup",
            "0s",
        ]);
        assert_eq!(code, 0, "{report:#}\n{}", stderr_of(&out));
        assert_eq!(int(&report, "messages_sent"), 1, "{report:#}");
        assert_eq!(int(&report, "messages_received"), 1, "{report:#}");
        assert_eq!(int(&report, "not_sent"), 0, "{report:#}");
    }
}
