//! The datagram client (UDP, Unix datagram): one datagram per line, each reply awaited for a
//! timeout. A missing reply is reported and counted as lost, never waited on forever. A line
//! too long for one datagram is reported with the limit and skipped; the session goes on.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::ClientError;
use crate::Endpoint;
use crate::connect::{DatagramSocket, MAX_UDP_SIZE, Peer, resolve};
use crate::net_error::{describe_connect_error, plain};

/// Timed-out payloads remembered to recognise their late replies, so a long session with a
/// lossy server keeps bounded memory.
const LATE_KEPT: usize = 64;

/// Largest UDP payload over IPv6 (65 535 less the UDP header; the IPv6 header is not counted
/// in its payload length).
const MAX_UDP6_SIZE: usize = 65_527;

/// `EMSGSIZE`: the datagram does not fit.
fn libc_emsgsize() -> i32 {
    rustix::io::Errno::MSGSIZE.raw_os_error()
}

/// Largest datagram the client receives; more than any UDP payload.
const RECV_BUF: usize = 256 * 1024;

/// A datagram socket connected to one server.
#[derive(Debug)]
pub struct DatagramClient {
    socket: DatagramSocket,
    endpoint: Endpoint,
    /// Addresses left to try when the current one answers "connection refused" (a name such
    /// as `localhost` has one per address family).
    fallbacks: Vec<SocketAddr>,
    /// The most recent payloads that timed out (up to [`LATE_KEPT`]); a late reply to one of
    /// them is not taken as the current reply.
    late: std::collections::VecDeque<Vec<u8>>,
    buf: Vec<u8>,
}

/// What became of one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The reply that came back.
    Received(Vec<u8>),
    /// Nothing came back within the timeout.
    TimedOut,
    /// The payload does not fit in one datagram on this socket, so nothing was sent. `limit`
    /// is the largest that fits: 65 507 bytes over UDP/IPv4, 65 527 over IPv6, about the
    /// socket's send buffer for Unix datagrams.
    TooLong { limit: usize },
}

impl DatagramClient {
    /// Opens a socket for `endpoint` (udp or unixgram). A Unix datagram client binds an
    /// abstract address, so the server has somewhere to reply and no file is left behind.
    pub async fn connect(endpoint: &Endpoint) -> Result<Self, ClientError> {
        let failed = |e: io::Error| ClientError::Connect {
            endpoint: endpoint.clone(),
            problem: describe_connect_error(&e),
        };
        let (socket, fallbacks) = match endpoint {
            Endpoint::Udp(_) => {
                let mut addrs = resolve(endpoint).await?;
                addrs.reverse();
                let first = addrs
                    .pop()
                    .ok_or_else(|| failed(io::ErrorKind::NotFound.into()))?;
                (udp_connected(first).map_err(failed)?, addrs)
            }
            Endpoint::UnixGram(path) => {
                let peer = Peer::UnixGram(path.clone());
                (
                    DatagramSocket::open(&peer, None, 0).map_err(failed)?,
                    Vec::new(),
                )
            }
            _ => {
                return Err(ClientError::Connect {
                    endpoint: endpoint.clone(),
                    problem: "not a datagram endpoint".into(),
                });
            }
        };
        Ok(DatagramClient {
            socket,
            endpoint: endpoint.clone(),
            fallbacks,
            late: std::collections::VecDeque::new(),
            buf: vec![0; RECV_BUF],
        })
    }

    /// Sends one datagram and waits up to `timeout` for its reply.
    pub async fn exchange(
        &mut self,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        loop {
            match self.try_exchange(payload, timeout).await {
                Err(e)
                    if e.kind() == io::ErrorKind::ConnectionRefused
                        && !self.fallbacks.is_empty() =>
                {
                    // Nothing listens at this address (ICMP port unreachable); try the next one.
                    let next = self.fallbacks.pop().expect("checked non-empty above");
                    match udp_connected(next) {
                        Ok(socket) => self.socket = socket,
                        Err(e) => return Err(self.failed(&e)),
                    }
                }
                Err(e) => return Err(self.failed(&e)),
                Ok(reply) => return Ok(reply),
            }
        }
    }

    async fn try_exchange(&mut self, payload: &[u8], timeout: Duration) -> io::Result<Reply> {
        // The send is under the timeout too: a Unix datagram peer that does not read its queue
        // blocks senders, and that must show as a lost reply, not as a hang.
        let deadline = tokio::time::Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, self.socket.send(payload)).await {
            Ok(Err(e)) if e.raw_os_error() == Some(libc_emsgsize()) => {
                return Ok(Reply::TooLong {
                    limit: self.max_payload(),
                });
            }
            Ok(sent) => sent.map(drop)?,
            Err(_elapsed) => return Ok(Reply::TimedOut),
        }
        loop {
            let received = tokio::time::timeout_at(deadline, self.socket.recv(&mut self.buf)).await;
            match received {
                Err(_elapsed) => {
                    if self.late.len() == LATE_KEPT {
                        self.late.pop_front();
                    }
                    self.late.push_back(payload.to_vec());
                    return Ok(Reply::TimedOut);
                }
                Ok(Err(e)) => return Err(e),
                Ok(Ok(n)) => {
                    let reply = &self.buf[..n];
                    if reply != payload && self.late.iter().any(|l| l == reply) {
                        continue; // the late echo of an earlier datagram
                    }
                    return Ok(Reply::Received(reply.to_vec()));
                }
            }
        }
    }

    /// The largest payload one datagram on this socket carries.
    pub fn max_payload(&self) -> usize {
        match &self.socket {
            DatagramSocket::Udp(s) => match s.local_addr() {
                Ok(SocketAddr::V6(_)) => MAX_UDP6_SIZE,
                _ => MAX_UDP_SIZE,
            },
            // The kernel refuses a Unix datagram larger than the send buffer (less a little
            // bookkeeping), and the buffer's size is all it says.
            DatagramSocket::Unix(s) => socket2::SockRef::from(s).send_buffer_size().unwrap_or(0),
        }
    }

    fn failed(&self, err: &io::Error) -> ClientError {
        match err.kind() {
            io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => ClientError::Connect {
                endpoint: self.endpoint.clone(),
                problem: describe_connect_error(err),
            },
            _ => ClientError::Lost {
                endpoint: self.endpoint.clone(),
                problem: plain(err),
            },
        }
    }
}

/// A UDP socket connected to `addr`: replies from anyone else are ignored, and ICMP errors are
/// reported.
fn udp_connected(addr: SocketAddr) -> io::Result<DatagramSocket> {
    DatagramSocket::open(&Peer::Udp(addr), None, 0)
}

/// Datagrams sent, replies received and replies lost by a datagram session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatagramSummary {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    /// Lines not sent because they do not fit in one datagram (not among `sent`).
    pub too_long: u64,
}

/// Piped use: each input line (without its `\n`) is one datagram, and each reply is written to
/// `out` on its own line. A reply that does not come within `timeout` is reported on `diag`.
pub async fn datagram_pipe<R, W, D>(
    client: &mut DatagramClient,
    input: R,
    out: &mut W,
    diag: &mut D,
    timeout: Duration,
) -> Result<DatagramSummary, ClientError>
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: io::Write,
    D: io::Write,
{
    use tokio::io::AsyncBufReadExt;
    let mut input = input;
    let mut line = Vec::new();
    let mut summary = DatagramSummary::default();
    let mut line_no = 0u64;
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| ClientError::local("cannot read input", &e))?;
        if n == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let out_err = |e: io::Error| ClientError::local("cannot write output", &e);
        let reply = client.exchange(&line, timeout).await?;
        line_no += 1;
        if let Reply::TooLong { limit } = reply {
            summary.too_long += 1;
            let _ = writeln!(
                diag,
                "line {line_no} not sent: {} bytes do not fit in one datagram (at most {limit})",
                line.len()
            );
            continue;
        }
        summary.sent += 1;
        match reply {
            Reply::Received(reply) => {
                summary.received += 1;
                out.write_all(&reply).map_err(out_err)?;
                out.write_all(b"\n").map_err(out_err)?;
                out.flush().map_err(out_err)?;
            }
            Reply::TimedOut => {
                summary.lost += 1;
                let _ = writeln!(
                    diag,
                    "no reply to datagram {} ({} bytes) within {timeout:?}",
                    summary.sent,
                    line.len()
                );
            }
            Reply::TooLong { .. } => {}
        }
    }
    Ok(summary)
}

/// Interactive use: the tutorial's prompt loop, one datagram per line, until an empty line.
pub async fn datagram_interactive<L, W>(
    client: &mut DatagramClient,
    lines: &mut L,
    out: &mut W,
    timeout: Duration,
) -> Result<DatagramSummary, ClientError>
where
    L: super::interactive::LineSource,
    W: io::Write,
{
    use super::interactive::{GREETING, PROMPT, REPLY_PREFIX};
    let out_err = |e: io::Error| ClientError::local("cannot write to the terminal", &e);
    writeln!(out, "{GREETING}").map_err(out_err)?;
    let mut summary = DatagramSummary::default();
    loop {
        let line = lines
            .read_line(PROMPT)
            .await
            .map_err(|e| ClientError::local("cannot read input", &e))?;
        let Some(line) = line.filter(|l| !l.is_empty()) else {
            break;
        };
        match client.exchange(line.as_bytes(), timeout).await? {
            Reply::Received(reply) => {
                summary.sent += 1;
                summary.received += 1;
                writeln!(out, "{REPLY_PREFIX}{}", String::from_utf8_lossy(&reply))
                    .map_err(out_err)?;
            }
            Reply::TimedOut => {
                summary.sent += 1;
                summary.lost += 1;
                writeln!(out, "(no reply within {timeout:?})").map_err(out_err)?;
            }
            Reply::TooLong { limit } => {
                summary.too_long += 1;
                writeln!(
                    out,
                    "(not sent: {} bytes do not fit in one datagram, at most {limit})",
                    line.len()
                )
                .map_err(out_err)?;
            }
        }
        out.flush().map_err(out_err)?;
    }
    Ok(summary)
}
