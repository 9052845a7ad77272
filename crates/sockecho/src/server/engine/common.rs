//! What the two engines have in common: what their handle needs of either ([`Engine`]), their
//! connection table ([`Table`]), and how often their timer looks at the connections.

#![deny(unsafe_code)]

#[cfg(target_os = "linux")]
use std::io;
#[cfg(target_os = "linux")]
use std::sync::Arc;
#[cfg(target_os = "linux")]
use std::time::Duration;

#[cfg(target_os = "linux")]
use super::inbox::Inbox;
#[cfg(target_os = "linux")]
use crate::server::echo::DRAIN_SETTLE;
#[cfg(target_os = "linux")]
use crate::server::shared::Shared;

/// An engine, as its thread drives it.
#[cfg(target_os = "linux")]
pub(super) trait Engine: Sized {
    /// How logs name it.
    const NAME: &'static str;
    /// Sets the engine up on the thread that will run it; fails if this kernel (or a sandbox)
    /// does not offer what it needs.
    fn new(inbox: Arc<Inbox>, shared: Arc<Shared>) -> io::Result<Self>;
    /// Serves until the accepting side is done and the last connection has ended.
    fn run(&mut self) -> io::Result<()>;
    /// After `run` failed: refuses further connections, gives the listeners back, and ends
    /// every connection where it stands, so shutdown can finish.
    fn stop_after_failure(&mut self);
}

/// How often an engine looks at idle and draining connections (and at accepting paused for
/// want of a permit): a tenth of the idle timeout, within 5 ms..25 ms (a quarter of the drain's
/// settle time).
#[cfg(target_os = "linux")]
pub(super) fn tick_period(idle_timeout: Option<Duration>) -> Duration {
    let period = idle_timeout.map_or(DRAIN_SETTLE / 4, |idle| idle / 10);
    period.clamp(Duration::from_millis(5), DRAIN_SETTLE / 4)
}

/// An engine's connection table: slots reused through a free list, each with a generation that
/// tells its connections apart, so that a completion or event left over for a closed connection
/// is never taken for the next one in its slot. A slot is a `u16` generation beside the item,
/// so the table costs nothing per connection beyond the item itself.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) struct Table<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    /// Items in the table.
    len: usize,
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
struct Slot<T> {
    generation: u16,
    item: Option<T>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
impl<T> Table<T> {
    /// The slot the next [`insert`](Table::insert) takes, and its generation: for naming the
    /// item to the kernel before it is in the table.
    pub(super) fn vacant(&self) -> (u32, u16) {
        match self.free.last() {
            Some(&slot) => (slot, self.slots[slot as usize].generation),
            None => (self.slots.len() as u32, 0),
        }
    }

    /// Puts `item` in the slot [`vacant`](Table::vacant) names, and returns that slot.
    pub(super) fn insert(&mut self, item: T) -> u32 {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot {
                generation: 0,
                item: None,
            });
            (self.slots.len() - 1) as u32
        });
        self.slots[slot as usize].item = Some(item);
        self.len += 1;
        slot
    }

    /// The item in `slot`, with the slot's generation.
    pub(super) fn get_mut(&mut self, slot: u32) -> Option<(&mut T, u16)> {
        let entry = self.slots.get_mut(slot as usize)?;
        let generation = entry.generation;
        entry.item.as_mut().map(|item| (item, generation))
    }

    /// The item in `slot` if the slot is still at `generation` (else the one named has gone).
    pub(super) fn get_current(&mut self, slot: u32, generation: u16) -> Option<&mut T> {
        self.slots
            .get_mut(slot as usize)
            .filter(|entry| entry.generation == generation)?
            .item
            .as_mut()
    }

    /// Takes the item out of `slot`; the slot moves to its next generation and is free again.
    pub(super) fn remove(&mut self, slot: u32) -> Option<T> {
        let entry = self.slots.get_mut(slot as usize)?;
        let item = entry.item.take()?;
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(slot);
        self.len -= 1;
        Some(item)
    }

    /// One past the highest slot ever used: every item is in a slot below it.
    pub(super) fn slots(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Items in the table.
    pub(super) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_reused_under_a_new_generation() {
        let mut table = Table::default();
        assert_eq!(table.vacant(), (0, 0));
        let a = table.insert("a");
        let b = table.insert("b");
        assert_eq!((a, b, table.len()), (0, 1, 2));
        assert_eq!(table.remove(a), Some("a"));
        assert_eq!(table.remove(a), None, "removed twice");
        assert_eq!(table.len(), 1);
        // The freed slot comes back, one generation on: the old name no longer reaches it.
        assert_eq!(table.vacant(), (0, 1));
        let c = table.insert("c");
        assert_eq!(c, 0);
        assert_eq!(table.get_current(0, 0), None);
        assert_eq!(table.get_current(0, 1).copied(), Some("c"));
        assert_eq!(table.get_mut(1).map(|(item, g)| (*item, g)), Some(("b", 0)));
        assert_eq!(table.slots(), 2);
        assert!(table.get_mut(2).is_none());
    }

    #[test]
    fn generations_wrap_around() {
        let mut table = Table::default();
        for _ in 0..=u16::MAX as u32 {
            let slot = table.insert(());
            table.remove(slot);
        }
        // 65,536 connections later the slot's generation is back at 0.
        assert_eq!(table.vacant(), (0, 0));
    }
}
