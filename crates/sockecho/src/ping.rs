//! Ping for echo servers: one message per interval, each reply timed and checked, over any
//! transport, with a summary like `ping`'s at the end.
//!
//! Messages use the benchmark's format ([`crate::payload`]), so each reply names its
//! sequence number and a corrupted, late or stray reply is told apart from the one awaited.
//! Sends keep to the interval whatever the replies do; a reply that does not come within the
//! timeout is reported as a timeout for its sequence number, never waited on forever.
//!
//! Replies are read while a message is still being written: an echo server writes back what it
//! has read, so a message larger than the socket buffers would otherwise leave both sides
//! waiting on a full buffer. Every wait (connecting, writing, reading) also listens to the
//! stop future, so Ctrl-C ends a session whatever it is waiting on.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::{Instant, MissedTickBehavior};

use crate::bench::format_size;
use crate::bench::options::MAX_SIZE;
use crate::connect::{
    BoxStream, ConnectError, ConnectOptions, DatagramSocket, MAX_UDP_SIZE, Peer,
    connect_stream_with, probe_datagram, resolve,
};
use crate::net_error::{describe_connect_error, plain};
use crate::payload::{HEADER_LEN, Pattern, parse_header, seq_prefix};
use crate::{Endpoint, Host, HostPort};

/// What to ping and how.
#[derive(Debug, Clone)]
pub struct PingConfig {
    pub endpoint: Endpoint,
    /// Time between two sends.
    pub interval: Duration,
    /// Stop after this many messages (and their replies or timeouts); `None` runs until stopped.
    pub count: Option<u64>,
    /// Bytes per message.
    pub size: usize,
    /// How long a reply may take before it is reported as a timeout.
    pub timeout: Duration,
    /// TLS settings for `tls://` endpoints.
    pub connect: ConnectOptions,
}

/// Why ping could not start.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("invalid ping settings: {0}")]
    Invalid(String),
    #[error("cannot reach {endpoint}: {problem}")]
    Unreachable { endpoint: Endpoint, problem: String },
}

/// Something that happened, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum PingEvent {
    /// The connection (or socket) is open to `peer`; streams report how long connecting took.
    Started {
        peer: Endpoint,
        connect: Option<Duration>,
    },
    /// A correct reply.
    Reply {
        seq: u64,
        bytes: usize,
        rtt: Duration,
    },
    /// A reply to message `seq` whose content or length is wrong; `seq` is `None` when the
    /// reply cannot be matched to any message.
    Corrupt {
        seq: Option<u64>,
        bytes: usize,
        rtt: Option<Duration>,
    },
    /// No reply to message `seq` within the timeout.
    Timeout { seq: u64 },
    /// A reply to a message already reported as timed out.
    Late { seq: u64, rtt: Duration },
    /// A second correct reply to a message already answered.
    Duplicate { seq: u64 },
    /// Sending message `seq` (or receiving, when `None`) failed, e.g. connection refused.
    Error { seq: Option<u64>, problem: String },
}

/// Round-trip statistics of the correct replies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RttStats {
    pub min: Duration,
    pub avg: Duration,
    pub max: Duration,
    /// Standard deviation, as `ping` reports it.
    pub mdev: Duration,
}

/// The result of a ping session.
#[derive(Debug, Clone, PartialEq)]
pub struct PingSummary {
    /// The address pinged.
    pub peer: Endpoint,
    pub sent: u64,
    /// Correct replies.
    pub received: u64,
    pub corrupt: u64,
    pub timeouts: u64,
    pub duplicates: u64,
    pub errors: u64,
    /// From the first send to the end.
    pub elapsed: Duration,
    /// `None` when no correct reply came.
    pub rtt: Option<RttStats>,
    /// Why the session ended early, if the connection broke.
    pub ended_by: Option<String>,
}

impl PingSummary {
    /// Nothing sent yet to `peer`.
    fn empty(peer: Endpoint) -> PingSummary {
        PingSummary {
            peer,
            sent: 0,
            received: 0,
            corrupt: 0,
            timeouts: 0,
            duplicates: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            rtt: None,
            ended_by: None,
        }
    }

    /// Messages without a correct reply, as a percentage of those sent.
    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        (self.sent - self.received) as f64 * 100.0 / self.sent as f64
    }

    /// Whether every message sent got its correct reply (the exit status, like ping's).
    pub fn all_replied(&self) -> bool {
        self.sent > 0 && self.received == self.sent && self.ended_by.is_none()
    }
}

/// The receiving side of the open connection or socket.
enum Rx {
    Stream(ReadHalf<BoxStream>),
    Datagram(Arc<DatagramSocket>),
}

/// The sending side, used at the same time as [`Rx`].
enum Tx {
    Stream(WriteHalf<BoxStream>),
    Datagram(Arc<DatagramSocket>),
}

/// The open connection or socket, split so that a reply is read while a message is written.
struct Link {
    rx: Rx,
    tx: Tx,
}

impl Link {
    fn stream(stream: BoxStream) -> Link {
        let (rx, tx) = tokio::io::split(stream);
        Link {
            rx: Rx::Stream(rx),
            tx: Tx::Stream(tx),
        }
    }

    fn datagram(socket: DatagramSocket) -> Link {
        let socket = Arc::new(socket);
        Link {
            rx: Rx::Datagram(socket.clone()),
            tx: Tx::Datagram(socket),
        }
    }
}

/// A message being written: its bytes and how many have gone out.
struct Pending {
    seq: u64,
    message: Vec<u8>,
    written: usize,
}

/// Timed-out messages remembered for their late replies.
const TIMED_OUT_KEPT: usize = 64;

/// Connection number in ping messages.
const PING_CONN: u32 = 0x5049_4E47; // "PING"

/// Pings as `config` says until the count is done or `stop` completes (e.g. on Ctrl-C),
/// reporting each event to `on_event`, and returns the summary.
pub async fn ping(
    config: &PingConfig,
    mut on_event: impl FnMut(PingEvent),
    stop: impl Future<Output = ()>,
) -> Result<PingSummary, PingError> {
    if config.size == 0 {
        return Err(PingError::Invalid(
            "the message size must be at least 1 byte".into(),
        ));
    }
    if config.size > MAX_SIZE {
        return Err(PingError::Invalid(format!(
            "a {} message is larger than the {} limit",
            format_size(config.size),
            format_size(MAX_SIZE)
        )));
    }
    if config.interval.is_zero() || config.timeout.is_zero() {
        return Err(PingError::Invalid(
            "the interval and timeout must be longer than zero".into(),
        ));
    }
    if config.endpoint.transport() == crate::Transport::Udp && config.size > MAX_UDP_SIZE {
        return Err(PingError::Invalid(format!(
            "a UDP datagram carries at most {MAX_UDP_SIZE} bytes"
        )));
    }
    if config.connect.send_proxy.is_some()
        && !matches!(
            config.endpoint,
            Endpoint::Tcp(_) | Endpoint::Tls(_) | Endpoint::Ws(_) | Endpoint::Wss(_)
        )
    {
        return Err(PingError::Invalid(
            "a PROXY header (--send-proxy) goes on ws, wss, tcp and tls endpoints only".into(),
        ));
    }
    tokio::pin!(stop);
    let opened = tokio::select! {
        biased;
        () = &mut stop => None,
        opened = open(config) => Some(opened?),
    };
    let Some((mut link, peer, connect)) = opened else {
        // Stopped before the connection opened: nothing was sent, so the summary is empty.
        return Ok(PingSummary::empty(config.endpoint.clone()));
    };
    on_event(PingEvent::Started {
        peer: peer.clone(),
        connect,
    });
    let mut session = Session {
        config,
        pattern: Pattern::new(config.size),
        outstanding: VecDeque::new(),
        timed_out: VecDeque::new(),
        next_seq: 1,
        summary: PingSummary::empty(peer),
        rtts: RttAcc::default(),
    };
    let started = Instant::now();
    session.run(&mut link, &mut on_event, stop.as_mut()).await;
    session.summary.elapsed = started.elapsed();
    session.summary.rtt = session.rtts.stats();
    Ok(session.summary)
}

/// Opens the connection or socket, returning the address reached and, for streams, how long
/// connecting took.
async fn open(config: &PingConfig) -> Result<(Link, Endpoint, Option<Duration>), PingError> {
    let endpoint = &config.endpoint;
    let unreachable = |problem: String| PingError::Unreachable {
        endpoint: endpoint.clone(),
        problem,
    };
    // `Unreachable` names the endpoint itself, so only the problem text is kept.
    let from_connect = |e: ConnectError| unreachable(e.problem);
    match endpoint {
        Endpoint::Tcp(_)
        | Endpoint::Tls(_)
        | Endpoint::Ws(_)
        | Endpoint::Wss(_)
        | Endpoint::Unix(_) => {
            let began = Instant::now();
            let (stream, reached) = connect_stream_with(endpoint, &config.connect)
                .await
                .map_err(from_connect)?;
            Ok((Link::stream(stream), reached, Some(began.elapsed())))
        }
        Endpoint::Udp(_) => {
            let addrs = resolve(endpoint).await.map_err(from_connect)?;
            // With several addresses (e.g. `localhost`), take the first that answers; with one,
            // no probe, so a silent server shows as timeouts rather than as an error.
            let mut chosen = *addrs
                .last()
                .ok_or_else(|| unreachable("no address".into()))?;
            for &addr in &addrs[..addrs.len() - 1] {
                if probe_datagram(&Peer::Udp(addr), config.size, config.timeout)
                    .await
                    .is_ok()
                {
                    chosen = addr;
                    break;
                }
            }
            let socket = DatagramSocket::open(&Peer::Udp(chosen), None, 0)
                .map_err(|e| unreachable(describe_connect_error(&e)))?;
            let peer = Endpoint::Udp(HostPort {
                host: Host::Ip(chosen.ip()),
                port: chosen.port(),
            });
            Ok((Link::datagram(socket), peer, None))
        }
        Endpoint::UnixGram(path) => {
            let socket = DatagramSocket::open(&Peer::UnixGram(path.clone()), None, 0)
                .map_err(|e| unreachable(describe_connect_error(&e)))?;
            Ok((Link::datagram(socket), endpoint.clone(), None))
        }
    }
}

/// Running sums for the round-trip statistics.
#[derive(Debug, Default)]
struct RttAcc {
    n: u64,
    sum: f64,
    sum_sq: f64,
    min: Option<Duration>,
    max: Duration,
}

impl RttAcc {
    fn add(&mut self, rtt: Duration) {
        let s = rtt.as_secs_f64();
        self.n += 1;
        self.sum += s;
        self.sum_sq += s * s;
        self.min = Some(self.min.map_or(rtt, |m| m.min(rtt)));
        self.max = self.max.max(rtt);
    }

    fn stats(&self) -> Option<RttStats> {
        let min = self.min?;
        let avg = self.sum / self.n as f64;
        let var = (self.sum_sq / self.n as f64 - avg * avg).max(0.0);
        Some(RttStats {
            min,
            avg: Duration::from_secs_f64(avg),
            max: self.max,
            mdev: Duration::from_secs_f64(var.sqrt()),
        })
    }
}

struct Session<'a> {
    config: &'a PingConfig,
    pattern: Pattern,
    /// Messages awaiting a reply, oldest first, with their send times.
    outstanding: VecDeque<(u64, Instant)>,
    /// The latest messages given up on, so a late reply still gets its round-trip time.
    timed_out: VecDeque<(u64, Instant)>,
    next_seq: u64,
    summary: PingSummary,
    rtts: RttAcc,
}

impl Session<'_> {
    async fn run(
        &mut self,
        link: &mut Link,
        on_event: &mut impl FnMut(PingEvent),
        mut stop: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) {
        let mut ticker = tokio::time::interval(self.config.interval);
        // A send delayed (e.g. by a stalled write) does not make the next ones bunch up.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let size = self.config.size;
        let mut buf = vec![0u8; size + 1];
        let mut filled = 0;
        // The message being written, if any; the next waits for it (and its reply's timer
        // already runs, so a peer that stops reading shows as a timeout).
        let mut pending: Option<Pending> = None;
        loop {
            let more = self.config.count.is_none_or(|c| self.next_seq <= c);
            if !more && self.outstanding.is_empty() {
                return;
            }
            let deadline = self
                .outstanding
                .front()
                .map(|&(_, sent)| sent + self.config.timeout);
            tokio::select! {
                biased;
                () = &mut stop => return,
                _ = ticker.tick(), if more && pending.is_none() => {
                    pending = Some(self.start_send());
                }
                wrote = write_some(&mut link.tx, pending.as_ref()), if pending.is_some() => {
                    if let Err(problem) = self.wrote(wrote, &mut pending, &link.tx, on_event) {
                        self.summary.ended_by = Some(problem);
                        return;
                    }
                }
                received = receive(&mut link.rx, &mut buf, &mut filled) => match received {
                    Ok(Some(n)) => {
                        let now = Instant::now();
                        self.reply(&buf[..n], now, on_event);
                    }
                    Ok(None) => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        self.summary.errors += 1;
                        on_event(PingEvent::Error { seq: None, problem: describe_connect_error(&e) });
                    }
                    Err(e) => {
                        self.summary.ended_by = Some(match e.kind() {
                            io::ErrorKind::UnexpectedEof => "the server closed the connection".into(),
                            io::ErrorKind::ConnectionReset => "the server reset the connection".into(),
                            _ => plain(&e),
                        });
                        return;
                    }
                },
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                    if deadline.is_some() =>
                {
                    if let Some((seq, sent)) = self.outstanding.pop_front() {
                        self.summary.timeouts += 1;
                        if self.timed_out.len() == TIMED_OUT_KEPT {
                            self.timed_out.pop_front();
                        }
                        self.timed_out.push_back((seq, sent));
                        on_event(PingEvent::Timeout { seq });
                    }
                }
            }
        }
    }

    /// Takes the next message: it counts as sent, and its reply's timer starts, from now.
    fn start_send(&mut self) -> Pending {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.summary.sent += 1;
        self.outstanding.push_back((seq, Instant::now()));
        Pending {
            seq,
            message: self.pattern.message(seq, PING_CONN),
            written: 0,
        }
    }

    /// Accounts for one write of the pending message. A refused datagram is reported and
    /// counted; only a broken stream ends the session (`Err` with the reason).
    fn wrote(
        &mut self,
        result: io::Result<usize>,
        pending: &mut Option<Pending>,
        tx: &Tx,
        on_event: &mut impl FnMut(PingEvent),
    ) -> Result<(), String> {
        let Some(p) = pending.as_mut() else {
            return Ok(());
        };
        match result {
            Ok(n) => {
                if n == 0 && p.written < p.message.len() {
                    return Err("the connection accepts no more data".into());
                }
                // A flush (after the last byte) reports 0; a datagram goes out whole.
                let whole =
                    matches!(tx, Tx::Datagram(_)) || (n == 0 && p.written == p.message.len());
                p.written += n;
                if whole {
                    *pending = None;
                }
                Ok(())
            }
            Err(e) if matches!(tx, Tx::Datagram(_)) => {
                let seq = p.seq;
                *pending = None;
                self.outstanding.retain(|&(s, _)| s != seq);
                self.summary.errors += 1;
                on_event(PingEvent::Error {
                    seq: Some(seq),
                    problem: describe_connect_error(&e),
                });
                Ok(())
            }
            Err(e) => Err(match e.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                    "the server closed the connection".into()
                }
                _ => plain(&e),
            }),
        }
    }

    /// Matches a reply to its message and reports it.
    fn reply(&mut self, reply: &[u8], now: Instant, on_event: &mut impl FnMut(PingEvent)) {
        let size = self.config.size;
        let seq = if size >= HEADER_LEN && reply.len() >= HEADER_LEN {
            let mut h = [0u8; HEADER_LEN];
            h.copy_from_slice(&reply[..HEADER_LEN]);
            parse_header(&h)
                .filter(|h| h.conn == PING_CONN)
                .map(|h| h.seq)
        } else {
            let (low, bits) = seq_prefix(&reply[..reply.len().min(self.pattern.header_len())]);
            latest_with_low_bits(self.next_seq - 1, low, bits)
        };
        let correct = seq
            .is_some_and(|s| reply.len() == size && self.pattern.matches(s, PING_CONN, 0, reply));
        let waiting = seq.and_then(|s| self.outstanding.iter().position(|&(o, _)| o == s));
        match (seq, waiting) {
            (Some(seq), Some(i)) => {
                let (_, sent) = self.outstanding.remove(i).unwrap_or((seq, now));
                let rtt = now - sent;
                if correct {
                    self.summary.received += 1;
                    self.rtts.add(rtt);
                    on_event(PingEvent::Reply {
                        seq,
                        bytes: reply.len(),
                        rtt,
                    });
                } else {
                    self.summary.corrupt += 1;
                    on_event(PingEvent::Corrupt {
                        seq: Some(seq),
                        bytes: reply.len(),
                        rtt: Some(rtt),
                    });
                }
            }
            (Some(seq), None) if correct && seq < self.next_seq => {
                match self.timed_out.iter().position(|&(o, _)| o == seq) {
                    Some(i) => {
                        let (_, sent) = self.timed_out.remove(i).unwrap_or((seq, now));
                        on_event(PingEvent::Late {
                            seq,
                            rtt: now - sent,
                        });
                    }
                    None => {
                        self.summary.duplicates += 1;
                        on_event(PingEvent::Duplicate { seq });
                    }
                }
            }
            _ => {
                self.summary.corrupt += 1;
                on_event(PingEvent::Corrupt {
                    seq: None,
                    bytes: reply.len(),
                    rtt: None,
                });
            }
        }
    }
}

/// The most recent sequence number up to `newest` whose low `bits` bits are `low`.
fn latest_with_low_bits(newest: u64, low: u64, bits: u32) -> Option<u64> {
    if bits >= 64 {
        return (low <= newest).then_some(low);
    }
    let back = newest.wrapping_sub(low) & ((1u64 << bits) - 1);
    newest.checked_sub(back)
}

/// Writes what is left of the pending message, or once all of it is written, flushes it (TLS
/// may hold the last record back) and reports 0. A datagram is sent whole. Cancel-safe: a
/// write that has not completed has written nothing.
async fn write_some(tx: &mut Tx, pending: Option<&Pending>) -> io::Result<usize> {
    let Some(p) = pending else {
        return std::future::pending().await;
    };
    match tx {
        Tx::Stream(s) if p.written < p.message.len() => s.write(&p.message[p.written..]).await,
        Tx::Stream(s) => s.flush().await.map(|()| 0),
        Tx::Datagram(s) => s.send(&p.message).await,
    }
}

/// Receives one reply: a whole message from a stream (`Ok(None)` while only part of it has
/// come), or one datagram. Cancel-safe: bytes read stay counted in `filled`.
async fn receive(rx: &mut Rx, buf: &mut [u8], filled: &mut usize) -> io::Result<Option<usize>> {
    match rx {
        Rx::Stream(s) => {
            let size = buf.len() - 1;
            let n = s.read(&mut buf[*filled..size]).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            *filled += n;
            if *filled == size {
                *filled = 0;
                Ok(Some(size))
            } else {
                Ok(None)
            }
        }
        Rx::Datagram(s) => s.recv(buf).await.map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_bits_pick_the_latest_message() {
        assert_eq!(latest_with_low_bits(300, 300 & 0xff, 8), Some(300));
        assert_eq!(latest_with_low_bits(300, 1, 8), Some(257));
        assert_eq!(latest_with_low_bits(3, 9, 8), None);
        assert_eq!(latest_with_low_bits(3, 2, 64), Some(2));
        assert_eq!(latest_with_low_bits(3, 9, 64), None);
    }

    #[test]
    fn summary_statistics() {
        let mut acc = RttAcc::default();
        for ms in [1, 2, 3] {
            acc.add(Duration::from_millis(ms));
        }
        let s = acc.stats().unwrap();
        assert_eq!(s.min, Duration::from_millis(1));
        assert_eq!(s.max, Duration::from_millis(3));
        assert!((s.avg.as_secs_f64() - 0.002).abs() < 1e-9);
        // Population standard deviation of 1, 2, 3 ms: sqrt(2/3) ms.
        assert!((s.mdev.as_secs_f64() - (2.0f64 / 3.0).sqrt() / 1000.0).abs() < 1e-9);
        let summary = PingSummary {
            peer: "tcp://127.0.0.1:1".parse().unwrap(),
            sent: 4,
            received: 3,
            corrupt: 0,
            timeouts: 1,
            duplicates: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            rtt: Some(s),
            ended_by: None,
        };
        assert_eq!(summary.loss_percent(), 25.0);
        assert!(!summary.all_replied());
    }
}
