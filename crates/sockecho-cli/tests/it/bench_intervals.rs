//! `sockecho bench`'s time series and outputs: the `intervals` of the report and of the
//! `--save-hist` interval log, their round trip through `bench merge`, `--threshold` verdicts
//! and exit codes, `--export` and `--save-hgrm`, and output files checked before the load.

use std::time::Instant;

use crate::support::{
    Server, bench_json, closed_tcp_port, int, num, run, stderr_of, stdout_of, temp_dir,
};

/// The untagged interval lines of a histogram log: (start, length) in seconds.
fn interval_lines(log: &str) -> Vec<(f64, f64)> {
    log.lines()
        .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 4, "{l}");
            assert!(f[3].starts_with("HISTF"), "{l}");
            (f[0].parse().expect("start"), f[1].parse().expect("length"))
        })
        .collect()
}

#[test]
fn intervals_in_the_report_and_the_log_round_trip_through_merge() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let dir = temp_dir();
    let mut reports = Vec::new();
    let mut paths = Vec::new();
    for name in ["a.hlog", "b.hlog"] {
        let path = dir.path().join(name);
        let p = path.to_str().expect("utf-8 path").to_owned();
        let (code, report, out) = bench_json(&[
            server.endpoint("tcp://"),
            "-c",
            "2",
            "-d",
            "600ms",
            "--warmup",
            "100ms",
            "--interval",
            "200ms",
            "--save-hist",
            &p,
        ]);
        assert_eq!(code, 0, "{}", stderr_of(&out));
        let intervals = report["intervals"].as_array().expect("intervals");
        assert_eq!(intervals.len(), 3, "{report:#}");
        for (i, iv) in intervals.iter().enumerate() {
            assert_eq!(num(iv, "start_s"), 0.2 * i as f64);
            assert_eq!(num(iv, "duration_s"), 0.2);
            assert_eq!(int(iv, "connections_open"), 2);
            assert_eq!(int(iv, "errors"), 0);
            let n = int(iv, "messages");
            assert!(
                (num(iv, "msgs_per_s") - n as f64 / 0.2).abs() < 0.01,
                "{iv}"
            );
            assert!(num(iv, "latency_us.p50") <= num(iv, "latency_us.max"));
        }
        let in_intervals: u64 = intervals.iter().map(|iv| int(iv, "messages")).sum();
        assert_eq!(in_intervals, int(&report, "messages_received"));
        assert!(num(&report, "start_unix_s") > 1.7e9);

        let log = std::fs::read_to_string(&path).expect("log written");
        assert!(log.contains("\n#[BaseTime: "), "{log}");
        assert_eq!(
            interval_lines(&log),
            [(0.0, 0.2), (0.2, 0.2), (0.4, 0.2)],
            "{log}"
        );
        assert_eq!(log.matches("\nTag=connect,").count(), 1, "{log}");
        reports.push(report);
        paths.push(p);
    }

    // One log merged alone gives back its own intervals.
    let (code, alone, out) = bench_json(&["merge", &paths[0]]);
    assert_eq!(code, 0, "{}", stderr_of(&out));
    assert_eq!(alone["intervals"], reports[0]["intervals"]);

    // The two runs one after the other: aligned on wall-clock time, their periods apart.
    let (code, merged, out) = bench_json(&["merge", &paths[0], &paths[1]]);
    assert_eq!(code, 0, "{}", stderr_of(&out));
    assert_eq!(merged["periods_overlap"], false);
    assert!(
        stderr_of(&out).contains("measured periods do not overlap"),
        "{}",
        stderr_of(&out)
    );
    let merged_intervals = merged["intervals"].as_array().expect("intervals");
    let total: u64 = merged_intervals.iter().map(|iv| int(iv, "messages")).sum();
    assert_eq!(
        total,
        int(&reports[0], "messages_received") + int(&reports[1], "messages_received")
    );
    // The first run's intervals open the merged series unchanged.
    for i in 0..3 {
        assert_eq!(
            merged_intervals[i]["messages"], reports[0]["intervals"][i]["messages"],
            "interval {i}"
        );
    }
    assert_eq!(
        num(&merged, "start_unix_s"),
        num(&reports[0], "start_unix_s")
    );
}

#[test]
fn thresholds_pass_and_fail_with_the_right_exit_code() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let ep = server.endpoint("tcp://");
    let base = [ep, "-d", "300ms", "--warmup", "0s"];

    let mut args = base.to_vec();
    args.extend(["--threshold", "p99<10s", "--threshold", "errors==0,rate>0"]);
    let (code, report, out) = bench_json(&args);
    assert_eq!(code, 0, "{}", stderr_of(&out));
    let results = report["thresholds"].as_array().expect("thresholds");
    assert_eq!(results.len(), 3, "{report:#}");
    assert!(results.iter().all(|t| t["passed"] == true), "{report:#}");
    assert_eq!(results[0]["threshold"], "p99<10s");
    assert_eq!(results[0]["unit"], "us");
    assert_eq!(num(&results[0], "limit"), 1e7);
    assert_eq!(num(&results[0], "actual"), num(&report, "latency_us.p99"));
    let err = stderr_of(&out);
    assert!(err.contains("threshold p99<10s"), "{err}");
    assert!(err.contains("passed"), "{err}");

    let mut args = base.to_vec();
    args.extend([
        "--threshold",
        "p50<1ns",
        "--threshold",
        "rate>=1000000000",
        "--threshold",
        "errors==0",
    ]);
    let (code, report, out) = bench_json(&args);
    assert_eq!(code, 1, "{}", stderr_of(&out));
    // The run itself was fine; only the thresholds failed.
    assert_eq!(report["ok"], true);
    let err = stderr_of(&out);
    assert!(err.contains("error: threshold p50<1ns failed"), "{err}");
    assert!(
        err.contains("error: threshold rate>=1000000000 failed"),
        "{err}"
    );
    assert!(!err.contains("error: threshold errors==0"), "{err}");
    assert!(!err.contains("the benchmark failed"), "{err}");

    // Thresholds on a merge.
    let dir = temp_dir();
    let log = dir.path().join("run.hlog");
    let log = log.to_str().expect("utf-8");
    let mut args = base.to_vec();
    args.extend(["--save-hist", log]);
    let (code, _, _) = bench_json(&args);
    assert_eq!(code, 0);
    let out = run(&["bench", "merge", log, "--threshold", "max<1ns"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("error: threshold max<1ns failed"));
    let out = run(&["bench", "merge", log, "--threshold", "errors.lost==0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
}

#[test]
fn a_bad_threshold_is_a_usage_error_before_any_load() {
    for (cond, problem) in [
        ("p99 2ms", "no comparison"),
        ("p98<2ms", "unknown metric"),
        ("p99<2", "needs a unit"),
        ("errors.bogus==0", "not an error kind"),
    ] {
        let out = run(&["bench", "tcp://127.0.0.1:9", "--threshold", cond]);
        assert_eq!(out.status.code(), Some(2), "{cond}");
        let err = stderr_of(&out);
        assert!(err.contains(problem), "{cond}: {err}");
        assert!(err.contains("--threshold"), "{cond}: {err}");
    }
    for (args, problem) in [
        (["--rates", "5k:1k:1k"], "ends below its start"),
        (["--find-max", "p99"], "no comparison"),
        (["--margin", "150%"], "not a fraction below 1"),
        (["--interval", "0s"], "at least 1ms"),
    ] {
        let mut argv = vec!["bench", "tcp://127.0.0.1:9"];
        argv.extend(args);
        let out = run(&argv);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr_of(&out).contains(problem),
            "{args:?}: {}",
            stderr_of(&out)
        );
    }
}

#[test]
fn exports_and_the_percentile_distribution() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let ep = server.endpoint("tcp://");
    let dir = temp_dir();
    let hgrm = dir.path().join("run.hgrm");
    let out = run(&[
        "bench",
        ep,
        "-d",
        "300ms",
        "--warmup",
        "0s",
        "--export",
        "csv",
        "--save-hgrm",
        hgrm.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let csv = stdout_of(&out);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[0].starts_with("endpoint,transport,mode,connections,size,rate,"),
        "{csv}"
    );
    let header: Vec<&str> = lines[0].split(',').collect();
    let row: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(header.len(), row.len(), "{csv}");
    assert_eq!(row[0], ep);
    assert_eq!(
        row[header.iter().position(|h| *h == "ok").expect("ok")],
        "true"
    );

    let text = std::fs::read_to_string(&hgrm).expect("hgrm written");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "       Value     Percentile TotalCount 1/(1-Percentile)"
    );
    let total = lines
        .iter()
        .find(|l| l.starts_with("#[Max"))
        .expect("footer");
    assert!(total.contains("Total count"), "{text}");
    let last_step = lines[lines.len() - 4];
    assert!(last_step.contains(" 1.000000000000 "), "{text}");

    let out = run(&[
        "bench", ep, "-d", "200ms", "--warmup", "0s", "--export", "markdown",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let md = stdout_of(&out);
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(lines.len(), 3, "{md}");
    assert!(
        lines[0].starts_with("| endpoint | transport | mode |"),
        "{md}"
    );
    assert!(lines[1].starts_with("| --- | --- | --- | ---: |"), "{md}");

    let out = run(&["bench", ep, "--export", "csv", "--json"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unwritable_output_files_fail_before_the_run() {
    let dir = temp_dir();
    let missing = dir.path().join("no-such-dir").join("x.hgrm");
    let began = Instant::now();
    // The endpoint is closed: an error about it would mean the run was tried first.
    let out = run(&[
        "bench",
        &format!("tcp://{}", closed_tcp_port()),
        "-d",
        "10s",
        "--save-hgrm",
        missing.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(
        err.contains("cannot write the percentile distribution"),
        "{err}"
    );
    assert!(err.contains("x.hgrm (--save-hgrm)"), "{err}");
    assert!(began.elapsed().as_secs() < 5);

    // A run that ends without a report leaves no empty file behind.
    let log = dir.path().join("never.hlog");
    let out = run(&[
        "bench",
        &format!("tcp://{}", closed_tcp_port()),
        "--save-hist",
        log.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(!log.exists());
}
