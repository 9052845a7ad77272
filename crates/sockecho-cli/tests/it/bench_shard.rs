//! A bench split among processes: `--shard I/N` (or `--shards N` with the Indexed Job's
//! `JOB_COMPLETION_INDEX`) runs one part, `--start-at` lines the parts up on the wall clock, and
//! `bench merge` adds their logs up to the whole run.

use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;

use crate::support::{
    Server, WAIT, int, num, run, run_with_input, sockecho, stderr_of, stdout_of, temp_dir,
    wait_child,
};

/// `SystemTime` as `--start-at` takes it.
fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn unix_s(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// Starts `sockecho bench ARGS` with its output captured.
fn spawn_bench(args: &[String]) -> Child {
    let mut full = vec!["bench".to_owned()];
    full.extend_from_slice(args);
    sockecho(&full)
        .env_remove("JOB_COMPLETION_INDEX")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sockecho bench")
}

fn report_of(child: Child, what: &str) -> Value {
    let out = child.wait_with_output().expect("bench output");
    assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr_of(&out));
    serde_json::from_str(&stdout_of(&out))
        .unwrap_or_else(|e| panic!("{what}: no JSON report ({e}): {}", stdout_of(&out)))
}

#[test]
fn three_shards_started_together_add_up_to_the_whole_run() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let dir = temp_dir();
    // Far enough ahead for three processes to start and connect on a busy machine.
    // A whole millisecond, as --start-at is written.
    let at = UNIX_EPOCH + Duration::from_millis((unix_s(SystemTime::now()) * 1e3) as u64 + 3_000);
    let children: Vec<Child> = (0..3)
        .map(|i| {
            let log = dir.path().join(format!("shard-{i}.hlog"));
            let args = [
                server.endpoint("tcp://"),
                "-c",
                "5",
                "--rate",
                "600",
                "-d",
                "1s",
                "--warmup",
                "200ms",
                "--json",
                "--shard",
                &format!("{i}/3"),
                "--start-at",
                &rfc3339(at),
                "--save-hist",
                log.to_str().expect("a UTF-8 temp path"),
            ];
            spawn_bench(&args.map(str::to_owned))
        })
        .collect();
    let reports: Vec<Value> = children
        .into_iter()
        .enumerate()
        .map(|(i, c)| report_of(c, &format!("shard {i}")))
        .collect();

    // Connections 0,3 / 1,4 / 2, and the rate in proportion: 240 + 240 + 120 per second.
    for (i, (r, (connections, rate))) in reports
        .iter()
        .zip([(2, 240.0), (2, 240.0), (1, 120.0)])
        .enumerate()
    {
        assert_eq!(r["shard"]["index"], i, "{r:#}");
        assert_eq!(r["shard"]["count"], 3, "{r:#}");
        assert_eq!(int(r, "connections"), connections, "{r:#}");
        assert_eq!(num(r, "rate"), rate, "{r:#}");
        assert_eq!(r["ok"], true, "{r:#}");
        assert_eq!(int(r, "messages_received"), int(r, "messages_sent"));
        assert!(!r["host"].as_str().unwrap_or_default().is_empty(), "{r:#}");
        // The warm-up began at the time given, so measurement began 200 ms after it.
        let start = num(r, "start_unix_s");
        let late = start - (unix_s(at) + 0.2);
        // (The wall clock is read twice to place it: allow it a little either way.)
        assert!(
            (-0.002..0.05).contains(&late),
            "shard {i} began {late} s late"
        );
    }
    let starts: Vec<f64> = reports.iter().map(|r| num(r, "start_unix_s")).collect();
    let spread = starts.iter().cloned().fold(f64::MIN, f64::max)
        - starts.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread < 0.05, "start times {starts:?}");
    let sent: u64 = reports.iter().map(|r| int(r, "messages_sent")).sum();
    // The lanes of all shards make the one schedule: 600 messages in the measured second.
    assert!(sent.abs_diff(600) <= 3, "{sent} sent over the shards");

    let logs: Vec<String> = (0..3)
        .map(|i| {
            let path = dir.path().join(format!("shard-{i}.hlog"));
            path.to_str().unwrap().to_owned()
        })
        .collect();
    let mut args = vec!["bench", "merge", "--json"];
    args.extend(logs.iter().map(String::as_str));
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(!stderr_of(&out).contains("missing"), "{}", stderr_of(&out));
    let merged: Value = serde_json::from_str(&stdout_of(&out)).expect("merged JSON");
    for field in [
        "messages_sent",
        "messages_received",
        "bytes_received",
        "connections",
    ] {
        let total: u64 = reports.iter().map(|r| int(r, field)).sum();
        assert_eq!(int(&merged, field), total, "{field}: {merged:#}");
    }
    assert_eq!(num(&merged, "rate"), 600.0);
    assert_eq!(int(&merged, "runs"), 3);
    assert_eq!(merged["ok"], true);
    assert!(merged.get("shard").is_none(), "{merged:#}");
    assert!(
        (num(&merged, "duration_s") - 1.0).abs() < 0.05,
        "{merged:#}"
    );

    // Two of the three: the merge says the third is missing.
    let out = run(&["bench", "merge", &logs[0], &logs[2]]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("shard 1/3 missing"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn indexed_job_pods_print_logs_that_merge_from_one_stream() {
    let server = Server::start(&["udp://127.0.0.1:0"], &["-q"]);
    // What `kubectl logs -l job-name=...` prints for a Job of two pods: each pod's output in
    // turn, with whatever it said on stderr mixed in.
    let mut stream = String::new();
    let mut reports = Vec::new();
    for index in ["0", "1"] {
        let out = sockecho([
            "bench",
            server.endpoint("udp://"),
            "-c",
            "4",
            "-d",
            "300ms",
            "--warmup",
            "100ms",
        ])
        .env("SOCKECHO_SHARDS", "2")
        .env("SOCKECHO_SAVE_HIST", "-")
        .env("JOB_COMPLETION_INDEX", index)
        .stdin(Stdio::null())
        .output()
        .expect("run bench");
        assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
        // stdout is the histogram log alone, and it carries the report.
        let log = stdout_of(&out);
        assert!(log.starts_with("#[Logged with sockecho"), "{log}");
        let report_line = log
            .lines()
            .find_map(|l| l.strip_prefix("#[sockecho-report "))
            .expect("a report in the log");
        let report: Value =
            serde_json::from_str(report_line.trim_end_matches(']')).expect("JSON report");
        assert_eq!(report["shard"]["index"], index.parse::<u32>().unwrap());
        assert_eq!(report["shard"]["count"], 2);
        assert_eq!(int(&report, "connections"), 2);
        assert!(int(&report, "messages_received") > 0, "{report:#}");
        reports.push(report);
        stream.push_str(&format!("a line pod {index} wrote on stderr\n"));
        stream.push_str(&log);
    }

    let out = run_with_input(&["bench", "merge", "--json", "-"], stream.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("a line pod 1 wrote on stderr"), "{stderr}");
    assert!(!stderr.contains("missing"), "{stderr}");
    let merged: Value = serde_json::from_str(&stdout_of(&out)).expect("merged JSON");
    assert_eq!(int(&merged, "runs"), 2);
    for field in ["messages_received", "connections"] {
        let total: u64 = reports.iter().map(|r| int(r, field)).sum();
        assert_eq!(int(&merged, field), total, "{field}: {merged:#}");
    }
}

#[test]
fn shard_settings_that_cannot_work_are_usage_errors() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let ep = server.endpoint("tcp://");
    let past = rfc3339(SystemTime::now() - Duration::from_secs(60));
    for (args, problem) in [
        (vec![ep, "--start-at", &past], "in the future"),
        (vec![ep, "--start-at", "noon"], "is not a start time"),
        (vec![ep, "--shard", "3/3"], "the last of 3 is 2"),
        (
            vec![ep, "-c", "2", "--shard", "0/3"],
            "cannot be split into 3",
        ),
        (vec![ep, "--shards", "3"], "JOB_COMPLETION_INDEX"),
    ] {
        let mut full = vec!["bench"];
        full.extend_from_slice(&args);
        let out = sockecho(&full)
            .env_remove("JOB_COMPLETION_INDEX")
            .output()
            .expect("run bench");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
        assert!(
            stderr_of(&out).contains(problem),
            "{args:?}: {}",
            stderr_of(&out)
        );
    }
}

#[test]
fn a_signal_while_waiting_for_the_start_ends_the_wait() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let at = rfc3339(SystemTime::now() + Duration::from_secs(120));
    let mut child = spawn_bench(&[
        server.endpoint("tcp://").to_owned(),
        "--start-at".into(),
        at,
        "--json".into(),
    ]);
    std::thread::sleep(Duration::from_millis(800));
    kill_process(Pid::from_child(&child), Signal::TERM).expect("signal bench");
    let status =
        wait_child(&mut child, WAIT).expect("bench ends within the wait, not at the start");
    assert_eq!(status.code(), Some(130));
    let out = child.wait_with_output().expect("output");
    assert!(stdout_of(&out).is_empty(), "no report: {}", stdout_of(&out));
    assert!(
        stderr_of(&out).contains("before the measured period began"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn churn_shards_split_the_slots_and_the_connection_rate() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let dir = temp_dir();
    let at = UNIX_EPOCH + Duration::from_millis((unix_s(SystemTime::now()) * 1e3) as u64 + 3_000);
    let logs: Vec<String> = (0..2)
        .map(|i| {
            let path = dir.path().join(format!("churn-{i}.hlog"));
            path.to_str().expect("a UTF-8 temp path").to_owned()
        })
        .collect();
    let children: Vec<Child> = (0..2)
        .map(|i| {
            let args = [
                server.endpoint("tcp://"),
                "--churn",
                "--conn-rate",
                "200",
                "-c",
                "5",
                "-d",
                "1s",
                "--warmup",
                "200ms",
                "--json",
                "--shard",
                &format!("{i}/2"),
                "--start-at",
                &rfc3339(at),
                "--save-hist",
                &logs[i],
            ];
            spawn_bench(&args.map(str::to_owned))
        })
        .collect();
    let reports: Vec<Value> = children
        .into_iter()
        .enumerate()
        .map(|(i, c)| report_of(c, &format!("churn shard {i}")))
        .collect();
    // Slots 0,2,4 / 1,3; the connection rate is cut in two: every other start of the run.
    for (r, slots) in reports.iter().zip([3, 2]) {
        assert_eq!(int(r, "connections"), slots, "{r:#}");
        assert_eq!(r["ok"], true, "{r:#}");
        let opened = int(&r["churn"], "connections_opened");
        assert!(opened.abs_diff(100) <= 5, "{opened} opened: {r:#}");
    }
    let opened: u64 = reports
        .iter()
        .map(|r| int(&r["churn"], "connections_opened"))
        .sum();

    let mut args = vec!["bench", "merge", "--json"];
    args.extend(logs.iter().map(String::as_str));
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(!stderr_of(&out).contains("missing"), "{}", stderr_of(&out));
    let merged: Value = serde_json::from_str(&stdout_of(&out)).expect("merged JSON");
    assert_eq!(int(&merged["churn"], "connections_opened"), opened);
    assert_eq!(int(&merged, "connections"), 5);
    let sent: u64 = reports.iter().map(|r| int(r, "messages_sent")).sum();
    assert_eq!(int(&merged, "messages_sent"), sent);
    assert_eq!(merged["ok"], true, "{merged:#}");
}
