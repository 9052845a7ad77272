//! The io_uring pieces the server's echo engine (`server::uring`) and the load generator's
//! loop (`bench::uring`) share: how a ring is set up, and the receive pool — a provided buffer
//! ring that the kernel consumes incrementally (Linux 6.12), so that many small receives share
//! one buffer and a connection holds no buffer while it has nothing to read.
//!
//! The pool's memory is written by the kernel while the program holds no reference into it, so
//! it is only reached through raw pointers, and a pool must outlive every request that may
//! still receive into it. Every `unsafe` block says why it holds.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{IoUring, squeue, types};

/// Bytes in each pool buffer: the most one receive takes. 64 KiB takes a 1 MiB message in 16
/// receives.
pub(crate) const BUF_SIZE: usize = 64 * 1024;
/// Buffers in the server engine's pool (a power of two, as the kernel requires): 4 MiB in all.
/// The pool is consumed incrementally, so a 64-byte message takes 64 bytes of a buffer, not all
/// of it: a thousand small echoes in one turn fit in one buffer. A pool smaller than what
/// arrives in one turn makes receives fail with ENOBUFS and be armed again: 1 MiB did that on 1
/// receive in 10 at 10 x 1 MiB and on 2 in 3 with 50 x 4 KiB pipelined 16 deep; 4 MiB on 1 in
/// 250 and 1 in 9. Also the most buffers any pool may have.
pub(crate) const BUF_COUNT: u16 = 64;
/// `IOU_PBUF_RING_INC`: the kernel consumes each buffer incrementally (Linux 6.12).
pub(crate) const PBUF_RING_INC: u16 = 2;
/// The pool's buffer-group id in this ring.
pub(crate) const BUF_GROUP: u16 = 0;
/// Submission queue entries.
pub(crate) const RING_ENTRIES: u32 = 1024;
/// Completion queue entries: room for several turns' worth (the kernel also keeps completions
/// that do not fit until they are reaped, so none is lost).
pub(crate) const COMPLETION_ENTRIES: u32 = 8 * RING_ENTRIES;

/// Checks that this kernel, and any sandbox around the process, allow everything a ring user
/// needs: a single-issuer ring with deferred task work, and an incrementally consumed provided
/// buffer ring.
pub(crate) fn probe() -> io::Result<()> {
    let pool = Pool::new(BUF_COUNT)?;
    let ring = new_ring()?;
    register_pool(&ring, &pool)
}

/// How the server engine asks for a connection's bytes, by what the kernel can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReceiveKind {
    /// A multishot receive that ends by itself once it has taken a given number of bytes
    /// (Linux 6.17, `sqe->optlen` of a multishot `IORING_OP_RECV`). Without the cap, one
    /// multishot receive drains whatever the socket holds into the pool before the engine can
    /// stop it: a client that writes and never reads left about 3 MiB queued per connection.
    CappedMultishot,
    /// Older kernels refuse the cap: one receive of at most one pool buffer at a time, armed
    /// again after each completion.
    Single,
}

/// What this kernel supports, found once per process by arming a capped multishot receive on a
/// socket pair (kernels before 6.17 refuse it with EINVAL). If the probe itself cannot run, the
/// single receive, which every kernel with provided buffers takes.
pub(crate) fn receive_kind() -> ReceiveKind {
    static KIND: std::sync::OnceLock<ReceiveKind> = std::sync::OnceLock::new();
    *KIND.get_or_init(|| match probe_capped_receive() {
        Ok(true) => ReceiveKind::CappedMultishot,
        Ok(false) => ReceiveKind::Single,
        Err(e) => {
            tracing::debug!("io_uring capped receive probe failed: {e}");
            ReceiveKind::Single
        }
    })
}

fn probe_capped_receive() -> io::Result<bool> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    // Declaration order is drop order, reversed: the ring goes first, ending the request before
    // the socket and the pool it points at.
    let pool = Pool::new(1)?;
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair()?;
    let mut ring = new_ring()?;
    register_pool(&ring, &pool)?;
    theirs.write_all(b"ab")?;
    let entry = receive_request(ours.as_raw_fd(), ReceiveKind::CappedMultishot, 1);
    // SAFETY: the request writes only into the pool, which outlives the ring.
    unsafe { push(&mut ring, &entry) };
    ring.submit_and_wait(1)?;
    let Some(cqe) = ring.completion().next() else {
        return Ok(false);
    };
    // Supported: both bytes arrive in one completion, which, past the cap of 1, is the last.
    Ok(cqe.result() > 0 && !io_uring::cqueue::more(cqe.flags()))
}

/// A receive of `kind` on socket `fd` into the pool, taking at most `cap` bytes before it ends
/// (a capped multishot receive may overshoot by the rest of one pool buffer; a single receive
/// takes at most one buffer).
pub(crate) fn receive_request(
    fd: std::os::fd::RawFd,
    kind: ReceiveKind,
    cap: u32,
) -> squeue::Entry {
    match kind {
        ReceiveKind::CappedMultishot => {
            let mut entry = io_uring::opcode::RecvMulti::new(types::Fd(fd), BUF_GROUP).build();
            set_optlen(&mut entry, cap);
            entry
        }
        ReceiveKind::Single => io_uring::opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), 0)
            .buf_group(BUF_GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT),
    }
}

/// Byte offset of `optlen` (a union with `file_index` and `splice_fd_in`) in a 64-byte
/// submission queue entry, as `struct io_uring_sqe` lays it out.
const SQE_OPTLEN_OFFSET: usize = 44;
const _: () = assert!(std::mem::size_of::<squeue::Entry>() == 64);

/// Sets the `optlen` field, which the io-uring crate's receive builders do not expose.
fn set_optlen(entry: &mut squeue::Entry, value: u32) {
    // SAFETY: `squeue::Entry` is a `repr(C)` wrapper around `struct io_uring_sqe` (64 bytes, as
    // checked above), whose bytes 44..48 are the `optlen` union member; any value is valid.
    unsafe {
        std::ptr::from_mut(entry)
            .cast::<u8>()
            .add(SQE_OPTLEN_OFFSET)
            .cast::<u32>()
            .write_unaligned(value);
    }
}

pub(crate) fn new_ring() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_submit_all()
        .setup_cqsize(COMPLETION_ENTRIES)
        .build(RING_ENTRIES)
}

pub(crate) fn register_pool(ring: &IoUring, pool: &Pool) -> io::Result<()> {
    // SAFETY: the descriptor ring is page-aligned and holds `pool.count` entries. Callers keep
    // `pool` alive until `ring` is dropped (their engines' field order; in `probe` the ring, made
    // last, drops first).
    unsafe {
        ring.submitter().register_buf_ring_with_flags(
            pool.entries as u64,
            pool.count,
            BUF_GROUP,
            PBUF_RING_INC,
        )
    }
}

/// The shared receive pool: `count` buffers of `BUF_SIZE` bytes, and the ring of buffer
/// descriptors through which the kernel takes them and the engine gives them back.
pub(crate) struct Pool {
    /// The buffers themselves. Only ever accessed through raw pointers: the kernel writes into
    /// a buffer while the engine holds none of it, and the engine reads one only between the
    /// receive that filled it and its return to the ring.
    memory: *mut u8,
    /// The descriptor ring shared with the kernel: page-aligned, `count` entries.
    entries: *mut types::BufRingEntry,
    /// Buffers in the pool: a power of two, at most `BUF_COUNT`.
    count: u16,
    /// Our copy of the ring's tail: descriptors written but maybe not yet published.
    tail: u16,
    /// Whether `tail` has moved since the last publish.
    dirty: bool,
    /// Per buffer: how far the kernel has filled it since it was last given back. Each
    /// receive completion's bytes start where the previous one for that buffer ended.
    filled_to: [usize; BUF_COUNT as usize],
    /// Per buffer: the kernel may still receive into it (its last completion had
    /// `IORING_CQE_F_BUF_MORE`, or it is in the ring untouched).
    in_kernel: [bool; BUF_COUNT as usize],
    /// Per buffer: echo chunks still reading from it.
    readers: [u32; BUF_COUNT as usize],
    /// Never free the memory: set when the ring failed with requests maybe still pending.
    leak: bool,
}

const POOL_ALIGN: usize = 4096;

impl Pool {
    fn memory_layout(count: u16) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(BUF_SIZE * usize::from(count), POOL_ALIGN)
            .expect("small layout")
    }

    fn entries_layout(count: u16) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(
            std::mem::size_of::<types::BufRingEntry>() * usize::from(count),
            POOL_ALIGN,
        )
        .expect("small layout")
    }

    /// A pool of `count` buffers: a power of two from 1 to `BUF_COUNT`.
    pub(crate) fn new(count: u16) -> io::Result<Pool> {
        assert!(
            count.is_power_of_two() && count <= BUF_COUNT,
            "pool of {count} buffers"
        );
        // SAFETY: both layouts have a non-zero size. The allocations are freed in `Drop` with
        // the same layouts. The buffers are not zeroed, so their pages are only backed by memory
        // once a receive first writes them; the descriptor ring must start zeroed (tail 0).
        let (memory, entries) = unsafe {
            (
                std::alloc::alloc(Pool::memory_layout(count)),
                std::alloc::alloc_zeroed(Pool::entries_layout(count)).cast::<types::BufRingEntry>(),
            )
        };
        if memory.is_null() || entries.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut pool = Pool {
            memory,
            entries,
            count,
            tail: 0,
            dirty: false,
            filled_to: [0; BUF_COUNT as usize],
            in_kernel: [false; BUF_COUNT as usize],
            readers: [0; BUF_COUNT as usize],
            leak: false,
        };
        for bid in 0..count {
            pool.give_back(bid);
        }
        pool.publish();
        Ok(pool)
    }

    /// Where buffer `bid` starts.
    pub(crate) fn buffer(&self, bid: u16) -> *mut u8 {
        debug_assert!(bid < self.count);
        // SAFETY: `bid < count`, so the offset stays inside the allocation.
        unsafe { self.memory.add(usize::from(bid) * BUF_SIZE) }
    }

    /// Records a receive completion of `len` bytes into buffer `bid`; `more` is its
    /// `IORING_CQE_F_BUF_MORE` flag. Returns where in the buffer the bytes are.
    pub(crate) fn received(&mut self, bid: u16, len: usize, more: bool) -> std::ops::Range<usize> {
        // The kernel only hands out ids we wrote, but `buffer` and `bytes` do pointer arithmetic
        // with it, and the arrays below are longer than a small pool: check for real.
        assert!(
            bid < self.count,
            "buffer id {bid} outside a pool of {}",
            self.count
        );
        let b = usize::from(bid);
        let start = self.filled_to[b];
        self.filled_to[b] = (start + len).min(BUF_SIZE);
        self.in_kernel[b] = more;
        start..self.filled_to[b]
    }

    /// Bytes `range` of buffer `bid`, which receive completions have filled.
    pub(crate) fn bytes(&self, bid: u16, range: std::ops::Range<usize>) -> &[u8] {
        debug_assert!(bid < self.count && range.end <= BUF_SIZE);
        // SAFETY: the range is inside buffer `bid` (`received` keeps it within BUF_SIZE). The
        // kernel wrote those bytes before posting their completion and never writes them again
        // until `give_back` returns the buffer, which waits for every reader.
        unsafe { std::slice::from_raw_parts(self.buffer(bid).add(range.start), range.len()) }
    }

    /// An echo chunk starts reading from buffer `bid`.
    pub(crate) fn hold(&mut self, bid: u16) {
        self.readers[usize::from(bid)] += 1;
    }

    /// An echo chunk is done with buffer `bid` (sent, or copied out).
    pub(crate) fn release(&mut self, bid: u16) {
        self.readers[usize::from(bid)] -= 1;
        self.give_back_if_unused(bid);
    }

    /// Gives buffer `bid` back once neither the kernel nor any chunk uses it.
    pub(crate) fn give_back_if_unused(&mut self, bid: u16) {
        let b = usize::from(bid);
        if !self.in_kernel[b] && self.readers[b] == 0 {
            self.give_back(bid);
        }
    }

    /// Returns buffer `bid` to the kernel, empty (visible once `publish` runs).
    fn give_back(&mut self, bid: u16) {
        self.filled_to[usize::from(bid)] = 0;
        self.in_kernel[usize::from(bid)] = true;
        let index = usize::from(self.tail & (self.count - 1));
        // SAFETY: `index < count`, inside the descriptor ring. The kernel only reads
        // descriptors between its head and the published tail, and this one is past the
        // published tail until `publish`.
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(self.buffer(bid) as u64);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        self.dirty = true;
    }

    /// Makes the buffers given back since the last call available to the kernel.
    pub(crate) fn publish(&mut self) {
        if !self.dirty {
            return;
        }
        // SAFETY: the tail field lives inside the first descriptor (the kernel's layout), which
        // is in our allocation; it is only written here, and read by the kernel atomically.
        let tail = unsafe { &*types::BufRingEntry::tail(self.entries).cast::<AtomicU16>() };
        // Release: the descriptors written above are visible before the kernel sees the tail.
        tail.store(self.tail, Ordering::Release);
        self.dirty = false;
    }
}

impl Pool {
    /// Never free the memory: the ring failed with requests that may still write into it.
    pub(crate) fn leak(&mut self) {
        self.leak = true;
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        // SAFETY: allocated in `new` with these layouts. No request can still use them: each
        // user frees its pool only after reaping every request that could (the server engine's
        // `quiesce`, the load loop's final reap), or leaks it (`leak`); `probe` never submits
        // anything. And the io_uring, which holds the registration, is dropped before the pool
        // (field order in `server::uring::engine::UringEngine` and `bench::uring::Loop`,
        // declaration order in `probe_capped_receive`).
        unsafe {
            std::alloc::dealloc(self.memory, Pool::memory_layout(self.count));
            std::alloc::dealloc(self.entries.cast(), Pool::entries_layout(self.count));
        }
    }
}

/// Queues a request. When the submission queue is full, submits what it holds first.
///
/// # Safety
/// Every buffer `entry` points to must stay valid, and not be otherwise written (or for
/// receives, read), until its completion arrives.
pub(crate) unsafe fn push(ring: &mut IoUring, entry: &squeue::Entry) {
    loop {
        // SAFETY: passed on from the caller.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return;
        }
        // Full: hand the queued requests to the kernel to make room.
        match ring.submit() {
            Ok(_) => {}
            Err(e) if transient(&e) => std::thread::yield_now(),
            // Anything else means the ring itself is broken, with requests that point into this
            // process's memory still in it: unwinding would free that memory under the kernel.
            Err(e) => {
                tracing::error!("io_uring submit failed: {e}; aborting");
                std::process::abort();
            }
        }
    }
}

/// `io_uring_enter` errors that only mean "again": the kernel was short of memory for requests,
/// a signal came, or completions must be reaped first (the completion queue is far larger than
/// one turn produces, and the kernel keeps any overflow).
pub(crate) fn transient(e: &io::Error) -> bool {
    [
        rustix::io::Errno::AGAIN,
        rustix::io::Errno::INTR,
        rustix::io::Errno::BUSY,
    ]
    .iter()
    .any(|errno| e.raw_os_error() == Some(errno.raw_os_error()))
}

/// Moves every completion the ring holds into `into` (emptied first) as `(user_data, result,
/// flags)`, so that handling them may queue new requests on the same ring.
pub(crate) fn take_completions(ring: &mut IoUring, into: &mut Vec<(u64, i32, u32)>) {
    into.clear();
    into.extend(
        ring.completion()
            .map(|c| (c.user_data(), c.result(), c.flags())),
    );
}

/// Held by a thread that runs a ring: ends the process if that thread panics, because
/// unwinding would free memory that requests still in the kernel may write into.
pub(crate) struct AbortOnPanic;

impl Drop for AbortOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("an io_uring loop panicked; aborting");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The descriptor the kernel would read at ring position `at`.
    fn descriptor(pool: &Pool, at: u16) -> (u64, u32, u16) {
        // SAFETY: `at & (count - 1)` is inside the descriptor ring.
        let entry = unsafe { &*pool.entries.add(usize::from(at & (pool.count - 1))) };
        (entry.addr(), entry.len(), entry.bid())
    }

    /// Arms one receive of `kind` with `cap` on a TCP connection to which 1 MiB is arriving
    /// (then EOF, so a receive that ignored its cap would end too), and returns the results of
    /// its completions up to the one without `IORING_CQE_F_MORE`.
    fn receive_until_it_ends(kind: ReceiveKind, cap: u32) -> Vec<i32> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let pool = Pool::new(8).expect("pool"); // 512 KiB: more than the cap and one buffer
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let mut theirs =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (ours, _) = listener.accept().expect("accept");
        let writer = std::thread::spawn(move || {
            let _ = theirs.write_all(&vec![7u8; 1 << 20]);
            let _ = theirs.shutdown(std::net::Shutdown::Write);
        });
        let mut ring = new_ring().expect("ring");
        register_pool(&ring, &pool).expect("register pool");
        let entry = receive_request(ours.as_raw_fd(), kind, cap);
        // SAFETY: the request writes only into the pool, which outlives the ring (and `ours`,
        // declared before the ring, too).
        unsafe { push(&mut ring, &entry) };
        let mut results = Vec::new();
        loop {
            ring.submit_and_wait(1).expect("wait");
            let mut last = false;
            for cqe in ring.completion() {
                results.push(cqe.result());
                last |= !io_uring::cqueue::more(cqe.flags());
            }
            if last {
                break;
            }
        }
        drop(ring);
        drop(ours);
        writer.join().expect("writer");
        results
    }

    /// Where the kernel can cap a multishot receive (the probe says so), it ends after about
    /// `cap` bytes although more keep arriving.
    #[test]
    fn a_capped_multishot_receive_ends_after_its_cap() {
        const CAP: u32 = 200_000;
        if receive_kind() != ReceiveKind::CappedMultishot {
            eprintln!("skipped: this kernel cannot cap a multishot receive (Linux 6.17 can)");
            return;
        }
        let results = receive_until_it_ends(ReceiveKind::CappedMultishot, CAP);
        let total: i64 = results.iter().map(|&r| i64::from(r)).sum();
        assert!(results.iter().all(|&r| r > 0), "{results:?}");
        assert!(
            total >= i64::from(CAP) && total < i64::from(CAP) + BUF_SIZE as i64,
            "capped multishot took {total} bytes in {} receives",
            results.len()
        );
    }

    /// The older kernels' receive, which every kernel takes: one completion, one buffer at most.
    #[test]
    fn a_single_receive_takes_one_buffer_at_most() {
        let results = receive_until_it_ends(ReceiveKind::Single, 200_000);
        assert!(
            results.len() == 1 && results[0] > 0 && results[0] as usize <= BUF_SIZE,
            "single receive: {results:?}"
        );
    }

    #[test]
    fn a_new_pool_offers_every_buffer_once() {
        let pool = Pool::new(BUF_COUNT).expect("pool");
        assert_eq!(pool.tail, BUF_COUNT);
        for bid in 0..BUF_COUNT {
            let (addr, len, id) = descriptor(&pool, bid);
            assert_eq!(id, bid);
            assert_eq!(addr, pool.buffer(bid) as u64);
            assert_eq!(len as usize, BUF_SIZE);
        }
    }

    #[test]
    fn a_small_pool_wraps_its_descriptor_ring() {
        let mut pool = Pool::new(16).expect("pool");
        assert_eq!(pool.tail, 16);
        // Buffer 5 is filled and finished (no BUF_MORE), then given back: its descriptor goes
        // to ring position 16, which is entry 0 of a 16-entry ring.
        assert_eq!(pool.received(5, 100, false), 0..100);
        pool.give_back_if_unused(5);
        assert_eq!(pool.tail, 17);
        let (addr, len, id) = descriptor(&pool, 16);
        assert_eq!(
            (id, addr, len as usize),
            (5, pool.buffer(5) as u64, BUF_SIZE)
        );
        // Given back empty: its next receive starts at the beginning.
        assert_eq!(pool.received(5, 10, true), 0..10);
    }

    #[test]
    fn incremental_receives_follow_each_other_in_a_buffer() {
        let mut pool = Pool::new(BUF_COUNT).expect("pool");
        assert_eq!(pool.received(3, 100, true), 0..100);
        assert_eq!(pool.received(3, 50, true), 100..150);
        // Another buffer keeps its own position.
        assert_eq!(pool.received(4, 10, true), 0..10);
        assert_eq!(pool.received(3, 7, false), 150..157);
        assert!(
            !pool.in_kernel[3],
            "no BUF_MORE: the kernel is done with buffer 3"
        );
        assert!(pool.in_kernel[4]);
    }

    #[test]
    fn a_buffer_goes_back_only_when_the_kernel_and_every_reader_are_done() {
        let mut pool = Pool::new(BUF_COUNT).expect("pool");
        let tail = pool.tail;
        pool.received(5, 64, true);
        pool.hold(5);
        pool.received(5, 64, false);
        pool.hold(5);
        pool.give_back_if_unused(5);
        assert_eq!(pool.tail, tail, "two readers left");
        pool.release(5);
        assert_eq!(pool.tail, tail, "one reader left");
        pool.release(5);
        assert_eq!(
            pool.tail,
            tail + 1,
            "given back once the last reader is done"
        );
        assert_eq!(
            descriptor(&pool, tail),
            (pool.buffer(5) as u64, BUF_SIZE as u32, 5)
        );
        // Given back empty: the next receive into it starts at its beginning.
        assert_eq!(pool.received(5, 10, true), 0..10);
    }

    #[test]
    fn a_buffer_the_kernel_still_fills_is_not_given_back() {
        let mut pool = Pool::new(BUF_COUNT).expect("pool");
        let tail = pool.tail;
        pool.received(6, 64, true);
        pool.hold(6);
        pool.release(6);
        assert_eq!(
            pool.tail, tail,
            "BUF_MORE: the kernel will put more bytes in it"
        );
    }
}
