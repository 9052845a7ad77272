//! Datagram listeners (UDP, Unix datagram): each datagram goes back to its sender unchanged.
//!
//! One socket serves any number of peers. The receive buffer holds the largest datagram the
//! transport can carry, so nothing is truncated: 65 507 bytes of UDP payload over IPv4, and up to
//! the socket buffer size for Unix datagrams.
//!
//! A UDP socket is served by a blocking loop on a thread of its own, up to 16 receive buffers
//! per `recvmmsg` and 16 replies per `sendmmsg`. With UDP GRO on, the kernel may hand over a
//! sender's consecutive datagrams of one size as one buffer (a client that sent them with one
//! segmented send, or a NIC that coalesced them); the loop answers such a buffer with one
//! segmented send (UDP GSO), split into the same datagrams again on the way: by the NIC, or on
//! loopback by the client's socket unless it takes coalesced buffers too. Every rule that applies
//! per datagram (access lists, `--udp-rate`, the data log, the counters) still counts each one.
//!
//! The batched calls and the offloads are Linux's; elsewhere a UDP socket is served on tokio,
//! one datagram per call, like a Unix datagram socket.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

#[cfg(target_os = "linux")]
use std::cell::RefCell;
#[cfg(target_os = "linux")]
use std::io::{IoSlice, IoSliceMut};
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;

use tokio::net::{UdpSocket, UnixDatagram};

use super::shared::Shared;
use crate::Endpoint;
use std::net::SocketAddr;

use super::access::is_reflection_risk;
use super::fault::datagram::DatagramFaults;
use crate::stats::TransportCounters;
#[cfg(target_os = "linux")]
use crate::sys::udp::{self, Errno, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

/// Larger than any UDP payload (65 507 over IPv4, 65 527 over IPv6).
const UDP_BUF: usize = 65_536;
/// Larger than any Unix datagram the default socket buffers (208 KiB) allow.
const UNIXGRAM_BUF: usize = 256 * 1024;

/// How long a blocked receive waits before the loop looks at whether the server is draining.
/// A drain normally wakes the loop at once (see [`wake`]); this bounds the wait when that
/// datagram cannot be sent, or when the server is dropped without draining (the loop may then
/// outlive it by this much).
#[cfg(target_os = "linux")]
const DRAIN_POLL: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a reply may wait for room in a full socket buffer before it, and the rest of its
/// batch, are dropped.
#[cfg(target_os = "linux")]
const SEND_STALL: std::time::Duration = std::time::Duration::from_millis(100);

/// Serves one UDP socket on a thread of its own (from the runtime's blocking pool) until the
/// server drains.
///
/// The loop blocks in `recvmmsg` with `MSG_WAITFORONE`: it sleeps until a datagram comes, then
/// takes whatever else has queued, up to [`BATCH`] buffers, and answers the batch. For
/// datagrams one by one that is two system calls per batch (receive, send), where an event loop
/// spends a third on waiting for readiness; a buffer of coalesced datagrams adds one send.
#[cfg(target_os = "linux")]
pub(crate) async fn serve_udp(socket: UdpSocket, endpoint: Endpoint, shared: Arc<Shared>) {
    let socket = match socket.into_std().and_then(|s| {
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(DRAIN_POLL))?;
        s.set_write_timeout(Some(SEND_STALL))?;
        Ok(s)
    }) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::error!("cannot serve {endpoint}: {e}");
            return;
        }
    };
    let label = endpoint.to_string();
    let local = socket.local_addr();
    let drain = shared.drain.clone();
    let mut served =
        tokio::task::spawn_blocking(move || serve_udp_blocking(&socket, &endpoint, &shared));
    let done = tokio::select! {
        done = &mut served => done,
        () = drain.cancelled() => {
            if let Ok(local) = local {
                wake(local);
            }
            served.await
        }
    };
    if let Err(e) = done {
        tracing::error!("the loop serving {label} failed: {e}");
    }
}

/// Wakes a loop blocked in its receive by sending its socket an empty datagram from loopback
/// (or from the address it is bound to). The loop sees the drain before it answers anything.
#[cfg(target_os = "linux")]
fn wake(local: SocketAddr) {
    let ip = match local.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let from: SocketAddr = match ip {
        std::net::IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        std::net::IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sent = std::net::UdpSocket::bind(from)
        .and_then(|s| s.send_to(&[], SocketAddr::new(ip, local.port())));
    if let Err(e) = sent {
        tracing::debug!(
            "could not wake the UDP loop on {local}: {e}; it stops within {DRAIN_POLL:?}"
        );
    }
}

/// Serves one UDP socket on tokio, one datagram per call: the portable path, for systems
/// without the batched calls and the offloads.
#[cfg(not(target_os = "linux"))]
pub(crate) async fn serve_udp(socket: UdpSocket, endpoint: Endpoint, shared: Arc<Shared>) {
    let mut buf = vec![0u8; UDP_BUF];
    let counters = shared.counters.transport(endpoint.transport());
    let mut faults = shared
        .config
        .faults
        .as_ref()
        .and_then(|plan| udp_faults(plan, &socket, &endpoint, &shared));
    loop {
        let (len, sender) = tokio::select! {
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
        if !admit_datagram(&shared, counters, Some(sender), std::time::Instant::now()) {
            continue;
        }
        log_datagram(&shared, SenderLabel(Some(sender)), data);
        if let Some(faults) = &mut faults {
            // Replies are sent without waiting: one the socket cannot take at once is dropped.
            let answered = faults.answer(data, &sender, |reply, to| {
                socket.try_send_to(reply, *to).is_ok()
            });
            TransportCounters::add(&counters.datagrams, answered.datagrams);
            TransportCounters::add(&counters.datagram_bytes, answered.bytes);
            TransportCounters::add(&counters.datagrams_dropped, answered.failed);
            continue;
        }
        match socket.send_to(data, sender).await {
            Ok(_) => count_echo(counters, len),
            Err(e) => {
                TransportCounters::add(&counters.datagrams_dropped, 1);
                tracing::debug!("reply to {sender} on {endpoint} failed: {e}");
            }
        }
    }
    tracing::debug!("stopped serving {endpoint}");
}

/// Lets the kernel hand over a sender's consecutive datagrams of one size as one buffer (UDP
/// GRO), which the loop echoes with one segmented send. Set when the socket is bound, before
/// anything can arrive: a datagram queued before it is set is never coalesced. Kernels before
/// 5.0 lack the option, and datagrams then come one by one.
#[cfg(target_os = "linux")]
pub(super) fn receive_coalesced(socket: &impl AsFd) {
    if let Err(e) = udp::enable_gro(socket) {
        tracing::debug!("UDP_GRO: {e}; datagrams are received one by one");
    }
}

/// Other systems have no UDP GRO: datagrams come one by one.
#[cfg(not(target_os = "linux"))]
pub(super) fn receive_coalesced(_socket: &impl AsFd) {}

#[cfg(target_os = "linux")]
fn serve_udp_blocking(socket: &std::net::UdpSocket, endpoint: &Endpoint, shared: &Shared) {
    let mut batch = UdpBatch::new();
    let counters = shared.counters.transport(endpoint.transport());
    let mut faults = shared
        .config
        .faults
        .as_ref()
        .and_then(|plan| udp_faults(plan, socket, endpoint, shared));
    while !shared.drain.is_cancelled() {
        match batch.receive(socket) {
            // Draining: what came with the wake-up is not answered (the listener is closed).
            Ok(()) if shared.drain.is_cancelled() => break,
            Ok(()) => {}
            // The receive timed out: time to look at `drain` again.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) if is_socket_broken(&e) => {
                tracing::error!("receive on {endpoint} failed: {e}; this socket stops serving");
                break;
            }
            Err(e) => {
                // ICMP errors from earlier replies (port unreachable) surface here; they
                // concern one peer, not the socket, and each is reported once.
                tracing::debug!("receive on {endpoint}: {e}");
                continue;
            }
        }
        let now = std::time::Instant::now();
        batch.admit(|datagram, sender| {
            let sender = sender_address(sender);
            admit_datagram(shared, counters, sender, now) && {
                log_datagram(shared, SenderLabel(sender), datagram);
                true
            }
        });
        // One `Option` per batch when no fault is configured.
        let replied = match &mut faults {
            None => batch.reply(socket),
            Some(faults) => batch.reply_with_faults(socket, faults),
        };
        TransportCounters::add(&counters.datagrams, replied.datagrams);
        TransportCounters::add(&counters.datagram_bytes, replied.bytes);
        TransportCounters::add(&counters.datagrams_dropped, replied.dropped + batch.dropped);
    }
    tracing::debug!("stopped serving {endpoint}");
}

/// The datagram faults of a UDP socket, if the plan has any. Held-back replies are sent on a
/// second handle of the socket, from the delay thread.
fn udp_faults(
    plan: &super::fault::FaultPlan,
    socket: &impl AsFd,
    endpoint: &Endpoint,
    shared: &Shared,
) -> Option<DatagramFaults<SocketAddr>> {
    if !plan.has_datagram_faults() {
        return None;
    }
    let later = match socket.as_fd().try_clone_to_owned() {
        Ok(later) => std::net::UdpSocket::from(later),
        Err(e) => {
            tracing::error!("cannot inject faults on {endpoint}: {e}");
            return None;
        }
    };
    DatagramFaults::new(plan, 0, shared.counters.clone(), move |data, to| {
        if let Err(e) = later.send_to(data, to) {
            tracing::debug!("delayed reply to {to} failed: {e}");
        }
    })
}

/// One received datagram of a batch, or several from one sender that the kernel handed over
/// as one buffer (UDP GRO).
#[cfg(target_os = "linux")]
struct Datagram {
    /// Index of the buffer holding it.
    buf: usize,
    len: usize,
    /// Size of each datagram in the buffer when it holds several: all but the last are exactly
    /// this long, and the last is no longer. `len` when it holds one.
    segment: usize,
    sender: SockaddrStorage,
}

#[cfg(target_os = "linux")]
impl Datagram {
    /// How many datagrams the buffer holds.
    fn count(&self) -> usize {
        if self.is_coalesced() {
            self.len.div_ceil(self.segment)
        } else {
            1
        }
    }

    /// Whether the buffer holds more than one datagram.
    fn is_coalesced(&self) -> bool {
        self.len > self.segment
    }
}

/// The sender of a UDP datagram as a standard address (`None` if it is not IPv4 or IPv6,
/// which a UDP socket never reports).
#[cfg(target_os = "linux")]
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
#[cfg(target_os = "linux")]
const BATCH: usize = 16;
/// Room for each received datagram's control messages: the GRO segment size, and whatever else
/// an inherited socket may have been set to report (packet info, timestamps).
#[cfg(target_os = "linux")]
const CMSG_ROOM: usize = 256;

/// Message headers for `sendmmsg`, made once per thread (each send sets every field it uses).
/// They hold raw pointers,
/// which keeps them out of a task that may move between threads; each call borrows its thread's
/// set only inside one synchronous system call, never across an `.await`.
#[cfg(target_os = "linux")]
struct Headers(MultiHeaders<SockaddrStorage>);

#[cfg(target_os = "linux")]
impl Default for Headers {
    fn default() -> Self {
        Headers(MultiHeaders::preallocate(BATCH, None))
    }
}

#[cfg(target_os = "linux")]
thread_local! {
    static SEND_HEADERS: RefCell<Headers> = RefCell::default();
}

/// Buffers and headers for moving up to [`BATCH`] datagrams per `recvmmsg`/`sendmmsg`, reused
/// for the life of the socket.
#[cfg(target_os = "linux")]
struct UdpBatch {
    /// Full-size buffers, one per datagram, so none is truncated. They are allocated zeroed,
    /// so the kernel backs only the pages that large datagrams touch.
    bufs: Box<[Vec<u8>; BATCH]>,
    /// The datagrams of the current batch to answer: the buffer each is in, its length and
    /// its sender.
    got: Vec<Datagram>,
    /// Buffers of the current batch dropped on receipt.
    dropped: u64,
}

/// What one batch's replies came to.
#[cfg(target_os = "linux")]
#[derive(Default)]
struct Replied {
    datagrams: u64,
    bytes: u64,
    dropped: u64,
    /// The socket buffer stayed full: the replies not sent were counted as dropped.
    stalled: bool,
}

#[cfg(target_os = "linux")]
impl UdpBatch {
    fn new() -> Self {
        UdpBatch {
            bufs: Box::new(std::array::from_fn(|_| vec![0; UDP_BUF])),
            got: Vec::with_capacity(BATCH),
            dropped: 0,
        }
    }

    /// One `recvmmsg`: waits (up to the socket's receive timeout) for a datagram, then takes
    /// those already queued behind it, up to [`BATCH`], into `got`.
    fn receive(&mut self, socket: &std::net::UdpSocket) -> io::Result<()> {
        self.got.clear();
        self.dropped = 0;
        let (bufs, got, dropped) = (&mut self.bufs, &mut self.got, &mut self.dropped);
        {
            // Fresh headers for every call: the kernel shortens each header's address length to
            // the sender's, and nix does not reset it, so reused headers would cut an IPv6
            // address short after an IPv4 one.
            let mut headers =
                MultiHeaders::<SockaddrStorage>::preallocate(BATCH, Some(vec![0; CMSG_ROOM]));
            let mut slices = bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
            let messages = recvmmsg(
                socket.as_raw_fd(),
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            )?;
            for (buf, message) in messages.enumerate() {
                let Ok(cmsgs) = message.cmsgs() else {
                    // Control messages were cut short (an inherited socket with more options
                    // on than there is room for): whether the buffer holds one datagram or
                    // several is unknown, so echoing it could merge datagrams. Drop it, and
                    // count it as one datagram (it may have been more).
                    static WARNED: std::sync::Once = std::sync::Once::new();
                    WARNED.call_once(|| {
                        tracing::warn!(
                            "dropping datagrams whose control messages do not fit in \
                             {CMSG_ROOM} bytes (an inherited socket with extra options on?)"
                        );
                    });
                    *dropped += 1;
                    continue;
                };
                let segment = udp::segment_size(cmsgs, message.bytes);
                if let Some(sender) = message.address {
                    got.push(Datagram {
                        buf,
                        len: message.bytes,
                        segment,
                        sender,
                    });
                }
            }
        }
        Ok(())
    }

    /// Asks `admit` about every datagram (given its payload and sender) and keeps those it
    /// accepts. The datagrams kept of a coalesced buffer are moved together to its front, which
    /// keeps its shape (full-size datagrams, then at most one shorter) for a segmented send.
    fn admit(&mut self, mut admit: impl FnMut(&[u8], &SockaddrStorage) -> bool) {
        let bufs = &mut self.bufs;
        self.got.retain_mut(|d| {
            let buf = &mut bufs[d.buf];
            if d.len == 0 {
                return admit(&[], &d.sender);
            }
            let mut kept = 0;
            let mut at = 0;
            while at < d.len {
                let end = d.len.min(at + d.segment);
                if admit(&buf[at..end], &d.sender) {
                    if kept != at {
                        buf.copy_within(at..end, kept);
                    }
                    kept += end - at;
                }
                at = end;
            }
            d.len = kept;
            kept > 0
        });
    }

    /// Sends every datagram of the batch back to its sender: a coalesced buffer with one
    /// segmented send (UDP GSO), the others with as few `sendmmsg` calls as the socket allows.
    fn reply(&mut self, socket: &std::net::UdpSocket) -> Replied {
        let mut replied = Replied::default();
        let mut next = 0;
        while next < self.got.len() {
            if replied.stalled {
                // The socket buffer stayed full for `DRAIN_POLL`: drop what is left.
                replied.dropped += self.got[next..]
                    .iter()
                    .map(|d| d.count() as u64)
                    .sum::<u64>();
                break;
            }
            let d = &self.got[next];
            if d.is_coalesced() {
                let data = &self.bufs[d.buf][..d.len];
                let segment = u16::try_from(d.segment).unwrap_or(u16::MAX);
                let sent = loop {
                    let sent = udp::send_segmented(
                        socket,
                        data,
                        segment,
                        Some(&d.sender),
                        MsgFlags::empty(),
                    );
                    if sent != Err(Errno::EINTR) {
                        break sent;
                    }
                };
                match sent {
                    Ok(_) => {
                        replied.datagrams += d.count() as u64;
                        replied.bytes += d.len as u64;
                    }
                    Err(Errno::EAGAIN) => {
                        // Counted with the rest at the top of the loop.
                        replied.stalled = true;
                        continue;
                    }
                    Err(e) => {
                        // The route's device cannot segment (or the kernel refuses this size):
                        // send the datagrams one by one instead.
                        tracing::debug!("segmented reply to {} failed: {e}", d.sender);
                        let n = d.count();
                        let piece = |i: usize| {
                            (
                                &data[i * d.segment..d.len.min((i + 1) * d.segment)],
                                d.sender,
                            )
                        };
                        replied.add(send_each(socket, n, piece));
                    }
                }
                next += 1;
            } else {
                let run = self.got[next..]
                    .iter()
                    .position(Datagram::is_coalesced)
                    .map_or(self.got.len(), |n| next + n);
                let (got, bufs) = (&self.got[next..run], &self.bufs);
                let piece = |i: usize| (&bufs[got[i].buf][..got[i].len], got[i].sender);
                replied.add(send_each(socket, got.len(), piece));
                next = run;
            }
        }
        replied
    }
}

#[cfg(target_os = "linux")]
impl UdpBatch {
    /// Answers every datagram of the batch one by one, with the faults that hit it.
    fn reply_with_faults(
        &self,
        socket: &std::net::UdpSocket,
        faults: &mut DatagramFaults<SocketAddr>,
    ) -> Replied {
        let mut replied = Replied::default();
        let mut send = |reply: &[u8], to: &SocketAddr| socket.send_to(reply, to).is_ok();
        for d in &self.got {
            let Some(to) = sender_address(&d.sender) else {
                replied.dropped += d.count() as u64;
                continue;
            };
            let data = &self.bufs[d.buf][..d.len];
            // An empty datagram is one datagram too.
            let pieces = data
                .chunks(d.segment.max(1))
                .chain(data.is_empty().then_some(data));
            for piece in pieces {
                let answered = faults.answer(piece, &to, &mut send);
                replied.datagrams += answered.datagrams;
                replied.bytes += answered.bytes;
                replied.dropped += answered.failed;
            }
        }
        replied
    }
}

#[cfg(target_os = "linux")]
impl Replied {
    fn add(&mut self, other: Replied) {
        self.datagrams += other.datagrams;
        self.bytes += other.bytes;
        self.dropped += other.dropped;
        self.stalled |= other.stalled;
    }
}

/// Sends datagrams `piece(0)` to `piece(count - 1)`, each a payload and its address, as
/// separate datagrams, [`BATCH`] per `sendmmsg` (one alone with `sendto`, which skips the
/// message-header copy). A datagram the kernel refuses (e.g. no route back) is dropped and the
/// rest go on; if the socket buffer stays full for [`DRAIN_POLL`], all the rest are dropped.
#[cfg(target_os = "linux")]
fn send_each<'a>(
    socket: &std::net::UdpSocket,
    count: usize,
    piece: impl Fn(usize) -> (&'a [u8], SockaddrStorage),
) -> Replied {
    let mut replied = Replied::default();
    let mut next = 0;
    while next < count {
        let n = (count - next).min(BATCH);
        let sent = if n == 1 {
            let (data, to) = piece(next);
            udp::send_to(socket, data, &to).map(|_| 1)
        } else {
            let slices: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| {
                [IoSlice::new(if i < n { piece(next + i).0 } else { &[] })]
            });
            let addrs: [Option<SockaddrStorage>; BATCH] =
                std::array::from_fn(|i| (i < n).then(|| piece(next + i).1));
            SEND_HEADERS.with(|headers| {
                let mut headers = headers.borrow_mut();
                sendmmsg(
                    socket.as_raw_fd(),
                    &mut headers.0,
                    &slices[..n],
                    &addrs[..n],
                    [],
                    MsgFlags::empty(),
                )
                .map(|sent| sent.count())
            })
        };
        match sent {
            Ok(sent) if sent > 0 => {
                replied.datagrams += sent as u64;
                replied.bytes += (next..next + sent)
                    .map(|i| piece(i).0.len() as u64)
                    .sum::<u64>();
                next += sent;
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                tracing::debug!("socket buffer full; dropped {} replies", count - next);
                replied.dropped += (count - next) as u64;
                replied.stalled = true;
                return replied;
            }
            sent => {
                // The first datagram of the rest could not be sent; drop it and go on.
                let e = sent.map_or_else(|e| e.to_string(), |_| "nothing sent".into());
                tracing::debug!("reply to {} failed: {e}", piece(next).1);
                replied.dropped += 1;
                next += 1;
            }
        }
    }
    replied
}

pub(crate) async fn serve_unixgram(socket: UnixDatagram, endpoint: Endpoint, shared: Arc<Shared>) {
    let mut buf = vec![0u8; UNIXGRAM_BUF];
    let counters = shared.counters.transport(endpoint.transport());
    let mut faults = shared
        .config
        .faults
        .as_ref()
        .and_then(|plan| unixgram_faults(plan, &socket, &endpoint, &shared));
    loop {
        let (len, peer) = tokio::select! {
            biased;
            () = shared.drain.cancelled() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) if is_socket_broken(&e) => {
                    tracing::error!("receive on {endpoint} failed: {e}; this socket stops serving");
                    break;
                }
                Err(e) => {
                    tracing::debug!("receive on {endpoint}: {e}");
                    continue;
                }
            },
        };
        let data = &buf[..len];
        let std_peer: std::os::unix::net::SocketAddr = peer.into();
        let Some(reply_to) = crate::sys::unix_addr::reply_address(&std_peer) else {
            TransportCounters::add(&counters.datagrams_dropped, 1);
            tracing::debug!(
                "datagram from an unbound Unix socket on {endpoint}: no address to reply to"
            );
            continue;
        };
        log_datagram(&shared, UnixPeer(&reply_to), data);
        if let Some(faults) = &mut faults {
            // Replies are sent without waiting: one the socket cannot take at once is dropped.
            let answered = faults.answer(data, &reply_to, |reply, to| {
                rustix::net::sendto(&socket, reply, rustix::net::SendFlags::DONTWAIT, to).is_ok()
            });
            TransportCounters::add(&counters.datagrams, answered.datagrams);
            TransportCounters::add(&counters.datagram_bytes, answered.bytes);
            TransportCounters::add(&counters.datagrams_dropped, answered.failed);
            continue;
        }
        // Never wait for one peer: a peer that does not read its replies fills its receive
        // queue (a few datagrams), and waiting for room there would stall every other peer
        // and the drain. The socket is non-blocking, and sending directly rather than through
        // the reactor's write readiness means a refusal from one full peer never holds back
        // the sends to others.
        let sent = rustix::net::sendto(
            socket.as_fd(),
            data,
            rustix::net::SendFlags::DONTWAIT,
            &reply_to,
        );
        match sent {
            Ok(_) => count_echo(counters, len),
            Err(e) => {
                TransportCounters::add(&counters.datagrams_dropped, 1);
                if e == rustix::io::Errno::AGAIN {
                    tracing::debug!(
                        "dropped a reply to {} on {endpoint}: its receive queue is full",
                        UnixPeer(&reply_to)
                    );
                } else {
                    tracing::debug!("reply to {} on {endpoint} failed: {e}", UnixPeer(&reply_to));
                }
            }
        }
    }
    tracing::debug!("stopped serving {endpoint}");
}

/// The datagram faults of a Unix datagram socket, if the plan has any; held-back replies leave
/// from a duplicate of its descriptor.
fn unixgram_faults(
    plan: &super::fault::FaultPlan,
    socket: &UnixDatagram,
    endpoint: &Endpoint,
    shared: &Shared,
) -> Option<DatagramFaults<rustix::net::SocketAddrUnix>> {
    if !plan.has_datagram_faults() {
        return None;
    }
    let later = match socket.as_fd().try_clone_to_owned() {
        Ok(later) => later,
        Err(e) => {
            tracing::error!("cannot inject faults on {endpoint}: {e}");
            return None;
        }
    };
    DatagramFaults::new(plan, 0, shared.counters.clone(), move |data, to| {
        if let Err(e) = rustix::net::sendto(&later, data, rustix::net::SendFlags::DONTWAIT, to) {
            tracing::debug!("delayed reply to {to:?} failed: {e}");
        }
    })
}

/// Whether a receive error means the socket itself is unusable, so that every retry would fail
/// the same way at once: the loop then stops rather than spin.
fn is_socket_broken(err: &io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        err.raw_os_error().map(Errno::from_raw_os_error),
        Some(Errno::BADF | Errno::NOTSOCK | Errno::INVAL | Errno::FAULT | Errno::OPNOTSUPP)
    )
}

/// A Unix datagram peer as logged: its path, or `@` and its abstract name, escaped (the peer
/// chose it).
struct UnixPeer<'a>(&'a rustix::net::SocketAddrUnix);

impl std::fmt::Display for UnixPeer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use super::peer_text::escaped_whole;
        if let Some(path) = self.0.path_bytes() {
            return write!(f, "{}", escaped_whole(path));
        }
        #[cfg(target_os = "linux")]
        if let Some(name) = self.0.abstract_name() {
            return write!(f, "@{}", escaped_whole(name));
        }
        f.write_str("(unnamed)")
    }
}

fn count_echo(counters: &TransportCounters, len: usize) {
    TransportCounters::add(&counters.datagrams, 1);
    TransportCounters::add(&counters.datagram_bytes, len as u64);
}

fn log_datagram(shared: &Shared, peer: impl std::fmt::Display, data: &[u8]) {
    if shared.config.log_data {
        tracing::info!(target: crate::DATA_LOG, "{peer}: {}", super::peer_text::escaped(data));
    } else {
        tracing::trace!("{peer}: {} byte datagram", data.len());
    }
}
