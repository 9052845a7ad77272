//! The HTML report: `sockecho bench --html PAGE` on a run against a real server, `sockecho
//! bench report FILE... -o PAGE` over the files runs leave, and the failures: a page that cannot
//! be written stops a run before it starts, and an unreadable input is named.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::{
    Server, bench_json, closed_tcp_port, echo_with, int, run, stderr_of, tcp_server, temp_dir,
};

/// The `<svg>` element with this id, from the opening tag to its end.
fn svg<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("id=\"{id}\" class=\"chart\""))
        .unwrap_or_else(|| panic!("no chart {id} in:\n{page}"));
    let len = page[start..].find("</svg>").expect("closed svg");
    &page[start..start + len]
}

#[test]
fn a_run_writes_its_page_and_report_overlays_runs() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let endpoint = server.endpoint("tcp://").to_string();
    let dir = temp_dir();
    let page = dir.path().join("run.html");
    let hist = dir.path().join("a.hlog");
    let (code, report, out) = bench_json(&[
        &endpoint,
        "-c",
        "2",
        "-d",
        "300ms",
        "--warmup",
        "0s",
        "--save-hist",
        hist.to_str().expect("utf-8"),
        "--html",
        page.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{}", stderr_of(&out));
    let html = std::fs::read_to_string(&page).expect("page written");
    assert!(html.starts_with("<!DOCTYPE html>"));
    let chart = svg(&html, "distribution");
    assert_eq!(chart.matches("class=\"series\"").count(), 1, "{chart}");
    assert!(
        chart.contains(&format!("data-series=\"{endpoint}\"")),
        "{chart}"
    );
    assert!(chart.contains(">percentile</text>") && chart.contains(">99%</text>"));
    // The run's own histogram is drawn, and its message count is in the table.
    assert!(html.contains("<td class=\"text\">histogram</td>"));
    let received = int(&report, "messages_received");
    assert!(received > 0);
    let grouped = received
        .to_string()
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|c| std::str::from_utf8(c).expect("digits"))
        .collect::<Vec<_>>()
        .join(",");
    assert!(html.contains(&format!("<td>{grouped}</td>")), "{grouped}");

    // The same run as JSON and as a histogram log, drawn together.
    let json = dir.path().join("run.json");
    std::fs::write(&json, report.to_string()).expect("write json");
    let both = dir.path().join("both.html");
    let out = run(&[
        "bench",
        "report",
        json.to_str().expect("utf-8"),
        hist.to_str().expect("utf-8"),
        "-o",
        both.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let html = std::fs::read_to_string(&both).expect("report written");
    let chart = svg(&html, "distribution");
    assert_eq!(chart.matches("class=\"series\"").count(), 2, "{chart}");
    assert!(chart.contains("data-series=\"run.json\""));
    assert!(chart.contains("data-series=\"a.hlog\""));
    assert!(html.contains("<td class=\"text\">percentiles</td>"));
}

#[test]
fn a_page_that_cannot_be_written_stops_the_run_before_it_starts() {
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    let addr = tcp_server(move |stream, _| {
        seen.fetch_add(1, Ordering::SeqCst);
        echo_with(stream, |_, _| {});
    });
    let dir = temp_dir();
    let page = dir.path().join("no-such-dir").join("page.html");
    let started = Instant::now();
    let out = run(&[
        "bench",
        &format!("tcp://{addr}"),
        "-d",
        "10s",
        "--html",
        page.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("cannot write the report"), "{err}");
    assert!(err.contains("page.html"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(connections.load(Ordering::SeqCst), 0, "no connection made");
}

#[test]
fn a_run_that_fails_leaves_no_page_and_keeps_an_old_one() {
    let dir = temp_dir();
    let endpoint = format!("tcp://{}", closed_tcp_port());
    let new = dir.path().join("new.html");
    let out = run(&["bench", &endpoint, "--html", new.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(!new.exists(), "a page made for the run is removed");

    let old = dir.path().join("old.html");
    std::fs::write(&old, "earlier page").expect("write");
    let out = run(&["bench", &endpoint, "--html", old.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(&old).expect("still there"),
        "earlier page"
    );
}

#[test]
fn an_input_that_is_no_report_is_named() {
    let dir = temp_dir();
    let bad = dir.path().join("notes.txt");
    std::fs::write(&bad, "not a report\n").expect("write");
    let page = dir.path().join("page.html");
    let out = run(&[
        "bench",
        "report",
        bad.to_str().expect("utf-8"),
        "-o",
        page.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("notes.txt cannot go into the report"), "{err}");
    assert!(!page.exists());
    // Without an output it is a usage error.
    let out = run(&["bench", "report", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
}
