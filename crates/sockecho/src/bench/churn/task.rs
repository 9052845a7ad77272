//! The churn loop for TLS: one tokio task per slot, which opens connection after connection
//! (TCP connect and handshake, counted together as the connect time), exchanges its messages
//! through the same [`StreamConn`] as the long-lived TLS connections, and closes it. Each
//! handshake of the measured period counts as full or resumed (`Totals::tls_handshakes`), the
//! only sign a run gives of whether the server let `--tls-resume` resume anything. Off Linux,
//! which has neither the io_uring nor the epoll loop, plain TCP and Unix slots run here too.
//!
//! Open-loop starts wait on tokio's timer, whose granularity is a millisecond: a start may go
//! out up to a millisecond after it was due, and its connect time, counted from when it was
//! due, includes that. A TLS handshake costs far more than that on either side.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use super::{Starts, count_failure};
use crate::bench::flow::interest;
use crate::bench::plan::{ConnPlan, ThreadCtx};
use crate::bench::stream::StreamConn;
use crate::bench::tls::TlsSocket;
use crate::bench::wire::AsyncWire;
#[cfg(not(target_os = "linux"))]
use crate::bench::wire::StreamSocket;
#[cfg(not(target_os = "linux"))]
use crate::connect::Peer;
use crate::connect::{TlsClient, connect_tcp, send_proxy_header};
use crate::proxy_protocol::SendProxy;

/// What a slot connects to.
#[derive(Debug, Clone)]
pub(crate) struct SlotTarget {
    pub server: Server,
    /// Local addresses to connect from, in turn; empty lets the kernel choose.
    pub sources: Rc<[IpAddr]>,
    pub connect_timeout: Duration,
    /// A PROXY protocol header to send before the handshake (`--send-proxy`).
    pub send_proxy: Option<SendProxy>,
}

/// The server a slot connects to, and how.
#[derive(Debug, Clone)]
pub(crate) enum Server {
    /// TLS over TCP.
    Tls(TlsClient, SocketAddr),
    /// Plain TCP or Unix, off Linux.
    #[cfg(not(target_os = "linux"))]
    Plain(Peer),
}

/// A slot's open connection.
enum Opened {
    Tls(TlsSocket),
    #[cfg(not(target_os = "linux"))]
    Plain(StreamSocket),
}

impl SlotTarget {
    /// The target of one slot. With `tls_resume` a TLS slot is one returning client: it
    /// resumes the session of its own last connection, never a ticket another slot received,
    /// so that whether it resumes is up to the server, as for separate clients.
    pub fn for_slot(&self, tls_resume: bool) -> SlotTarget {
        let mut target = self.clone();
        if tls_resume && let Server::Tls(client, _) = &mut target.server {
            *client = client.with_resumption(true);
        }
        target
    }

    /// Opens a connection (for TLS, up to the end of the handshake) from `source`.
    async fn open(&self, source: Option<IpAddr>) -> io::Result<Opened> {
        match &self.server {
            Server::Tls(client, addr) => {
                let mut tcp = connect_tcp(*addr, source).await?;
                send_proxy_header(&mut tcp, self.send_proxy.as_ref())
                    .await
                    .map_err(io::Error::other)?;
                let tls = client.handshake(tcp).await.map_err(io::Error::other)?;
                Ok(Opened::Tls(TlsSocket::new(tls)))
            }
            #[cfg(not(target_os = "linux"))]
            Server::Plain(peer) => Ok(Opened::Plain(StreamSocket::connect(peer, source).await?)),
        }
    }
}

impl Opened {
    /// Makes the coming close a reset (`SO_LINGER` 0). Failure only means an orderly close.
    fn linger_zero(&self) {
        let _ = match self {
            Opened::Tls(s) => socket2::SockRef::from(s.tcp()).set_linger(Some(Duration::ZERO)),
            #[cfg(not(target_os = "linux"))]
            Opened::Plain(StreamSocket::Tcp(s)) => {
                socket2::SockRef::from(s).set_linger(Some(Duration::ZERO))
            }
            // A Unix stream has no TIME_WAIT to spare.
            #[cfg(not(target_os = "linux"))]
            Opened::Plain(StreamSocket::Unix(_)) => Ok(()),
        };
    }
}

/// How one connection's exchange ended.
enum Exchange {
    /// Every message answered (or given up as the connection closed): close and go on.
    Done,
    /// The server closed or reset it first.
    Broken(io::Error),
    /// The run's final wait ran out with replies still out.
    OutOfTime,
}

/// Runs one slot until the run ends, then adds its counts to the thread's totals.
pub(crate) async fn run(
    ctx: Rc<ThreadCtx>,
    target: SlotTarget,
    plan: ConnPlan,
    starts: Option<Rc<Starts>>,
) {
    let clock = ctx.clock;
    let mut conn = StreamConn::new(&ctx, plan);
    let rst = ctx.churn.is_some_and(|c| c.rst);
    tokio::time::sleep_until(clock.tokio_instant(ctx.schedule().start)).await;
    let mut attempt = plan.id as usize;
    loop {
        ctx.follow_end();
        let end = ctx.schedule().end;
        let began = match &starts {
            Some(starts) => {
                let Some(due) = starts.take(end) else {
                    break;
                };
                tokio::time::sleep_until(clock.tokio_instant(due)).await;
                due
            }
            None => {
                let now = clock.now();
                if now >= end {
                    break;
                }
                now
            }
        };
        let measured = ctx.schedule().is_measured(began);
        let source =
            (!target.sources.is_empty()).then(|| target.sources[attempt % target.sources.len()]);
        attempt = attempt.wrapping_add(1);
        let opened = tokio::time::timeout(target.connect_timeout, target.open(source))
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
        let mut socket = match opened {
            Ok(socket) => socket,
            Err(e) => {
                count_failure(&mut conn.flow.totals, &e, measured);
                continue;
            }
        };
        let counted = conn.restart(began, clock.now());
        if counted && let Opened::Tls(s) = &socket {
            conn.flow.totals.tls_handshakes.count(s.resumed());
        }
        let outcome = match &mut socket {
            Opened::Tls(s) => exchange(&ctx, &mut conn, s).await,
            #[cfg(not(target_os = "linux"))]
            Opened::Plain(s) => exchange(&ctx, &mut conn, s).await,
        };
        match outcome {
            Exchange::Done => {
                if rst {
                    socket.linger_zero();
                }
            }
            Exchange::Broken(e) => conn.broken(&e),
            Exchange::OutOfTime => {
                conn.flow.give_up();
                break;
            }
        }
    }
    conn.finish();
}

/// Exchanges the connection's messages, until done, broken or out of time.
async fn exchange(
    ctx: &ThreadCtx,
    conn: &mut StreamConn<'_>,
    socket: &mut impl AsyncWire,
) -> Exchange {
    let clock = ctx.clock;
    let out_of_time = tokio::time::sleep_until(clock.tokio_instant(ctx.phase_deadline(true)));
    tokio::pin!(out_of_time);
    loop {
        let all_out = match conn.flush(socket) {
            Ok(all_out) => all_out,
            Err(e) => return Exchange::Broken(e),
        };
        if all_out && conn.exchanged(clock.now()) {
            return Exchange::Done;
        }
        tokio::select! {
            ready = socket.ready(interest(all_out)) => match ready {
                Ok(r) if r.is_readable() || r.is_read_closed() => {
                    if let Err(e) = conn.read(socket) {
                        return Exchange::Broken(e);
                    }
                }
                Ok(_) => {}
                Err(e) => return Exchange::Broken(e),
            },
            () = &mut out_of_time => return Exchange::OutOfTime,
        }
    }
}
