//! HdrHistogram interval logs (`--save-hist`): a run's latencies, interval by interval, in the
//! standard interchange form, so HdrHistogram's own tools (`HistogramLogProcessor`,
//! HistogramLogAnalyzer, HdrLogProcessing) read it, and `sockecho bench merge` can combine runs.
//!
//! The file is a histogram log as HdrHistogram's `HistogramLogWriter` writes it: header comments
//! with the StartTime and BaseTime (the start of the measured period, seconds since the epoch),
//! a legend, then one line per interval histogram — start (seconds after the BaseTime), length
//! (seconds), maximum (milliseconds) and the histogram in compressed V2 encoding, base64. Values
//! are nanoseconds, the unit those tools assume by default. The round-trip latencies come one
//! untagged interval per `--interval` (what other tools pick up); the connection times come as
//! one interval tagged `connect` covering the measured period. A `#[sockecho-report {...}]`
//! comment carries the run's JSON report, so a merge can add up counts and errors too; tools
//! that do not know it skip it as a comment.
//!
//! Logs of older versions held a single untagged interval with an absolute timestamp; they
//! read as a run of one interval.

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
use super::report::{Report, round_to_millis};
use super::series::PackedHistogram;

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

/// Writes the run's histograms and report as a histogram interval log.
pub fn write(out: &mut impl Write, outcome: &Outcome) -> Result<(), HistLogError> {
    let start = outcome
        .measured_from
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let length = Duration::from_secs_f64(outcome.report.duration_s);
    let report = serde_json::to_string(&outcome.report).map_err(HistLogError::Report)?;
    // Interval timestamps are seconds from the BaseTime, as HdrHistogram's own recorders
    // write them; both header times are the start of the measured period, to the millisecond
    // the format holds (as the report's `start_unix_s`).
    let base = round_to_millis(start);
    let header = format!(
        "#[Logged with sockecho {} bench]\n\
         #[Histogram log format version 1.3]\n\
         #[StartTime: {secs:.3} (seconds since epoch)]\n\
         #[BaseTime: {secs:.3} (seconds since epoch)]\n\
         {REPORT_PREFIX}{report}]\n\
         \"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
        env!("CARGO_PKG_VERSION"),
        secs = base.as_secs_f64(),
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
    // "connect" has none of the characters a tag may not hold.
    let tag = Tag::new(CONNECT_TAG);
    log.write_histogram(&outcome.connect, Duration::ZERO, length, tag)
        .map_err(encode)?;
    if outcome.intervals.is_empty() {
        log.write_histogram(&outcome.latency, Duration::ZERO, length, None)
            .map_err(encode)?;
    }
    for interval in &outcome.intervals {
        log.write_histogram(
            &interval.latency.unpack(),
            interval.start,
            interval.length,
            None,
        )
        .map_err(encode)?;
    }
    Ok(())
}

/// One untagged interval of a log, placed in wall-clock time.
#[derive(Debug, Clone)]
pub struct LoggedInterval {
    pub start: SystemTime,
    pub length: Duration,
    pub latency: PackedHistogram,
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
    /// The untagged intervals, in the order of the log: one per `--interval`, or a single
    /// one covering the whole run in logs written before intervals existed.
    pub intervals: Vec<LoggedInterval>,
}

/// Seconds in a year: interval timestamps this much below the StartTime are offsets from it,
/// as HdrHistogram's Java reader decides for logs without a BaseTime.
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// Reads a histogram log: sockecho's own, of either form (one interval per `--interval`, or
/// the single interval of older versions), or any other tool's (intervals with other tags are
/// ignored, untagged ones are taken as latencies). Timestamps are placed as HdrHistogram's
/// readers place them: after the BaseTime if there is one, else after the StartTime if they
/// are small, else as seconds since the epoch.
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
    let mut intervals = Vec::new();
    let mut deserializer = Deserializer::new();
    let mut span: Option<(Duration, Duration)> = None;
    let mut start_time = None;
    let mut base_time = None;
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
        let interval = match entry {
            LogEntry::StartTime(t) => {
                start_time = Some(t);
                continue;
            }
            LogEntry::BaseTime(t) => {
                base_time = Some(t);
                continue;
            }
            LogEntry::Interval(interval) => interval,
        };
        let line = line_of_str(bytes, interval.encoded_histogram());
        let tagged_connect = match interval.tag().map(|t| t.as_str()) {
            None => false,
            Some(CONNECT_TAG) => true,
            Some(_) => continue,
        };
        let decode = |problem: String| HistLogError::Decode { line, problem };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .map_err(|e| decode(e.to_string()))?;
        let decoded: Histogram<u64> = deserializer
            .deserialize(&mut raw.as_slice())
            .map_err(|e| decode(e.to_string()))?;
        let mut h = new_histogram();
        h.add(&decoded).map_err(|e| decode(e.to_string()))?;
        if tagged_connect {
            connect.add(&h).map_err(|e| decode(e.to_string()))?;
            continue;
        }
        latency.add(&h).map_err(|e| decode(e.to_string()))?;
        let stamp = interval.start_timestamp();
        let base = match (base_time, start_time) {
            (Some(base), _) => base,
            (None, Some(start)) if stamp + YEAR < start => start,
            _ => Duration::ZERO,
        };
        let from = base + stamp;
        let to = from + interval.duration();
        span = Some(match span {
            None => (from, to),
            Some((a, b)) => (a.min(from), b.max(to)),
        });
        intervals.push(LoggedInterval {
            start: UNIX_EPOCH + from,
            length: interval.duration(),
            latency: PackedHistogram::pack(&h),
        });
    }
    let Some((from, to)) = span else {
        return Err(HistLogError::Empty);
    };
    Ok(LoggedRun {
        report,
        latency,
        connect,
        start: UNIX_EPOCH + from,
        end: UNIX_EPOCH + to,
        intervals,
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
    use crate::bench::report::{ErrorCounts, LatencySummary, unix_seconds};
    use crate::bench::series::{IntervalHistogram, interval_entry};

    /// A run of one interval `duration_s` long holding `values` (nanoseconds).
    pub(crate) fn outcome(values: &[u64], start_secs: u64, duration_s: f64) -> Outcome {
        series(&[values.to_vec()], start_secs, duration_s)
    }

    /// A run with one interval of `interval_s` per entry of `per_interval`.
    pub(crate) fn series(per_interval: &[Vec<u64>], start_secs: u64, interval_s: f64) -> Outcome {
        let mut latency = new_histogram();
        let mut intervals = Vec::new();
        let mut histograms = Vec::new();
        let length = Duration::from_secs_f64(interval_s);
        for (i, values) in per_interval.iter().enumerate() {
            let mut h = new_histogram();
            for &v in values {
                h.record(v).unwrap();
            }
            latency.add(&h).unwrap();
            let start = length * i as u32;
            intervals.push(interval_entry(start, length, &h, 0, 1));
            histograms.push(IntervalHistogram {
                start,
                length,
                latency: PackedHistogram::pack(&h),
            });
        }
        let n = latency.len();
        let mut connect = new_histogram();
        connect.record(50_000).unwrap();
        let measured_from = UNIX_EPOCH + Duration::from_secs(start_secs);
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
            duration_s: interval_s * per_interval.len() as f64,
            warmup_s: 0.0,
            timeout_s: 1.0,
            messages_sent: n,
            messages_received: n,
            bytes_sent: 64 * n,
            bytes_received: 64 * n,
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
            start_unix_s: Some(unix_seconds(measured_from)),
            intervals,
            thresholds: Vec::new(),
            periods_overlap: None,
            churn: None,
        };
        report.derive_rates();
        Outcome {
            report,
            latency,
            connect,
            measured_from,
            intervals: histograms,
        }
    }

    #[test]
    fn an_interval_log_round_trips() {
        let run = series(
            &[vec![1_000, 20_000], vec![], vec![300_000, 4_000_000]],
            1_700_000_000,
            1.0,
        );
        let mut buf = Vec::new();
        write(&mut buf, &run).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(
            text.contains("#[Histogram log format version 1.3]\n"),
            "{text}"
        );
        assert!(
            text.contains("#[StartTime: 1700000000.000 (seconds since epoch)]\n"),
            "{text}"
        );
        assert!(
            text.contains("#[BaseTime: 1700000000.000 (seconds since epoch)]\n"),
            "{text}"
        );
        assert!(text.contains("\n0.000,1.000,0.020,HISTF"), "{text}");
        assert!(text.contains("\n1.000,1.000,0.000,HISTF"), "{text}");
        assert!(text.contains("\n2.000,1.000,4.002,HISTF"), "{text}");
        assert!(text.contains("\nTag=connect,0.000,3.000,"), "{text}");
        // The legend comes before the first interval.
        assert!(text.find("\"StartTimestamp\"").unwrap() < text.find("\n0.000,").unwrap());

        let back = read(&buf).unwrap();
        assert_eq!(back.latency, run.latency);
        assert_eq!(back.connect, run.connect);
        assert_eq!(back.report.as_ref(), Some(&run.report));
        assert_eq!(back.intervals.len(), 3);
        let counts: Vec<u64> = back
            .intervals
            .iter()
            .map(|i| i.latency.unpack().len())
            .collect();
        assert_eq!(counts, [2, 0, 2]);
        assert_eq!(
            back.intervals[2].start,
            UNIX_EPOCH + Duration::from_secs(1_700_000_002)
        );
        assert_eq!(back.start, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(
            back.end.duration_since(back.start).unwrap(),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn the_single_interval_logs_of_older_versions_still_read() {
        // Written by the version before interval logs: absolute timestamps, no BaseTime.
        let old = include_bytes!("testdata/single-interval.hlog");
        let back = read(old).unwrap();
        assert_eq!(back.latency.len(), 5);
        assert_eq!(back.connect.len(), 1);
        assert_eq!(back.intervals.len(), 1);
        assert_eq!(back.start, UNIX_EPOCH + Duration::from_secs(1_765_000_000));
        assert_eq!(
            back.end.duration_since(back.start).unwrap(),
            Duration::from_secs(2)
        );
        let report = back.report.unwrap();
        assert_eq!(report.messages_received, 5);
        assert!(report.intervals.is_empty());
        assert_eq!(report.start_unix_s, None);
    }

    #[test]
    fn relative_timestamps_without_a_base_time_follow_the_start_time() {
        let run = series(&[vec![5_000], vec![6_000]], 1_000_000_000, 1.0);
        let mut buf = Vec::new();
        write(&mut buf, &run).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let without_base: String = text
            .lines()
            .filter(|l| !l.starts_with("#[BaseTime"))
            .map(|l| format!("{l}\n"))
            .collect();
        let back = read(without_base.as_bytes()).unwrap();
        assert_eq!(
            back.intervals[1].start,
            UNIX_EPOCH + Duration::from_secs(1_000_000_001)
        );
    }

    #[test]
    fn foreign_logs_and_garbage() {
        // A Java-style log with only untagged intervals and no sockecho report.
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
