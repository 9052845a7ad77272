//! [`EpollEngine`]: the loop of one epoll engine thread. It owns the epoll set, the scratch
//! buffer and the connection table; each turn it waits for events, accepts on the listeners
//! that are ready, moves the bytes of the connections the events name, and closes the ones
//! that are over.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::{Timespec, epoll};
use rustix::io::Errno;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::accept::{Accepting, LISTENER_KEY};
use super::conn::{Echo, Pumped};
use crate::server::conn::{Admitted, ConnLog};
use crate::server::echo::{CloseReason, SCRATCH_SIZE};
use crate::server::engine::common::{Engine, Table, tick_period};
use crate::server::engine::inbox::{Arrival, Inbox};
use crate::server::peer_text::escaped;
use crate::server::shared::Shared;
use crate::stats::TransportCounters;

/// The epoll key of the inbox's eventfd.
const WAKE_KEY: u64 = 1 << 63;

/// Events one `epoll_wait` returns at most.
const EVENTS: usize = 256;

/// What a connection is registered for, once: reading, writing and the peer's FIN, each as an
/// edge.
const CONN_EVENTS: epoll::EventFlags = epoll::EventFlags::IN
    .union(epoll::EventFlags::OUT)
    .union(epoll::EventFlags::RDHUP)
    .union(epoll::EventFlags::ET);

/// One connection served by the engine.
struct EpollConn {
    fd: OwnedFd,
    admitted: Admitted,
    log: ConnLog,
    /// Keeps the server's shutdown waiting until this connection has ended.
    _token: TaskTrackerToken,
    echo: Echo,
    /// Listed to go on next turn (it stopped at its reads for the turn).
    again: bool,
}

/// A connection's epoll key: its slot, and the slot's generation (below [`LISTENER_KEY`]'s bit).
fn conn_key(slot: u32, generation: u16) -> u64 {
    (u64::from(generation) << 32) | u64::from(slot)
}

fn split_conn_key(key: u64) -> (u32, u16) {
    (key as u32, (key >> 32) as u16)
}

/// The engine proper: owned by its thread.
pub(crate) struct EpollEngine {
    ep: OwnedFd,
    inbox: Arc<Inbox>,
    shared: Arc<Shared>,
    /// The connections, by slot (an event's key names its connection's slot and generation).
    conns: Table<EpollConn>,
    /// Where every connection's reads land, to be written straight back.
    scratch: Box<[u8]>,
    events: Vec<epoll::Event>,
    /// Connections to go on next turn, by key.
    again: Vec<u64>,
    /// Last turn's `again`, kept for its memory.
    again_spare: Vec<u64>,
    accepting: Accepting,
    /// Accepted and admitted this turn, not yet served.
    admitted: Vec<Arrival>,
    /// How often the timer looks at the connections.
    period: Duration,
    /// When it looks next, if anything needs it.
    next_tick: Option<Instant>,
    /// When shutdown started, if it has.
    draining: Option<Instant>,
    cut: bool,
    now: Instant,
}

impl Engine for EpollEngine {
    const NAME: &'static str = "epoll";

    fn new(inbox: Arc<Inbox>, shared: Arc<Shared>) -> io::Result<EpollEngine> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(
            &ep,
            &inbox.wake,
            epoll::EventData::new_u64(WAKE_KEY),
            epoll::EventFlags::IN,
        )?;
        let period = tick_period(shared.config.idle_timeout);
        Ok(EpollEngine {
            ep,
            inbox,
            shared,
            conns: Table::default(),
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            events: Vec::with_capacity(EVENTS),
            again: Vec::new(),
            again_spare: Vec::new(),
            accepting: Accepting::default(),
            admitted: Vec::new(),
            period,
            next_tick: None,
            draining: None,
            cut: false,
            now: Instant::now(),
        })
    }

    /// The loop: wait, handle the events, until the accepting side is done and the last
    /// connection has ended.
    fn run(&mut self) -> io::Result<()> {
        loop {
            if self.inbox.finish.load(Ordering::Acquire) && self.conns.len() == 0 {
                self.take_arrivals();
                if self.conns.len() == 0 {
                    return Ok(());
                }
            }
            let timeout = self.timeout();
            self.events.clear();
            match epoll::wait(&self.ep, spare_capacity(&mut self.events), timeout.as_ref()) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            self.now = Instant::now();
            // The connections that stopped at their share last turn go first: their bytes
            // bring no new edge.
            let mut again =
                std::mem::replace(&mut self.again, std::mem::take(&mut self.again_spare));
            for &key in &again {
                let (slot, generation) = split_conn_key(key);
                if let Some(conn) = self.conns.get_current(slot, generation) {
                    conn.again = false;
                    self.pump(slot);
                }
            }
            again.clear();
            self.again_spare = again;
            for index in 0..self.events.len() {
                let event = self.events[index];
                self.on_event(event.data.u64(), event.flags);
            }
            if self.next_tick.is_some_and(|at| self.now >= at) {
                self.next_tick = None;
                self.on_tick();
            }
            self.arm_tick();
        }
    }

    /// After an epoll failure: refuses further connections, gives the listeners back, and
    /// closes every connection.
    fn stop_after_failure(&mut self) {
        self.inbox.stop();
        self.accepting.give_back();
        for slot in 0..self.conns.slots() {
            self.end(slot, Err(io::Error::other("epoll engine failed")));
        }
    }
}

impl EpollEngine {
    /// How long the next wait may last: not at all with connections to go on, until the next
    /// tick if one is due, else until an event.
    fn timeout(&self) -> Option<Timespec> {
        let wait = if self.again.is_empty() {
            self.next_tick?.saturating_duration_since(self.now)
        } else {
            Duration::ZERO
        };
        Some(Timespec {
            tv_sec: wait.as_secs() as i64,
            tv_nsec: i64::from(wait.subsec_nanos()),
        })
    }

    /// Sets the next tick if something needs it: open connections with an idle timeout or a
    /// shutdown under way, or accepting paused.
    fn arm_tick(&mut self) {
        if self.next_tick.is_some() {
            return;
        }
        let needed = (self.conns.len() > 0
            && (self.draining.is_some() || self.shared.config.idle_timeout.is_some()))
            || self.accepting.paused();
        if needed {
            self.next_tick = Some(self.now + self.period);
        }
    }

    fn on_event(&mut self, key: u64, flags: epoll::EventFlags) {
        if key == WAKE_KEY {
            self.on_wake();
            return;
        }
        if key & LISTENER_KEY != 0 {
            let index = (key & !LISTENER_KEY) as usize;
            self.accepting
                .accept(&self.ep, &self.shared, self.now, index, &mut self.admitted);
            self.serve_admitted();
            return;
        }
        let (slot, generation) = split_conn_key(key);
        let Some(conn) = self.conns.get_current(slot, generation) else {
            // Left over from a connection closed earlier in this turn.
            return;
        };
        conn.echo.event(
            flags.contains(epoll::EventFlags::IN),
            flags.contains(epoll::EventFlags::OUT),
            flags.intersects(
                epoll::EventFlags::RDHUP | epoll::EventFlags::HUP | epoll::EventFlags::ERR,
            ),
        );
        self.pump(slot);
    }

    /// Moves a connection's bytes as far as its socket allows, and ends it if it is over.
    fn pump(&mut self, slot: u32) {
        let EpollEngine {
            conns,
            scratch,
            shared,
            again,
            now,
            ..
        } = self;
        let Some((conn, generation)) = conns.get_mut(slot) else {
            return;
        };
        let EpollConn {
            fd,
            admitted,
            log,
            echo,
            again: listed,
            ..
        } = conn;
        let counters = shared.counters.transport(admitted.transport);
        let log_data = shared.config.log_data;
        let mut on_data = |data: &[u8]| {
            let n = data.len() as u64;
            log.bytes += n;
            // Counted as it arrives, so metrics move while the connection is open.
            log.counted += n;
            TransportCounters::add(&counters.stream_bytes, n);
            if log_data {
                tracing::info!(target: crate::DATA_LOG, "{}: {}", admitted.peer, escaped(data));
            }
        };
        match echo.pump(fd.as_fd(), scratch, *now, &mut on_data) {
            Pumped::Wait => {}
            Pumped::Again => {
                if !*listed {
                    *listed = true;
                    again.push(conn_key(slot, generation));
                }
            }
            Pumped::Ended(outcome) => self.end(slot, outcome),
        }
    }

    /// Takes the handed-over connections and listeners, and acts on drain and cut.
    fn on_wake(&mut self) {
        // Level-triggered: reading the counter ends the event.
        let mut counter = [0u8; 8];
        let _ = rustix::io::read(&self.inbox.wake, &mut counter);
        self.take_arrivals();
        if self.inbox.drain.load(Ordering::Acquire) && self.draining.is_none() {
            self.draining = Some(self.now);
            self.accepting
                .stop(&self.ep, &self.shared, &mut self.admitted);
            self.serve_admitted();
        }
        if self.inbox.cut.load(Ordering::Acquire) && !self.cut {
            self.cut = true;
            for slot in 0..self.conns.slots() {
                self.end(slot, Ok(CloseReason::Cut));
            }
        }
    }

    fn take_arrivals(&mut self) {
        let (arrivals, listeners) = self.inbox.take();
        for arrival in arrivals {
            self.insert(arrival);
        }
        for arrival in listeners {
            self.accepting
                .take_listeners(&self.ep, &self.shared, self.now, arrival);
        }
    }

    /// Serves the connections accepting has just admitted.
    fn serve_admitted(&mut self) {
        while let Some(arrival) = self.admitted.pop() {
            self.insert(arrival);
        }
    }

    /// Starts serving an admitted connection: one registration, and its first event (if bytes
    /// are there already) comes with the next wait.
    fn insert(&mut self, arrival: Arrival) {
        let Arrival {
            fd,
            admitted,
            token,
        } = arrival;
        let (slot, generation) = self.conns.vacant();
        let key = epoll::EventData::new_u64(conn_key(slot, generation));
        if let Err(e) = epoll::add(&self.ep, &fd, key, CONN_EVENTS) {
            // Out of memory, or the user's limit on watched descriptors.
            tracing::warn!("{}: closed unserved: cannot watch it ({e})", admitted.peer);
            return;
        }
        let log = ConnLog::opened(&admitted, &self.shared);
        let slot = self.conns.insert(EpollConn {
            fd,
            admitted,
            log,
            _token: token,
            echo: Echo::new(self.now),
            again: false,
        });
        if self.cut {
            self.end(slot, Ok(CloseReason::Cut));
        }
    }

    /// Idle timeouts, the drain's half-close once a connection has been quiet, and accepting
    /// again if permits came back.
    fn on_tick(&mut self) {
        let now = self.now;
        let idle = self.shared.config.idle_timeout;
        let draining = self.draining;
        for slot in 0..self.conns.slots() {
            let Some((conn, _)) = self.conns.get_mut(slot) else {
                continue;
            };
            if let Some(outcome) = conn.echo.tick(conn.fd.as_fd(), now, idle, draining) {
                self.end(slot, outcome);
            }
        }
        if self.accepting.paused() {
            self.accepting.resume(&self.ep, &self.shared, now);
        }
    }

    /// Closes a connection (which takes it out of the set), logs its end and gives its permit
    /// back.
    fn end(&mut self, slot: u32, outcome: io::Result<CloseReason>) {
        let Some(conn) = self.conns.remove(slot) else {
            return;
        };
        let EpollConn {
            fd, admitted, log, ..
        } = conn;
        drop(fd);
        log.closed(&admitted, &self.shared, outcome);
        // Gives its `--max-conns` permit back: a paused listener may accept again.
        drop(admitted);
        if self.accepting.paused() {
            self.accepting.resume(&self.ep, &self.shared, self.now);
        }
    }
}
