//! Datagram faults: what happens to the reply to one datagram — dropped, cut short, one byte
//! flipped, sent twice, or held back (delay, reorder) and sent later by a thread of its own, so
//! the receive loop never sleeps.
//!
//! A datagram socket's loop makes one [`DatagramFaults`] when the server has datagram faults,
//! and otherwise none: the loop's only cost when faults are off is checking that `Option`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::plan::{Dice, FaultPlan};
use super::spec::{Action, Fault, FaultKind};
use crate::stats::Counters;

/// Dice numbers for datagram sockets start here, far from any connection's number.
const DATAGRAM_DICE: u64 = 1 << 63;

/// What the replies to some datagrams came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answered {
    /// Replies sent, or queued to be sent later.
    pub(crate) datagrams: u64,
    pub(crate) bytes: u64,
    /// Replies the socket refused.
    pub(crate) failed: u64,
}

/// Sends a reply later, from the delay thread.
type SendLater<A> = Box<dyn Fn(&[u8], &A) + Send>;

/// The datagram faults of one socket, with their dice and the queue of held-back replies.
pub(crate) struct DatagramFaults<A: Send + 'static> {
    drop: Option<Fault>,
    truncate: Option<(Fault, usize)>,
    corrupt: Option<Fault>,
    duplicate: Option<Fault>,
    delay: Option<(Fault, Duration, Duration)>,
    reorder: Option<(Fault, Duration)>,
    dice: Dice,
    counters: Arc<Counters>,
    /// Copy of a reply being changed (truncated, corrupted).
    scratch: Vec<u8>,
    later: Later<A>,
}

impl<A: Clone + Send + std::fmt::Debug + 'static> DatagramFaults<A> {
    /// The faults of `plan` for datagram socket `number`, if it has any. `send_later` sends a
    /// held-back reply; it runs on the delay thread.
    pub(crate) fn new(
        plan: &FaultPlan,
        number: u64,
        counters: Arc<Counters>,
        send_later: impl Fn(&[u8], &A) + Send + 'static,
    ) -> Option<DatagramFaults<A>> {
        if !plan.has_datagram_faults() {
            return None;
        }
        let get = |kind| plan.get(kind).copied();
        Some(DatagramFaults {
            drop: get(FaultKind::Drop),
            truncate: get(FaultKind::Truncate).map(|f| match f.action {
                Action::Truncate { len } => (f, usize::try_from(len).unwrap_or(usize::MAX)),
                _ => (f, usize::MAX),
            }),
            corrupt: get(FaultKind::Corrupt),
            duplicate: get(FaultKind::Duplicate),
            delay: get(FaultKind::Delay).map(|f| match f.action {
                Action::Delay { base, jitter } => (f, base, jitter),
                _ => (f, Duration::ZERO, Duration::ZERO),
            }),
            reorder: get(FaultKind::Reorder).map(|f| match f.action {
                Action::Reorder { hold } => (f, hold),
                _ => (f, Duration::ZERO),
            }),
            dice: Dice::new(plan.seed(), DATAGRAM_DICE + number),
            counters,
            scratch: Vec::new(),
            later: Later {
                queue: None,
                send: Some(Box::new(send_later)),
            },
        })
    }

    /// Answers one datagram, `payload` from `to`, with the faults that hit it; `send` sends a
    /// reply now and says whether the socket took it.
    pub(crate) fn answer(
        &mut self,
        payload: &[u8],
        to: &A,
        mut send: impl FnMut(&[u8], &A) -> bool,
    ) -> Answered {
        let mut answered = Answered::default();
        if let Some(fault) = &self.drop
            && self.dice.hits(fault)
        {
            self.injected(FaultKind::Drop, to);
            return answered;
        }
        // Whether the reply is the changed copy in `scratch` rather than `payload` itself.
        let mut changed = false;
        if let Some((fault, len)) = &self.truncate
            && self.dice.hits(fault)
        {
            self.scratch.clear();
            self.scratch
                .extend_from_slice(&payload[..payload.len().min(*len)]);
            changed = true;
            self.injected(FaultKind::Truncate, to);
        }
        if let Some(fault) = &self.corrupt
            && self.dice.hits(fault)
        {
            if !changed {
                self.scratch.clear();
                self.scratch.extend_from_slice(payload);
                changed = true;
            }
            if !self.scratch.is_empty() {
                let at = self.dice.index(self.scratch.len());
                self.scratch[at] ^= self.dice.flip();
                self.injected(FaultKind::Corrupt, to);
            }
        }
        let reply = if changed { &self.scratch[..] } else { payload };
        let copies = match &self.duplicate {
            Some(fault) if self.dice.hits(fault) => {
                self.injected(FaultKind::Duplicate, to);
                2
            }
            _ => 1,
        };
        let mut hold = Duration::ZERO;
        if let Some((fault, base, jitter)) = &self.delay
            && self.dice.hits(fault)
        {
            hold += self.dice.around(*base, *jitter);
            self.injected(FaultKind::Delay, to);
        }
        if let Some((fault, by)) = &self.reorder
            && self.dice.hits(fault)
        {
            hold += *by;
            self.injected(FaultKind::Reorder, to);
        }
        for _ in 0..copies {
            if hold.is_zero() {
                if !send(reply, to) {
                    answered.failed += 1;
                    continue;
                }
            } else {
                self.later.push(Instant::now() + hold, reply, to);
            }
            answered.datagrams += 1;
            answered.bytes += reply.len() as u64;
        }
        answered
    }

    fn injected(&self, kind: FaultKind, to: &A) {
        self.counters.faults().add(kind, 1);
        tracing::debug!("fault: {kind} on the reply to {to:?}");
    }
}

/// Replies held back, sent by a thread of their own when due. The thread starts with the
/// first held reply and ends when the socket's loop drops this (replies still held are lost
/// then, as they would be by a server going away).
struct Later<A: Send + 'static> {
    queue: Option<mpsc::Sender<Held<A>>>,
    /// Moved to the thread when it starts.
    send: Option<SendLater<A>>,
}

struct Held<A> {
    due: Instant,
    /// Tie-break that keeps replies due at the same instant in the order they were held.
    order: u64,
    payload: Vec<u8>,
    to: A,
}

impl<A> PartialEq for Held<A> {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}
impl<A> Eq for Held<A> {}
impl<A> PartialOrd for Held<A> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<A> Ord for Held<A> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.order).cmp(&(other.due, other.order))
    }
}

impl<A: Send + 'static> Later<A> {
    fn push(&mut self, due: Instant, payload: &[u8], to: &A)
    where
        A: Clone,
    {
        if self.queue.is_none()
            && let Some(send) = self.send.take()
        {
            let (tx, rx) = mpsc::channel();
            let started = std::thread::Builder::new()
                .name("sockecho-fault-delay".into())
                .spawn(move || send_when_due(&rx, &*send));
            match started {
                Ok(_) => self.queue = Some(tx),
                Err(e) => tracing::warn!("cannot start the thread that delays replies: {e}"),
            }
        }
        if let Some(queue) = &self.queue {
            // Fails only once the thread is gone; the reply is then lost like a dropped one.
            let _ = queue.send(Held {
                due,
                order: 0,
                payload: payload.to_vec(),
                to: to.clone(),
            });
        }
    }
}

/// The delay thread: keeps held replies in order of due time and sends each when it is due.
fn send_when_due<A>(queue: &mpsc::Receiver<Held<A>>, send: &dyn Fn(&[u8], &A)) {
    let mut held: BinaryHeap<Reverse<Held<A>>> = BinaryHeap::new();
    let mut order = 0u64;
    loop {
        let now = Instant::now();
        while held.peek().is_some_and(|Reverse(h)| h.due <= now) {
            if let Some(Reverse(h)) = held.pop() {
                send(&h.payload, &h.to);
            }
        }
        let next = match held.peek() {
            Some(Reverse(h)) => queue.recv_timeout(h.due.saturating_duration_since(now)),
            None => queue
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(mut h) => {
                order += 1;
                h.order = order;
                held.push(Reverse(h));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Replies the delay thread sent.
    type SentLater = Arc<Mutex<Vec<Vec<u8>>>>;

    fn faults(specs: &[&str]) -> (DatagramFaults<u32>, SentLater, Arc<Counters>) {
        let plan = FaultPlan::new(specs.iter().map(|s| s.parse().unwrap()).collect(), 5).unwrap();
        let counters = Arc::new(Counters::default());
        let later = Arc::new(Mutex::new(Vec::new()));
        let sink = later.clone();
        let f = DatagramFaults::new(&plan, 0, counters.clone(), move |data: &[u8], _: &u32| {
            sink.lock().unwrap().push(data.to_vec());
        })
        .expect("datagram faults");
        (f, later, counters)
    }

    fn answer_all(f: &mut DatagramFaults<u32>, n: u8) -> (Vec<Vec<u8>>, Answered) {
        let mut sent = Vec::new();
        let mut total = Answered::default();
        for i in 0..n {
            let payload = [i; 8];
            let a = f.answer(&payload, &1, |data, _| {
                sent.push(data.to_vec());
                true
            });
            total.datagrams += a.datagrams;
            total.bytes += a.bytes;
        }
        (sent, total)
    }

    #[test]
    fn every_nth_reply_is_dropped_duplicated_truncated_or_corrupted() {
        let (mut f, _, counters) = faults(&["drop@1/5", "duplicate@1/4", "truncate=3@1/3"]);
        let (sent, total) = answer_all(&mut f, 20);
        // 4 dropped; of the 16 answered, every 4th twice; of those, every 3rd cut to 3 bytes.
        assert_eq!(total.datagrams, 16 + 4);
        assert_eq!(sent.len(), 20);
        let short = sent.iter().filter(|s| s.len() == 3).count();
        assert_eq!(short, 5 + 1, "{sent:?}"); // 16 answered: 5 truncated, one of them twice
        let injected = counters.faults();
        assert_eq!(injected.get(FaultKind::Drop), 4);
        assert_eq!(injected.get(FaultKind::Duplicate), 4);
        assert_eq!(injected.get(FaultKind::Truncate), 5);

        let (mut f, _, counters) = faults(&["corrupt"]);
        let (sent, _) = answer_all(&mut f, 10);
        for (i, reply) in sent.iter().enumerate() {
            let differing = reply.iter().filter(|b| **b != i as u8).count();
            assert_eq!(differing, 1, "{reply:?}");
        }
        assert_eq!(counters.faults().get(FaultKind::Corrupt), 10);
    }

    #[test]
    fn held_back_replies_are_sent_later_in_due_order() {
        let (mut f, later, counters) = faults(&["reorder=30ms@1/2"]);
        let (now, total) = answer_all(&mut f, 4);
        assert_eq!(now, vec![vec![0u8; 8], vec![2u8; 8]]);
        assert_eq!(total.datagrams, 4);
        let deadline = Instant::now() + Duration::from_secs(5);
        while later.lock().unwrap().len() < 2 {
            assert!(Instant::now() < deadline, "held replies never came");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(*later.lock().unwrap(), vec![vec![1u8; 8], vec![3u8; 8]]);
        assert_eq!(counters.faults().get(FaultKind::Reorder), 2);
    }
}
