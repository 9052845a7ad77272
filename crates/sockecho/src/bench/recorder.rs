//! Where results accumulate while a run goes on, without locks on the hot path.
//!
//! Each load thread owns one [`ThreadRecorder`]: the latency series and connect-time histogram
//! its connections record into (they all run on that thread, so a `RefCell` suffices), and the
//! totals they add when they finish. The coordinator merges the threads' recorders at the end;
//! how latencies are kept per interval is [`series`](super::series)'s business.
//! Live progress goes through [`LiveCounters`], written by one thread and read by the coordinator.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hdrhistogram::Histogram;

use super::report::{ConnectErrors, ErrorCounts};
pub use super::series::new_histogram;
use super::series::{Series, SeriesResult};

/// Message counts of the measured period, plus verification errors of the whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub messages_sent: u64,
    pub messages_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Open loop: messages of the measured period that were due but never went out (see
    /// [`Report::not_sent`](super::Report::not_sent)); not among `messages_sent`.
    pub not_sent: u64,
    pub errors: ErrorCounts,
    /// UDP sockets whose segmented sends (`--udp-offload`) the kernel refused, so that they
    /// sent one datagram per call from then on.
    pub offload_refused: u64,
    /// Churn: connections opened whose attempt began in the measured period.
    pub connections_opened: u64,
    /// Churn: attempts of the measured period that failed, by reason.
    pub connect_errors: ConnectErrors,
    /// Churn over TLS: the handshakes of `connections_opened`, full or resumed.
    pub tls_handshakes: TlsHandshakes,
}

/// TLS handshakes by kind. A client asking to resume shows here whether the server let it:
/// nothing else in a run tells an abbreviated handshake from a full one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsHandshakes {
    /// Full handshakes (certificate and signature), one after a HelloRetryRequest included.
    pub full: u64,
    /// Handshakes that resumed an earlier session.
    pub resumed: u64,
}

impl TlsHandshakes {
    /// Counts one completed handshake.
    pub fn count(&mut self, resumed: bool) {
        if resumed {
            self.resumed += 1;
        } else {
            self.full += 1;
        }
    }

    pub fn add(&mut self, other: &TlsHandshakes) {
        self.full += other.full;
        self.resumed += other.resumed;
    }
}

impl Totals {
    pub fn add(&mut self, other: &Totals) {
        self.messages_sent += other.messages_sent;
        self.messages_received += other.messages_received;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.not_sent += other.not_sent;
        self.errors.add(&other.errors);
        self.offload_refused += other.offload_refused;
        self.connections_opened += other.connections_opened;
        self.connect_errors.add(&other.connect_errors);
        self.tls_handshakes.add(&other.tls_handshakes);
    }
}

/// The kinds of verification error a message can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Mismatched,
    Truncated,
    Reordered,
    Duplicated,
    Lost,
}

impl Totals {
    /// Counts one error: under its kind if the message belongs to the measured period, under
    /// `warmup` otherwise (reordering aside), so the kinds add up with the measured message
    /// counts.
    pub fn fault(&mut self, fault: Fault, measured: bool) {
        let e = &mut self.errors;
        if !measured {
            // Order among warm-up messages says nothing about correctness worth failing on.
            if fault != Fault::Reordered {
                e.warmup += 1;
            }
            return;
        }
        match fault {
            Fault::Mismatched => e.mismatched += 1,
            Fault::Truncated => e.truncated += 1,
            Fault::Reordered => e.reordered += 1,
            Fault::Duplicated => e.duplicated += 1,
            Fault::Lost => e.lost += 1,
        }
    }
}

/// Counters one load thread publishes for the progress display.
#[derive(Debug, Default)]
#[repr(align(128))] // one per cache line pair, so threads never write the same line
pub struct LiveCounters {
    /// Replies received, warm-up included.
    pub replies: AtomicU64,
    /// Bytes of those replies.
    pub bytes: AtomicU64,
}

impl LiveCounters {
    /// Adds to the counters. Only the owning thread writes them, so a load and a store do the
    /// job of an atomic add without its locked instruction.
    #[inline]
    pub fn add(&self, replies: u64, bytes: u64) {
        self.replies
            .store(self.replies.load(Relaxed) + replies, Relaxed);
        self.bytes.store(self.bytes.load(Relaxed) + bytes, Relaxed);
    }
}

/// What one load thread accumulates.
#[derive(Debug)]
pub struct ThreadRecorder {
    /// Round-trip latencies, by interval.
    pub series: RefCell<Series>,
    pub connect: RefCell<Histogram<u64>>,
    /// Churn: from each measured connection's start to its first verified reply.
    pub first_echo: RefCell<Histogram<u64>>,
    pub totals: RefCell<Totals>,
}

impl Default for ThreadRecorder {
    fn default() -> Self {
        ThreadRecorder {
            series: RefCell::new(Series::default()),
            connect: RefCell::new(new_histogram()),
            first_echo: RefCell::new(new_histogram()),
            totals: RefCell::new(Totals::default()),
        }
    }
}

/// A thread's results, handed to the coordinator.
#[derive(Debug, Clone)]
pub struct ThreadResult {
    pub latency: Histogram<u64>,
    pub connect: Histogram<u64>,
    pub first_echo: Histogram<u64>,
    pub totals: Totals,
    pub series: SeriesResult,
}

impl ThreadRecorder {
    /// Takes what was recorded, leaving the recorder empty.
    pub fn take_result(&self) -> ThreadResult {
        let (latency, series) = self.series.borrow_mut().finish();
        ThreadResult {
            latency,
            connect: self.connect.replace(new_histogram()),
            first_echo: self.first_echo.replace(new_histogram()),
            totals: std::mem::take(&mut *self.totals.borrow_mut()),
            series,
        }
    }

    /// Counts an error of the measured period noticed at clock time `now`, for the intervals.
    pub fn errors_at(&self, now: u64, n: u64) {
        self.series.borrow_mut().errors(now, n);
    }
}

impl ThreadResult {
    /// Folds another thread's results into this one.
    pub fn merge(&mut self, other: &ThreadResult) {
        // Both histograms were made by `new_histogram` with the same bounds, so adding cannot
        // fail for lack of range.
        self.latency
            .add(&other.latency)
            .expect("histograms of equal bounds add");
        self.connect
            .add(&other.connect)
            .expect("histograms of equal bounds add");
        self.first_echo
            .add(&other.first_echo)
            .expect("histograms of equal bounds add");
        self.totals.add(&other.totals);
    }
}
