//! HdrHistogram log files: the latency histogram of a run in the standard interchange form, so
//! HdrHistogram's own tools (`HistogramLogProcessor`, HdrHistogram plotters) read it, and
//! `sockecho bench merge` can combine several runs.
//!
//! The file is a histogram log as HdrHistogram's `HistogramLogWriter` writes it: header comments,
//! a legend, then one line per interval histogram — start time (seconds since the epoch), length
//! (seconds), maximum (milliseconds) and the histogram in compressed V2 encoding, base64. Values
//! are nanoseconds, the unit those tools assume by default. A run writes two intervals covering
//! its measured period: the round-trip latencies (untagged, what other tools pick up) and the
//! connection times (tagged `connect`). A `#[sockecho-report {...}]` comment carries the run's
//! JSON report, so a merge can add up counts and errors too; tools that do not know it skip it as
//! a comment.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};

use super::Outcome;
use super::recorder::new_histogram;
use super::report::Report;

/// The tag of the connection-time interval.
pub const CONNECT_TAG: &str = "connect";

/// Prefix of the comment line that carries the run's report.
const REPORT_PREFIX: &str = "#[sockecho-report ";

/// Why a histogram log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum HistLogError {
    #[error("cannot write the histogram log: {0}")]
    Write(#[source] io::Error),
    #[error("cannot encode a histogram: {0}")]
    Encode(String),
    #[error("line {line} is not a histogram log entry")]
    Parse { line: usize },
    #[error("the histogram on line {line} cannot be decoded: {problem}")]
    Decode { line: usize, problem: String },
    #[error("the embedded sockecho report cannot be read: {0}")]
    Report(#[source] serde_json::Error),
    #[error("no latency histogram in the log")]
    Empty,
}

/// Writes the run's histograms and report as a histogram log.
pub fn write(out: &mut impl Write, outcome: &Outcome) -> Result<(), HistLogError> {
    let start = outcome
        .measured_from
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let length = Duration::from_secs_f64(outcome.report.duration_s);
    let report = serde_json::to_string(&outcome.report).map_err(HistLogError::Report)?;
    let header = format!(
        "#[Logged with sockecho {} bench]\n\
         #[Histogram log format version 1.3]\n\
         #[StartTime: {:.3} (seconds since epoch)]\n\
         {REPORT_PREFIX}{report}]\n\
         \"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
        env!("CARGO_PKG_VERSION"),
        start.as_secs_f64(),
    );
    out.write_all(header.as_bytes())
        .map_err(HistLogError::Write)?;
    let mut serializer = V2DeflateSerializer::new();
    let mut log = IntervalLogWriterBuilder::new()
        // Interval_Max in milliseconds, as the Java writer puts it for nanosecond values.
        .with_max_value_divisor(1e6)
        .begin_log_with(out, &mut serializer)
        .map_err(HistLogError::Write)?;
    let encode = |e| HistLogError::Encode(format!("{e}"));
    log.write_histogram(&outcome.latency, start, length, None)
        .map_err(encode)?;
    // "connect" has none of the characters a tag may not hold.
    let tag = Tag::new(CONNECT_TAG);
    log.write_histogram(&outcome.connect, start, length, tag)
        .map_err(encode)?;
    Ok(())
}

/// What one log file holds.
#[derive(Debug, Clone)]
pub struct LoggedRun {
    /// The report, when the log was written by sockecho.
    pub report: Option<Report>,
    /// Every untagged interval added together (nanoseconds).
    pub latency: Histogram<u64>,
    /// Every `connect` interval added together.
    pub connect: Histogram<u64>,
    /// When the earliest interval began.
    pub start: SystemTime,
    /// When the latest interval ended.
    pub end: SystemTime,
}

/// Reads a histogram log: sockecho's own, or any other tool's (intervals with other tags are
/// ignored, untagged ones are taken as latencies).
pub fn read(bytes: &[u8]) -> Result<LoggedRun, HistLogError> {
    let text = String::from_utf8_lossy(bytes);
    let mut report = None;
    for line in text.lines() {
        if let Some(json) = line
            .strip_prefix(REPORT_PREFIX)
            .and_then(|rest| rest.strip_suffix(']'))
        {
            report = Some(serde_json::from_str::<Report>(json).map_err(HistLogError::Report)?);
        }
    }
    let mut latency = new_histogram();
    let mut connect = new_histogram();
    let mut deserializer = Deserializer::new();
    let mut span: Option<(Duration, Duration)> = None;
    let mut any = false;
    for entry in IntervalLogIterator::new(bytes) {
        let entry = entry.map_err(|e| {
            let offset = match e {
                hdrhistogram::serialization::interval_log::LogIteratorError::ParseError {
                    offset,
                } => offset,
            };
            HistLogError::Parse {
                line: line_of(bytes, offset),
            }
        })?;
        let LogEntry::Interval(interval) = entry else {
            continue;
        };
        let line = line_of_str(bytes, interval.encoded_histogram());
        let target = match interval.tag().map(|t| t.as_str()) {
            None => &mut latency,
            Some(CONNECT_TAG) => &mut connect,
            Some(_) => continue,
        };
        let decode = |problem: String| HistLogError::Decode { line, problem };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .map_err(|e| decode(e.to_string()))?;
        let h: Histogram<u64> = deserializer
            .deserialize(&mut raw.as_slice())
            .map_err(|e| decode(e.to_string()))?;
        target.add(&h).map_err(|e| decode(e.to_string()))?;
        if interval.tag().is_none() {
            any = true;
            let from = interval.start_timestamp();
            let to = from + interval.duration();
            span = Some(match span {
                None => (from, to),
                Some((a, b)) => (a.min(from), b.max(to)),
            });
        }
    }
    if !any {
        return Err(HistLogError::Empty);
    }
    let (from, to) = span.unwrap_or_default();
    Ok(LoggedRun {
        report,
        latency,
        connect,
        start: UNIX_EPOCH + from,
        end: UNIX_EPOCH + to,
    })
}

/// The 1-based line number of byte `offset`.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    1 + bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// The line number of a slice that points into `bytes`.
fn line_of_str(bytes: &[u8], part: &str) -> usize {
    let offset = (part.as_ptr() as usize).saturating_sub(bytes.as_ptr() as usize);
    line_of(bytes, offset)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bench::report::{ErrorCounts, LatencySummary};

    pub(crate) fn outcome(values: &[u64], start_secs: u64, duration_s: f64) -> Outcome {
        let mut latency = new_histogram();
        for &v in values {
            latency.record(v).unwrap();
        }
        let mut connect = new_histogram();
        connect.record(50_000).unwrap();
        let mut report = Report {
            endpoint: "tcp://127.0.0.1:7".into(),
            transport: "tcp".into(),
            connections: 1,
            connections_established: 1,
            size: 64,
            pipeline: 1,
            mode: "closed".into(),
            rate: None,
            threads: 1,
            io: "epoll".into(),
            udp_offload: false,
            duration_s,
            warmup_s: 0.0,
            timeout_s: 1.0,
            messages_sent: values.len() as u64,
            messages_received: values.len() as u64,
            bytes_sent: 64 * values.len() as u64,
            bytes_received: 64 * values.len() as u64,
            not_sent: 0,
            msgs_per_s: 0.0,
            bytes_per_s_sent: 0.0,
            bytes_per_s_received: 0.0,
            latency_us: LatencySummary::from_histogram(&latency),
            connect_us: LatencySummary::from_histogram(&connect),
            errors: ErrorCounts::default(),
            client_cpu_s: 0.5,
            client_cpu_us_per_msg: None,
            ok: false,
            interrupted: false,
            runs: 1,
            churn: None,
        };
        report.derive_rates();
        Outcome {
            report,
            latency,
            connect,
            measured_from: UNIX_EPOCH + Duration::from_secs(start_secs),
        }
    }

    #[test]
    fn a_log_round_trips() {
        let run = outcome(&[1_000, 20_000, 300_000, 4_000_000], 1_700_000_000, 2.0);
        let mut buf = Vec::new();
        write(&mut buf, &run).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(
            text.contains("#[Histogram log format version 1.3]"),
            "{text}"
        );
        assert!(text.contains("#[StartTime: 1700000000.000"), "{text}");
        assert!(
            text.contains("\n1700000000.000,2.000,4.002,HISTF"),
            "{text}"
        );
        assert!(
            text.contains("\nTag=connect,1700000000.000,2.000,"),
            "{text}"
        );
        let back = read(&buf).unwrap();
        assert_eq!(back.latency, run.latency);
        assert_eq!(back.connect, run.connect);
        assert_eq!(back.report.as_ref(), Some(&run.report));
        assert_eq!(
            back.end.duration_since(back.start).unwrap(),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn foreign_logs_and_garbage() {
        // A Java-style log with only an untagged interval and no sockecho report.
        let run = outcome(&[5_000, 6_000], 100, 1.0);
        let mut buf = Vec::new();
        write(&mut buf, &run).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let foreign: String = text
            .lines()
            .filter(|l| !l.starts_with(REPORT_PREFIX) && !l.starts_with("Tag="))
            .map(|l| format!("{l}\n"))
            .collect();
        let back = read(foreign.as_bytes()).unwrap();
        assert!(back.report.is_none());
        assert_eq!(back.latency.len(), 2);
        assert!(back.connect.is_empty());

        assert!(matches!(
            read(b"#only comments\n"),
            Err(HistLogError::Empty)
        ));
        assert!(matches!(
            read(b"1.0,2.0,3.0,notbase64!\n"),
            Err(HistLogError::Decode { line: 1, .. } | HistLogError::Parse { .. })
        ));
    }
}
