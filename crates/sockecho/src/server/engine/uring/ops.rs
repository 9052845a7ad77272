//! How a completion is told apart: each request's `user_data` holds its [`Op`], the connection
//! slot (or listener) it is for, and that slot's generation.

#![deny(unsafe_code)]

/// What a completion is for, kept in the low byte of its `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Op {
    Recv = 1,
    Send = 2,
    PollOut = 3,
    Cancel = 4,
    /// The eventfd read that wakes the engine for new connections and shutdown steps.
    Wake = 5,
    /// The periodic timer for idle timeouts, drain, and paused accepting.
    Tick = 6,
    /// A multishot accept; its slot is the listener's index.
    Accept = 7,
    /// The close of an ended connection's socket.
    Close = 8,
}

impl Op {
    pub(super) fn from_u8(op: u8) -> Option<Op> {
        Some(match op {
            1 => Op::Recv,
            2 => Op::Send,
            3 => Op::PollOut,
            4 => Op::Cancel,
            5 => Op::Wake,
            6 => Op::Tick,
            7 => Op::Accept,
            8 => Op::Close,
            _ => return None,
        })
    }
}

/// `user_data` of a request: connection slot, the slot's generation (so a late completion for
/// a connection that has ended cannot be taken for its successor's), and the operation.
pub(super) fn user_data(slot: u32, generation: u16, op: Op) -> u64 {
    (u64::from(slot) << 32) | (u64::from(generation) << 16) | op as u64
}

pub(super) fn split_user_data(data: u64) -> (u32, u16, Option<Op>) {
    (
        (data >> 32) as u32,
        (data >> 16) as u16,
        Op::from_u8(data as u8),
    )
}

/// The slot number of requests that belong to the engine rather than a connection.
pub(super) const ENGINE_SLOT: u32 = u32::MAX;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        let data = user_data(123_456, 65_535, Op::PollOut);
        assert_eq!(split_user_data(data), (123_456, 65_535, Some(Op::PollOut)));
        assert_eq!(
            split_user_data(user_data(ENGINE_SLOT, 0, Op::Wake)),
            (ENGINE_SLOT, 0, Some(Op::Wake))
        );
        assert_eq!(split_user_data(0).2, None);
    }
}
