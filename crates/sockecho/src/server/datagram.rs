//! Datagram listeners (UDP, Unix datagram): each datagram goes back to its sender unchanged.
//!
//! One socket serves any number of peers. The receive buffer holds the largest datagram the
//! transport can carry, so nothing is truncated: 65 507 bytes of UDP payload over IPv4, and up to
//! the socket buffer size for Unix datagrams.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use std::cell::RefCell;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use tokio::io::Interest;
use tokio::net::{UdpSocket, UnixDatagram};

use super::Shared;
use crate::Endpoint;
use std::net::SocketAddr;

use super::access::is_reflection_risk;
use crate::stats::TransportCounters;

/// Larger than any UDP payload (65 507 over IPv4, 65 527 over IPv6).
const UDP_BUF: usize = 65_536;
/// Larger than any Unix datagram the default socket buffers (208 KiB) allow.
const UNIXGRAM_BUF: usize = 256 * 1024;

pub(crate) async fn serve_udp(socket: UdpSocket, endpoint: Endpoint, shared: Arc<Shared>) {
    let mut batch = UdpBatch::new();
    let counters = shared.counters.transport(endpoint.transport());
    loop {
        tokio::select! {
            biased;
            () = shared.drain.cancelled() => break,
            ready = socket.readable() => if let Err(e) = ready {
                tracing::warn!("waiting on {endpoint}: {e}");
                break;
            },
        }
        // Receive and answer batches until the socket is drained.
        loop {
            let drained = match socket.try_io(Interest::READABLE, || batch.receive(&socket)) {
                Ok(()) => false,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                Err(e) => {
                    // ICMP errors from earlier replies (port unreachable) surface here; they
                    // concern one peer, not the socket.
                    tracing::debug!("receive on {endpoint}: {e}");
                    continue;
                }
            };
            let now = std::time::Instant::now();
            batch.retain(|data, sender| {
                let sender = sender_address(sender);
                admit_datagram(&shared, counters, sender, now) && {
                    log_datagram(&shared, SenderLabel(sender), data);
                    true
                }
            });
            if !batch.got.is_empty() {
                let (echoed, dropped) = batch.reply(&socket).await;
                TransportCounters::add(&counters.datagrams, echoed.0);
                TransportCounters::add(&counters.datagram_bytes, echoed.1);
                TransportCounters::add(&counters.datagrams_dropped, dropped);
            }
            if drained {
                break;
            }
        }
    }
    tracing::debug!("stopped serving {endpoint}");
}

/// One received datagram of a batch.
struct Datagram {
    /// Index of the buffer holding it.
    buf: usize,
    len: usize,
    sender: SockaddrStorage,
}

/// The sender of a UDP datagram as a standard address (`None` if it is not IPv4 or IPv6,
/// which a UDP socket never reports).
fn sender_address(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::from(std::net::SocketAddrV4::from(*v4)));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
}

/// A sender as logged, formatted only if a log line is actually written: the echo path must
/// not build a string per datagram.
struct SenderLabel(Option<SocketAddr>);

impl std::fmt::Display for SenderLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(
                f,
                "{}",
                SocketAddr::new(addr.ip().to_canonical(), addr.port())
            ),
            None => f.write_str("unknown sender"),
        }
    }
}

/// Applies the reflection guard, `--allow`/`--deny` and `--udp-rate` to one datagram, counting
/// what it drops.
fn admit_datagram(
    shared: &Shared,
    counters: &TransportCounters,
    sender: Option<SocketAddr>,
    now: std::time::Instant,
) -> bool {
    let Some(sender) = sender else {
        TransportCounters::add(&counters.datagrams_dropped, 1);
        return false;
    };
    let config = &shared.config;
    if config.reflection_guard && is_reflection_risk(sender) {
        TransportCounters::add(&counters.datagrams_reflection_blocked, 1);
        tracing::debug!("dropped a datagram from {sender}: reflection guard");
        return false;
    }
    if !config.access.permits(sender.ip()) {
        TransportCounters::add(&counters.datagrams_denied, 1);
        tracing::debug!("dropped a datagram from {sender}: not allowed by --allow/--deny");
        return false;
    }
    if let Some(limiter) = &shared.udp_rate
        && !limiter.allow(sender.ip(), now)
    {
        TransportCounters::add(&counters.datagrams_rate_limited, 1);
        tracing::trace!("dropped a datagram from {sender}: over --udp-rate");
        return false;
    }
    true
}

/// Datagrams received or replied to per system call.
const BATCH: usize = 16;

/// Message headers for `sendmmsg`, made once per thread (each send sets every field it uses).
/// They hold raw pointers,
/// which keeps them out of a task that may move between threads; each call borrows its thread's
/// set only inside one synchronous system call, never across an `.await`.
struct Headers(MultiHeaders<SockaddrStorage>);

impl Default for Headers {
    fn default() -> Self {
        Headers(MultiHeaders::preallocate(BATCH, None))
    }
}

thread_local! {
    static SEND_HEADERS: RefCell<Headers> = RefCell::default();
}

/// Buffers and headers for moving up to [`BATCH`] datagrams per `recvmmsg`/`sendmmsg`, reused
/// for the life of the socket.
struct UdpBatch {
    /// Full-size buffers, one per datagram, so none is truncated. They are allocated zeroed,
    /// so the kernel backs only the pages that large datagrams touch.
    bufs: Box<[Vec<u8>; BATCH]>,
    /// The datagrams of the current batch to answer: the buffer each is in, its length and
    /// its sender.
    got: Vec<Datagram>,
}

impl UdpBatch {
    fn new() -> Self {
        UdpBatch {
            bufs: Box::new(std::array::from_fn(|_| vec![0; UDP_BUF])),
            got: Vec::with_capacity(BATCH),
        }
    }

    /// One `recvmmsg`. A short batch means the queue is empty: it is reported as "would block"
    /// after keeping what it got, so the runtime clears readiness without another system call.
    /// The datagrams are read with [`received`](Self::received) either way.
    fn receive(&mut self, socket: &UdpSocket) -> io::Result<()> {
        self.got.clear();
        let (bufs, got) = (&mut self.bufs, &mut self.got);
        let count = {
            // Fresh headers for every call: the kernel shortens each header's address length to
            // the sender's, and nix does not reset it, so reused headers would cut an IPv6
            // address short after an IPv4 one.
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
            let mut slices = bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
            let messages = recvmmsg(
                socket.as_raw_fd(),
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )?;
            let mut count = 0;
            for message in messages {
                if let Some(sender) = message.address {
                    got.push(Datagram {
                        buf: count,
                        len: message.bytes,
                        sender,
                    });
                }
                count += 1;
            }
            count
        };
        if count < BATCH {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    }

    /// Keeps only the datagrams `keep` accepts (given each one's payload and sender).
    fn retain(&mut self, mut keep: impl FnMut(&[u8], &SockaddrStorage) -> bool) {
        let bufs = &self.bufs;
        self.got.retain(|d| keep(&bufs[d.buf][..d.len], &d.sender));
    }

    /// Sends every datagram of the batch back to its sender with as few `sendmmsg` calls as
    /// the socket allows. Returns (datagrams, bytes) echoed and the number dropped.
    async fn reply(&mut self, socket: &UdpSocket) -> ((u64, u64), u64) {
        let mut next = 0;
        let mut echoed = (0, 0);
        let mut dropped = 0;
        while next < self.got.len() {
            let pending = &self.got[next..];
            let bufs = &self.bufs;
            let sent = socket
                .async_io(Interest::WRITABLE, || {
                    let n = pending.len();
                    let slices: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| {
                        [IoSlice::new(
                            pending.get(i).map_or(&[][..], |d| &bufs[d.buf][..d.len]),
                        )]
                    });
                    let addrs: [Option<SockaddrStorage>; BATCH] =
                        std::array::from_fn(|i| pending.get(i).map(|d| d.sender));
                    SEND_HEADERS.with(|headers| {
                        let mut headers = headers.borrow_mut();
                        let sent = sendmmsg(
                            socket.as_raw_fd(),
                            &mut headers.0,
                            &slices[..n],
                            &addrs[..n],
                            [],
                            MsgFlags::MSG_DONTWAIT,
                        )?;
                        Ok(sent.count())
                    })
                })
                .await;
            match sent {
                Ok(n) => {
                    echoed.0 += n as u64;
                    echoed.1 += pending[..n].iter().map(|d| d.len as u64).sum::<u64>();
                    next += n;
                }
                Err(e) => {
                    // The first datagram of the rest could not be sent (e.g. no route back);
                    // drop it and go on with the others.
                    tracing::debug!("reply to {} failed: {e}", pending[0].sender);
                    dropped += 1;
                    next += 1;
                }
            }
        }
        (echoed, dropped)
    }
}

pub(crate) async fn serve_unixgram(socket: UnixDatagram, endpoint: Endpoint, shared: Arc<Shared>) {
    let mut buf = vec![0u8; UNIXGRAM_BUF];
    let counters = shared.counters.transport(endpoint.transport());
    loop {
        let (len, peer) = tokio::select! {
            biased;
            () = shared.drain.cancelled() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("receive on {endpoint}: {e}");
                    continue;
                }
            },
        };
        let data = &buf[..len];
        let std_peer: std::os::unix::net::SocketAddr = peer.into();
        let Some(reply_to) = reply_address(&std_peer) else {
            TransportCounters::add(&counters.datagrams_dropped, 1);
            tracing::debug!(
                "datagram from an unbound Unix socket on {endpoint}: no address to reply to"
            );
            continue;
        };
        log_datagram(&shared, format_args!("{reply_to:?}"), data);
        let sent = socket
            .async_io(Interest::WRITABLE, || {
                rustix::net::sendto(
                    socket.as_fd(),
                    data,
                    rustix::net::SendFlags::empty(),
                    &reply_to,
                )
                .map_err(io::Error::from)
            })
            .await;
        match sent {
            Ok(_) => count_echo(counters, len),
            Err(e) => {
                TransportCounters::add(&counters.datagrams_dropped, 1);
                tracing::debug!("reply to {reply_to:?} on {endpoint} failed: {e}");
            }
        }
    }
    tracing::debug!("stopped serving {endpoint}");
}

/// Where to send a reply: the sender's path or abstract name. An unbound sender has neither.
fn reply_address(peer: &std::os::unix::net::SocketAddr) -> Option<rustix::net::SocketAddrUnix> {
    use std::os::linux::net::SocketAddrExt;
    if let Some(path) = peer.as_pathname() {
        return rustix::net::SocketAddrUnix::new(path).ok();
    }
    peer.as_abstract_name()
        .and_then(|name| rustix::net::SocketAddrUnix::new_abstract_name(name).ok())
}

fn count_echo(counters: &TransportCounters, len: usize) {
    TransportCounters::add(&counters.datagrams, 1);
    TransportCounters::add(&counters.datagram_bytes, len as u64);
}

fn log_datagram(shared: &Shared, peer: impl std::fmt::Display, data: &[u8]) {
    if shared.config.log_data {
        tracing::info!(target: crate::DATA_LOG, "{peer}: {}", String::from_utf8_lossy(data).trim());
    } else {
        tracing::trace!("{peer}: {} byte datagram", data.len());
    }
}
