//! One connection's echo on the epoll engine ([`Echo`]): what it knows of its socket's
//! readiness, the bytes the peer could not take yet, and where it is in its life. It touches
//! only the socket it is given and the engine's scratch buffer, so it is tested on socket pairs.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};

use crate::server::echo::{CloseReason, DRAIN_SETTLE};
use crate::sys::socket::NO_SIGPIPE;

/// Reads a connection does in one turn at most before the others get theirs: with the 256 KiB
/// scratch buffer, 4 MiB per turn. (Four reads per turn made the 99th percentile at 10 x 1 MiB
/// 1.1-1.4x the tokio path's; sixteen, as the tokio path: docs/benchmarks.md.)
pub(super) const READS_PER_TURN: u32 = 16;

/// What a call to [`Echo::pump`] ended with.
#[derive(Debug)]
pub(super) enum Pumped {
    /// Waiting for the socket: the next edge (readable, writable, hang-up) goes on.
    Wait,
    /// Stopped at [`READS_PER_TURN`] with the socket still readable: go on next turn, as no
    /// edge will come for bytes already there.
    Again,
    /// Over: close the socket (its close sends our FIN, or a reset after an error).
    Ended(io::Result<CloseReason>),
}

/// The echo of one connection.
#[derive(Debug)]
pub(super) struct Echo {
    /// Bytes read but not yet written back: empty (and unallocated) unless the peer's socket
    /// refused part of a write. While it holds anything, nothing more is read.
    pending: Vec<u8>,
    /// How much of `pending` has been written.
    written: usize,
    pub(super) last_activity: Instant,
    /// The socket may have bytes (or an EOF, or an error) to read: set by an edge, cleared by a
    /// read that emptied it.
    readable: bool,
    /// The socket may take more bytes: cleared by a send it refused (in part), set by an edge.
    writable: bool,
    /// The peer's FIN (or a hang-up or error) has been reported. No further edge comes for it,
    /// so reading goes on until it is read, short reads or not.
    hung_up: bool,
    /// The peer's EOF has been read.
    peer_eof: bool,
    /// Draining for shutdown: our write side is shut; what the peer sends is discarded until
    /// its EOF.
    half_closed: bool,
}

impl Echo {
    pub(super) fn new(now: Instant) -> Echo {
        Echo {
            pending: Vec::new(),
            written: 0,
            last_activity: now,
            // The registration reports what is there already.
            readable: false,
            writable: true,
            hung_up: false,
            peer_eof: false,
            half_closed: false,
        }
    }

    /// An epoll event for the socket: what it reports readable, writable or hung up.
    pub(super) fn event(&mut self, readable: bool, writable: bool, hung_up: bool) {
        self.readable |= readable || hung_up;
        self.writable |= writable || hung_up;
        self.hung_up |= hung_up;
    }

    /// Moves bytes until the socket would block, the turn's reads are used up, or the echo is
    /// over. Each run of bytes read is shown to `on_data` before it is echoed (counters, the
    /// data log); bytes discarded while half-closed are not.
    pub(super) fn pump(
        &mut self,
        fd: BorrowedFd<'_>,
        scratch: &mut [u8],
        now: Instant,
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Pumped {
        let mut reads = 0;
        loop {
            if self.written < self.pending.len() {
                if !self.writable {
                    return Pumped::Wait;
                }
                let left = self.pending.len() - self.written;
                let sent = match send(fd, &self.pending[self.written..]) {
                    Ok(n) => n,
                    Err(e) => return Pumped::Ended(Err(e)),
                };
                if sent > 0 {
                    self.last_activity = now;
                }
                self.written += sent;
                if sent < left {
                    // The peer's socket is full: its writable edge goes on.
                    self.writable = false;
                    return Pumped::Wait;
                }
                // Give the memory back: an idle connection holds no buffer.
                self.pending = Vec::new();
                self.written = 0;
                continue;
            }
            if self.peer_eof {
                return Pumped::Ended(Ok(if self.half_closed {
                    CloseReason::Drained
                } else {
                    CloseReason::PeerClosed
                }));
            }
            if !self.readable {
                return Pumped::Wait;
            }
            if reads == READS_PER_TURN {
                return Pumped::Again;
            }
            reads += 1;
            let n = match rustix::net::recv(fd, &mut *scratch, RecvFlags::DONTWAIT) {
                Ok((_, n)) => n,
                Err(Errno::AGAIN) => {
                    self.readable = false;
                    return Pumped::Wait;
                }
                Err(Errno::INTR) => continue,
                // The peer went away instead of closing cleanly while we drained: done.
                Err(_) if self.half_closed => return Pumped::Ended(Ok(CloseReason::Drained)),
                Err(e) => return Pumped::Ended(Err(e.into())),
            };
            if n == 0 {
                self.peer_eof = true;
                continue;
            }
            if n < scratch.len() && !self.hung_up {
                // A stream socket's read returns less than asked only once it has emptied the
                // receive queue: the next bytes bring an edge of their own.
                self.readable = false;
            }
            self.last_activity = now;
            if self.half_closed {
                continue;
            }
            let data = &scratch[..n];
            on_data(data);
            let sent = if self.writable {
                match send(fd, data) {
                    Ok(sent) => sent,
                    Err(e) => return Pumped::Ended(Err(e)),
                }
            } else {
                0
            };
            if sent < n {
                self.writable = false;
                self.pending.extend_from_slice(&data[sent..]);
            }
        }
    }

    /// What a timer tick does to the connection: `Some` outcome if the idle timeout has passed;
    /// while draining (since `drain_started`), a connection with nothing pending that has been
    /// quiet for the settle time is half-closed, and `pump` should go on (to discard what comes
    /// until the peer's EOF).
    pub(super) fn tick(
        &mut self,
        fd: BorrowedFd<'_>,
        now: Instant,
        idle_timeout: Option<Duration>,
        drain_started: Option<Instant>,
    ) -> Option<io::Result<CloseReason>> {
        let quiet = now.saturating_duration_since(self.last_activity);
        if idle_timeout.is_some_and(|idle| quiet >= idle) {
            // Also while half-closed for shutdown, as on the other paths.
            return Some(Ok(CloseReason::IdleTimeout));
        }
        let drain_started = drain_started?;
        if self.half_closed
            || !self.pending.is_empty()
            || now.saturating_duration_since(self.last_activity.max(drain_started)) < DRAIN_SETTLE
        {
            return None;
        }
        // Quiet for the settle time since the shutdown began: whatever the peer sent before it
        // has arrived and gone back. Our FIN tells the peer; its EOF ends the connection.
        self.half_closed = true;
        match rustix::net::shutdown(fd, rustix::net::Shutdown::Write) {
            Ok(()) => None,
            // The peer is gone already: it has everything it sent.
            Err(_) => Some(Ok(CloseReason::Drained)),
        }
    }

    /// Bytes waiting for the peer to take them.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.pending.len() - self.written
    }
}

/// Sends what the socket takes of `data` without waiting: 0 if it is full.
fn send(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    loop {
        match rustix::net::send(fd, data, NO_SIGPIPE | SendFlags::DONTWAIT) {
            Ok(n) => return Ok(n),
            Err(Errno::AGAIN) => return Ok(0),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    const SCRATCH: usize = 64 * 1024;

    /// A connected pair: the server's end (non-blocking, as accepted) and the client's.
    fn pair() -> (UnixStream, UnixStream) {
        let (server, client) = UnixStream::pair().expect("socket pair");
        server.set_nonblocking(true).expect("non-blocking");
        (server, client)
    }

    fn pump(echo: &mut Echo, server: &UnixStream, seen: &mut Vec<u8>) -> Pumped {
        let mut scratch = vec![0; SCRATCH];
        echo.pump(
            server.as_fd(),
            &mut scratch,
            Instant::now(),
            &mut |data: &[u8]| seen.extend_from_slice(data),
        )
    }

    #[test]
    fn echoes_what_arrives_and_ends_after_the_peers_eof() {
        let (server, mut client) = pair();
        let mut echo = Echo::new(Instant::now());
        let mut seen = Vec::new();
        // Nothing is read before an edge says there is something.
        client.write_all(b"hello").unwrap();
        assert!(matches!(pump(&mut echo, &server, &mut seen), Pumped::Wait));
        assert!(seen.is_empty());
        echo.event(true, false, false);
        assert!(matches!(pump(&mut echo, &server, &mut seen), Pumped::Wait));
        assert_eq!(seen, b"hello");
        let mut back = [0; 5];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        // The short read cleared readability: without an edge the EOF is not read yet.
        client.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(matches!(pump(&mut echo, &server, &mut seen), Pumped::Wait));
        echo.event(true, false, true);
        match pump(&mut echo, &server, &mut seen) {
            Pumped::Ended(Ok(CloseReason::PeerClosed)) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bytes_and_fin_reported_together_are_both_read() {
        let (server, mut client) = pair();
        let mut echo = Echo::new(Instant::now());
        let mut seen = Vec::new();
        client.write_all(b"last words").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        // One edge with the FIN: the short read of the bytes must not stop reading.
        echo.event(true, false, true);
        match pump(&mut echo, &server, &mut seen) {
            Pumped::Ended(Ok(CloseReason::PeerClosed)) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(seen, b"last words");
        let mut back = Vec::new();
        drop(server);
        client.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"last words");
    }

    #[test]
    fn a_peer_that_does_not_read_stops_the_reading_at_one_scratch_buffer() {
        let (server, mut client) = pair();
        let mut echo = Echo::new(Instant::now());
        let mut seen = Vec::new();
        client.set_nonblocking(true).unwrap();
        // The client writes far more than the socket buffers hold, and reads nothing.
        let chunk = vec![7u8; 64 * 1024];
        let mut wrote = 0usize;
        for _ in 0..200 {
            match client.write(&chunk) {
                Ok(n) => wrote += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            echo.event(true, true, false);
            match pump(&mut echo, &server, &mut seen) {
                Pumped::Wait | Pumped::Again => {}
                other => panic!("{other:?}"),
            }
            assert!(
                echo.pending() <= SCRATCH,
                "pending grew to {}",
                echo.pending()
            );
        }
        assert!(echo.pending() > 0, "the peer's socket never filled");
        assert!(wrote > seen.len(), "everything was read: {wrote}");
        // Once the client reads, the rest comes back, byte for byte.
        client.set_nonblocking(false).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let reader = std::thread::spawn(move || {
            let mut back = Vec::new();
            client.read_to_end(&mut back).unwrap();
            back
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            echo.event(true, true, true);
            match pump(&mut echo, &server, &mut seen) {
                Pumped::Ended(Ok(CloseReason::PeerClosed)) => break,
                Pumped::Ended(other) => panic!("{other:?}"),
                Pumped::Wait | Pumped::Again => {}
            }
            assert!(Instant::now() < deadline, "the echo did not finish");
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(server);
        let back = reader.join().unwrap();
        assert_eq!(back.len(), wrote);
        assert_eq!(seen.len(), wrote);
        assert!(back.iter().all(|&b| b == 7));
    }

    #[test]
    fn a_fast_sender_yields_after_its_reads_for_the_turn() {
        let (server, mut client) = pair();
        let mut echo = Echo::new(Instant::now());
        let mut seen = Vec::new();
        // A small scratch buffer, so that several turns' worth waits in the socket at once.
        const SMALL: usize = 1024;
        let turn = SMALL * READS_PER_TURN as usize;
        let data: Vec<u8> = (0..turn * 3 + 100).map(|i| i as u8).collect();
        client.write_all(&data).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        echo.event(true, false, true);
        let mut scratch = vec![0; SMALL];
        let mut turns = 0;
        let ended = loop {
            let before = seen.len();
            let pumped = echo.pump(
                server.as_fd(),
                &mut scratch,
                Instant::now(),
                &mut |d: &[u8]| seen.extend_from_slice(d),
            );
            turns += 1;
            assert!(
                seen.len() - before <= turn,
                "one turn read {}",
                seen.len() - before
            );
            match pumped {
                Pumped::Again => assert_eq!(seen.len() - before, turn),
                Pumped::Ended(result) => break result,
                Pumped::Wait => panic!("waiting with bytes and the FIN in the socket"),
            }
        };
        assert_eq!(ended.unwrap(), CloseReason::PeerClosed);
        assert_eq!(turns, 4);
        assert_eq!(seen, data);
        drop(server);
        let mut back = Vec::new();
        client.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn draining_half_closes_a_quiet_connection_and_discards_until_the_peers_eof() {
        let (server, mut client) = pair();
        let t0 = Instant::now();
        let mut echo = Echo::new(t0);
        let mut seen = Vec::new();
        let idle = Some(Duration::from_secs(60));
        // Not yet quiet for the settle time since the shutdown started.
        assert!(echo.tick(server.as_fd(), t0, idle, Some(t0)).is_none());
        assert!(!echo.half_closed);
        let later = t0 + DRAIN_SETTLE;
        assert!(echo.tick(server.as_fd(), later, idle, Some(t0)).is_none());
        assert!(echo.half_closed);
        // The client reads our FIN; what it sends now is discarded, not echoed.
        let mut buf = [0; 8];
        assert_eq!(client.read(&mut buf).unwrap(), 0);
        client.write_all(b"late").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        echo.event(true, false, true);
        match pump(&mut echo, &server, &mut seen) {
            Pumped::Ended(Ok(CloseReason::Drained)) => {}
            other => panic!("{other:?}"),
        }
        assert!(seen.is_empty(), "{seen:?}");
    }

    #[test]
    fn the_idle_timeout_ends_a_quiet_connection_but_not_a_busy_one() {
        let (server, _client) = pair();
        let t0 = Instant::now();
        let mut echo = Echo::new(t0);
        let idle = Some(Duration::from_millis(100));
        assert!(
            echo.tick(server.as_fd(), t0 + Duration::from_millis(99), idle, None)
                .is_none()
        );
        echo.last_activity = t0 + Duration::from_millis(50);
        assert!(
            echo.tick(server.as_fd(), t0 + Duration::from_millis(120), idle, None)
                .is_none()
        );
        match echo.tick(server.as_fd(), t0 + Duration::from_millis(150), idle, None) {
            Some(Ok(CloseReason::IdleTimeout)) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_reset_ends_the_echo_with_its_error() {
        let (server, client) = pair();
        let mut echo = Echo::new(Instant::now());
        let mut seen = Vec::new();
        // Make the server's next send fail: the peer is gone.
        drop(client);
        echo.pending = b"x".to_vec();
        echo.event(false, true, true);
        match pump(&mut echo, &server, &mut seen) {
            Pumped::Ended(Err(e)) => assert_eq!(e.raw_os_error(), Some(libc::EPIPE)),
            other => panic!("{other:?}"),
        }
    }
}
