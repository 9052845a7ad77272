//! Stream faults: the echo of a connection that was dealt faults — delayed, paced to a
//! bandwidth, written in slices, never answered (black hole), or ended on purpose with a reset
//! or a close after so many bytes or so long.
//!
//! This is a separate, simpler echo loop than `echo`'s: one read, then its faulty echo, then
//! the next read. The fast path stays free of any fault check; connections come here only when
//! the server has stream faults (and then all of them do, on the tokio path). On shutdown such
//! a connection is closed (FIN) at once, without the plain echo's settling period: it is a test
//! fixture, and its echoes may be held back by design anyway.

use std::future::poll_fn;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::plan::{ConnFaults, Ending};
use super::spec::{Action, FaultKind};
use crate::server::conn::{Admitted, ConnLog, PeerName};
use crate::server::echo::{CloseReason, EchoIo, Generic};
use crate::server::shared::Shared;

/// Bytes read at a time.
const READ_SIZE: usize = 64 * 1024;
/// How long a connection closed on purpose (FIN) waits for the peer to close its side before
/// it is dropped.
const CLOSE_LINGER: Duration = Duration::from_secs(5);

/// A stream whose close can be made a reset (RST) instead of an orderly FIN.
pub(crate) trait Resettable {
    /// Makes closing this stream reset the connection (SO_LINGER 0). Unix sockets have no
    /// reset; closing one with unread bytes is the nearest thing and happens anyway.
    fn reset_on_close(&self);
}

/// Sets SO_LINGER to zero, so that closing sends RST.
pub(crate) fn linger_zero(socket: &impl AsFd) {
    if let Err(e) = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO)) {
        tracing::debug!("SO_LINGER 0: {e}; the connection closes with FIN instead");
    }
}

impl Resettable for tokio::net::TcpStream {
    fn reset_on_close(&self) {
        linger_zero(self);
    }
}

impl Resettable for tokio::net::UnixStream {
    fn reset_on_close(&self) {}
}

impl Resettable for Generic<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    fn reset_on_close(&self) {
        linger_zero(self.0.get_ref().0);
    }
}

/// How the echo loop ended.
enum Ended {
    PeerClosed,
    Idle,
    Drained,
    Cut,
    /// An ending fault's limit was reached.
    Limit(Ending),
    Error(io::Error),
}

/// Serves one connection with the faults it was dealt, then logs its summary.
pub(crate) async fn connection<S: EchoIo + Resettable>(
    mut stream: S,
    conn: Admitted,
    shared: Arc<Shared>,
    faults: Box<ConnFaults>,
) {
    let mut log = ConnLog::opened(&conn, &shared);
    let mut echo = FaultyEcho {
        faults: *faults,
        shared: &shared,
        peer: &conn.peer,
        echoed: 0,
        next_write: Instant::now(),
    };
    echo.announce();
    let time_end = echo.faults.time_end();
    let deadline = time_end.map(|(after, _)| Instant::now() + after);
    let ended = tokio::select! {
        biased;
        () = shared.cut.cancelled() => Ended::Cut,
        () = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        } => Ended::Limit(time_end.map_or(Ending::Close, |(_, how)| how)),
        ended = echo.run(&mut stream) => ended,
    };
    log.bytes = echo.echoed;
    let result = match ended {
        Ended::PeerClosed => close_write(&mut stream)
            .await
            .map(|()| CloseReason::PeerClosed),
        Ended::Idle => close_write(&mut stream)
            .await
            .map(|()| CloseReason::IdleTimeout),
        Ended::Drained => {
            finish(&mut stream, &shared).await;
            Ok(CloseReason::Drained)
        }
        Ended::Cut => Ok(CloseReason::Cut),
        Ended::Limit(how) => {
            shared.counters.faults().add(how.kind(), 1);
            tracing::debug!(
                "fault: {} on {} after {} bytes",
                how.kind(),
                conn.peer,
                echo.echoed
            );
            match how {
                Ending::Reset => stream.reset_on_close(),
                Ending::Close => finish(&mut stream, &shared).await,
            }
            Ok(CloseReason::Fault)
        }
        Ended::Error(e) => Err(e),
    };
    drop(stream);
    log.closed(&conn, &shared, result);
    drop(conn);
}

/// Sends FIN, then reads and drops whatever the peer still sends until it closes too (so that
/// closing does not turn into a reset over unread bytes), for at most [`CLOSE_LINGER`] or
/// until the grace period ends.
async fn finish<S: EchoIo>(stream: &mut S, shared: &Shared) {
    if close_write(stream).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; READ_SIZE];
    let discard = async {
        while let Ok(n) = read_some(stream, &mut buf).await
            && n > 0
        {}
    };
    tokio::select! {
        () = discard => {}
        () = shared.cut.cancelled() => {}
        () = tokio::time::sleep(CLOSE_LINGER) => {}
    }
}

async fn close_write<S: EchoIo>(stream: &mut S) -> io::Result<()> {
    match poll_fn(|cx| stream.poll_close_write(cx)).await {
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        other => other,
    }
}

async fn read_some<S: EchoIo>(stream: &mut S, buf: &mut [u8]) -> io::Result<usize> {
    match poll_fn(|cx| stream.poll_read_some(cx, buf)).await {
        // A TLS peer that closes without close_notify: an ordinary end, as in `echo`.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        other => other,
    }
}

async fn write_all<S: EchoIo>(stream: &mut S, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = poll_fn(|cx| stream.poll_write_some(cx, data)).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the peer accepted no more bytes",
            ));
        }
        data = &data[n..];
    }
    Ok(())
}

/// One connection's faulty echo.
struct FaultyEcho<'a> {
    faults: ConnFaults,
    shared: &'a Shared,
    peer: &'a PeerName,
    /// Bytes echoed so far.
    echoed: u64,
    /// With a bandwidth cap: when the next piece may be written.
    next_write: Instant,
}

impl FaultyEcho<'_> {
    /// Counts and logs the per-connection faults this connection was dealt.
    fn announce(&self) {
        let counters = self.shared.counters.faults();
        let f = &self.faults;
        for (kind, dealt) in [
            (FaultKind::Blackhole, f.blackhole),
            (FaultKind::Bandwidth, f.bandwidth.is_some()),
            (FaultKind::Slice, f.slice.is_some()),
        ] {
            if dealt {
                counters.add(kind, 1);
                tracing::debug!("fault: {kind} on {} (connection {})", self.peer, f.number);
            }
        }
    }

    async fn run<S: EchoIo>(&mut self, stream: &mut S) -> Ended {
        let mut buf = vec![0u8; READ_SIZE];
        let idle = self.shared.config.idle_timeout;
        let byte_end = self.faults.byte_end();
        if let Some((0, how)) = byte_end {
            return Ended::Limit(how);
        }
        loop {
            let read = async {
                match idle {
                    Some(idle) => tokio::time::timeout(idle, read_some(stream, &mut buf)).await,
                    None => Ok(read_some(stream, &mut buf).await),
                }
            };
            let n = tokio::select! {
                biased;
                () = self.shared.drain.cancelled() => return Ended::Drained,
                read = read => match read {
                    Err(_) => return Ended::Idle,
                    Ok(Ok(0)) => return Ended::PeerClosed,
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => return Ended::Error(e),
                },
            };
            if self.faults.blackhole {
                continue;
            }
            let mut take = n;
            let mut ending = None;
            if let Some((limit, how)) = byte_end {
                let room = limit.saturating_sub(self.echoed);
                if n as u64 >= room {
                    take = usize::try_from(room).unwrap_or(n);
                    ending = Some(how);
                }
            }
            self.delay().await;
            if let Err(e) = self.write(stream, &buf[..take]).await {
                return Ended::Error(e);
            }
            if let Some(how) = ending {
                return Ended::Limit(how);
            }
        }
    }

    /// Waits before an echo, if the delay fault hits this read.
    async fn delay(&mut self) {
        let Some(fault) = self.faults.delay else {
            return;
        };
        let Action::Delay { base, jitter } = fault.action else {
            return;
        };
        if !self.faults.dice.hits(&fault) {
            return;
        }
        let wait = self.faults.dice.around(base, jitter);
        self.shared.counters.faults().add(FaultKind::Delay, 1);
        tracing::debug!("fault: delay of {wait:?} on {}", self.peer);
        tokio::time::sleep(wait).await;
    }

    /// Writes one echo, in slices and at the bandwidth cap if those were dealt.
    async fn write<S: EchoIo>(&mut self, stream: &mut S, data: &[u8]) -> io::Result<()> {
        let (slice, pause) = self.faults.slice.unwrap_or((u64::MAX, Duration::ZERO));
        let mut piece = usize::try_from(slice).unwrap_or(usize::MAX);
        if let Some(rate) = self.faults.bandwidth {
            // Pieces of about 20 ms worth keep the pace even rather than bursty.
            let smooth = usize::try_from((rate / 50).max(1)).unwrap_or(usize::MAX);
            piece = piece.min(smooth);
        }
        let mut pieces = data.chunks(piece.max(1)).peekable();
        while let Some(chunk) = pieces.next() {
            if let Some(rate) = self.faults.bandwidth {
                // Never earlier than the pace allows, and no credit saved up while idle.
                let now = Instant::now();
                if self.next_write > now {
                    tokio::time::sleep_until(self.next_write).await;
                }
                let start = self.next_write.max(now);
                self.next_write = start + Duration::from_secs_f64(chunk.len() as f64 / rate as f64);
            }
            write_all(stream, chunk).await?;
            self.echoed += chunk.len() as u64;
            if !pause.is_zero() && pieces.peek().is_some() {
                tokio::time::sleep(pause).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::fault::plan::{Admission, StreamFaults};
    use crate::server::fault::{Fault, FaultPlan};

    fn dealt(specs: &[&str]) -> Box<ConnFaults> {
        let faults: Vec<Fault> = specs.iter().map(|s| s.parse().unwrap()).collect();
        let plan = FaultPlan::new(faults, 9).unwrap();
        match StreamFaults::new(&plan).unwrap().admit() {
            Admission::Serve(conn) => conn,
            Admission::Refuse => panic!("refused"),
        }
    }

    #[test]
    fn endings_pick_the_first_limit_of_each_kind() {
        let conn = dealt(&["reset-after=64KiB", "close-after=1KiB"]);
        assert_eq!(conn.byte_end(), Some((1024, Ending::Close)));
        assert_eq!(conn.time_end(), None);
        let conn = dealt(&["reset-after=2s"]);
        assert_eq!(
            conn.time_end(),
            Some((Duration::from_secs(2), Ending::Reset))
        );
    }
}
