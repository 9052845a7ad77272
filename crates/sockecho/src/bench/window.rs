//! The messages one connection has in flight: when each was sent, whether it counts toward the
//! measured period, and what became of it. Replies are matched here, which is where a reply is
//! told to be on time, reordered, duplicated or late.
//!
//! Sequence numbers are assigned in order from 0. The window is a ring of slots, a power of two
//! long, at least 64 and four times the pipeline depth, so a duplicate or late reply to a recent
//! message is still recognised after its slot was answered; an older one is simply "late".

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Never used.
    Free,
    /// Sent, no reply yet.
    Pending,
    /// Answered (rightly or not).
    Done,
    /// Given up on (timeout, end of run, connection lost).
    Lost,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: u64,
    /// When latency counts from: the send time in closed loop, the scheduled time in open loop.
    sent_at: u64,
    /// When it actually went out, which is what a reply timeout counts from.
    wire_at: u64,
    measured: bool,
    state: State,
}

/// A message's bookkeeping, as handed back when it is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub sent_at: u64,
    pub measured: bool,
}

/// How a reply relates to the messages sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The reply to a message in flight. `reordered` if a later message's reply came first.
    InFlight { sent: Sent, reordered: bool },
    /// That message was already answered.
    Duplicate { measured: bool },
    /// That message was already given up on, or is too old to tell.
    Late,
    /// No such message was ever sent.
    Unknown,
}

/// The in-flight messages of one connection.
#[derive(Debug)]
pub struct Window {
    slots: Box<[Slot]>,
    mask: u64,
    next_seq: u64,
    /// No message below this is pending.
    oldest: u64,
    pending: usize,
    highest_answered: Option<u64>,
}

impl Window {
    /// A window for up to `pipeline` messages in flight.
    pub fn new(pipeline: usize) -> Window {
        let len = (pipeline.saturating_mul(4)).max(64).next_power_of_two();
        let free = Slot {
            seq: 0,
            sent_at: 0,
            wire_at: 0,
            measured: false,
            state: State::Free,
        };
        Window {
            slots: vec![free; len].into_boxed_slice(),
            mask: len as u64 - 1,
            next_seq: 0,
            oldest: 0,
            pending: 0,
            highest_answered: None,
        }
    }

    /// Starts afresh for a new connection, keeping the slots' memory.
    pub fn reset(&mut self) {
        for slot in self.slots.iter_mut() {
            slot.state = State::Free;
        }
        self.next_seq = 0;
        self.oldest = 0;
        self.pending = 0;
        self.highest_answered = None;
    }

    /// Messages sent and not yet resolved.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// The sequence number the next message gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn slot(&self, seq: u64) -> &Slot {
        &self.slots[(seq & self.mask) as usize]
    }

    fn slot_mut(&mut self, seq: u64) -> &mut Slot {
        &mut self.slots[(seq & self.mask) as usize]
    }

    /// Whether a new message may go out: fewer than `pipeline` are pending, and the slot the
    /// next one takes is free. The second can fail while one old message stays unanswered and
    /// later ones keep cycling through the ring; the connection then waits for that message's
    /// reply or timeout rather than forget it.
    pub fn has_room(&self, pipeline: usize) -> bool {
        self.pending < pipeline && self.slot(self.next_seq).state != State::Pending
    }

    /// Records a new message and returns its sequence number. Call only when
    /// [`has_room`](Window::has_room).
    pub fn push(&mut self, sent_at: u64, wire_at: u64, measured: bool) -> u64 {
        let seq = self.next_seq;
        let slot = self.slot_mut(seq);
        debug_assert!(slot.state != State::Pending, "window overrun");
        *slot = Slot {
            seq,
            sent_at,
            wire_at,
            measured,
            state: State::Pending,
        };
        self.next_seq += 1;
        self.pending += 1;
        seq
    }

    /// The oldest message still pending.
    pub fn oldest_pending(&mut self) -> Option<u64> {
        while self.oldest < self.next_seq && self.slot(self.oldest).state != State::Pending {
            self.oldest += 1;
        }
        (self.oldest < self.next_seq).then_some(self.oldest)
    }

    /// When the oldest pending message went out.
    pub fn oldest_wire_at(&mut self) -> Option<u64> {
        self.oldest_pending().map(|seq| self.slot(seq).wire_at)
    }

    /// Whether message `seq` is pending.
    pub fn is_pending(&self, seq: u64) -> bool {
        seq < self.next_seq && {
            let slot = self.slot(seq);
            slot.seq == seq && slot.state == State::Pending
        }
    }

    /// Whether message `seq` was ever sent.
    pub fn was_sent(&self, seq: u64) -> bool {
        seq < self.next_seq
    }

    /// Takes a correct reply to message `seq`.
    pub fn answer(&mut self, seq: u64) -> Match {
        if seq >= self.next_seq {
            return Match::Unknown;
        }
        let slot = *self.slot(seq);
        if slot.seq != seq || slot.state == State::Free {
            return Match::Late;
        }
        match slot.state {
            State::Pending => {
                self.slot_mut(seq).state = State::Done;
                self.pending -= 1;
                let reordered = self.highest_answered.is_some_and(|h| h > seq);
                self.highest_answered = Some(self.highest_answered.map_or(seq, |h| h.max(seq)));
                Match::InFlight {
                    sent: Sent {
                        sent_at: slot.sent_at,
                        measured: slot.measured,
                    },
                    reordered,
                }
            }
            State::Done => Match::Duplicate {
                measured: slot.measured,
            },
            State::Lost | State::Free => Match::Late,
        }
    }

    /// Resolves pending message `seq` as wrongly answered (mismatched or truncated).
    pub fn fail(&mut self, seq: u64) -> Option<Sent> {
        if !self.is_pending(seq) {
            return None;
        }
        let slot = self.slot_mut(seq);
        slot.state = State::Done;
        let sent = Sent {
            sent_at: slot.sent_at,
            measured: slot.measured,
        };
        self.pending -= 1;
        Some(sent)
    }

    /// Gives up on every pending message that went out at or before `cutoff`, oldest first,
    /// calling `lost` with whether each was measured.
    pub fn expire(&mut self, cutoff: u64, mut lost: impl FnMut(bool)) {
        while let Some(seq) = self.oldest_pending() {
            let slot = self.slot_mut(seq);
            if slot.wire_at > cutoff {
                break;
            }
            slot.state = State::Lost;
            let measured = slot.measured;
            self.pending -= 1;
            lost(measured);
        }
    }

    /// Gives up on every pending message.
    pub fn lose_all(&mut self, mut lost: impl FnMut(bool)) {
        for seq in self.oldest..self.next_seq {
            let slot = self.slot_mut(seq);
            if slot.seq == seq && slot.state == State::Pending {
                slot.state = State::Lost;
                lost(slot.measured);
            }
        }
        self.pending = 0;
        self.oldest = self.next_seq;
    }

    /// The sequence number that a reply holding only the low `bits` bits, `low`, most likely
    /// stands for: the latest one sent with those bits.
    pub fn unwrap_seq(&self, low: u64, bits: u32) -> Option<u64> {
        if bits >= 64 {
            return Some(low);
        }
        let newest = self.next_seq.checked_sub(1)?;
        let modulus = 1u64 << bits;
        let back = newest.wrapping_sub(low) & (modulus - 1);
        newest.checked_sub(back)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_in_order_and_out_of_order() {
        let mut w = Window::new(4);
        for i in 0..4 {
            assert_eq!(w.push(100 + i, 100 + i, true), i);
        }
        assert_eq!(w.pending(), 4);
        assert!(matches!(
            w.answer(0),
            Match::InFlight {
                sent: Sent { sent_at: 100, .. },
                reordered: false
            }
        ));
        assert!(matches!(
            w.answer(2),
            Match::InFlight {
                reordered: false,
                ..
            }
        ));
        // 1 comes after 2 was answered: reordered.
        assert!(matches!(
            w.answer(1),
            Match::InFlight {
                reordered: true,
                ..
            }
        ));
        assert_eq!(w.answer(1), Match::Duplicate { measured: true });
        assert_eq!(w.answer(9), Match::Unknown);
        assert_eq!(w.oldest_pending(), Some(3));
        assert_eq!(w.pending(), 1);
    }

    #[test]
    fn expiry_and_late_replies() {
        let mut w = Window::new(2);
        w.push(10, 10, false);
        w.push(20, 20, true);
        let mut lost = Vec::new();
        w.expire(15, |m| lost.push(m));
        assert_eq!(lost, [false]);
        assert_eq!(w.answer(0), Match::Late);
        assert!(matches!(w.answer(1), Match::InFlight { .. }));
        w.push(30, 30, true);
        w.lose_all(|m| lost.push(m));
        assert_eq!(lost, [false, true]);
        assert_eq!(w.pending(), 0);
        assert_eq!(w.oldest_pending(), None);
    }

    #[test]
    fn a_stuck_message_blocks_the_ring_instead_of_being_overwritten() {
        let mut w = Window::new(2);
        let stuck = w.push(0, 0, true);
        let mut sent = 1;
        while w.has_room(2) {
            let s = w.push(0, 0, true);
            assert!(matches!(w.answer(s), Match::InFlight { .. }));
            sent += 1;
        }
        assert_eq!(sent, 64);
        assert!(w.is_pending(stuck));
        w.expire(0, |_| {});
        assert!(w.has_room(2));
    }

    #[test]
    fn old_slots_are_late_not_confused() {
        let mut w = Window::new(1);
        for _ in 0..200 {
            let s = w.push(0, 0, true);
            assert!(matches!(w.answer(s), Match::InFlight { .. }));
        }
        assert_eq!(w.answer(3), Match::Late);
        assert_eq!(w.answer(199), Match::Duplicate { measured: true });
    }

    #[test]
    fn unwraps_short_sequence_numbers() {
        let mut w = Window::new(1);
        assert_eq!(w.unwrap_seq(0, 8), None);
        for _ in 0..300 {
            let s = w.push(0, 0, true);
            w.answer(s);
        }
        // Sent 0..=299; low byte 0x2b (43) is most recently 299.
        assert_eq!(w.unwrap_seq(299 & 0xff, 8), Some(299));
        assert_eq!(w.unwrap_seq(298 & 0xff, 8), Some(298));
        assert_eq!(w.unwrap_seq(44 & 0xff, 8), Some(44));
        assert_eq!(w.unwrap_seq(45, 8), Some(45));
        assert_eq!(w.unwrap_seq(7, 64), Some(7));
    }
}
