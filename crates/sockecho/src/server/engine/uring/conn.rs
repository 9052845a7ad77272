//! What the engine keeps for one connection: its socket, its [`ConnState`], and the echo bytes
//! waiting to be sent, with the requests that point the kernel at them.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};

use io_uring::{opcode, squeue, types};
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::state::ConnState;
use super::state::QUEUE_LIMIT;
use crate::server::conn::{Admitted, ConnLog};
use crate::server::echo::SCRATCH_SIZE;
use crate::sys::uring::{Pool, receive_kind, receive_request};

/// Chunks one send gathers at most.
pub(super) const GATHER: usize = 16;

/// Bytes one send asks for at most (it may take fewer chunks than [`GATHER`] to stop here), as
/// the epoll path's reads and writes are at most [`SCRATCH_SIZE`]. Sends far larger than a
/// peer's receive window only fill it in one burst: at 10 x 1 MiB against the plain C epoll
/// client (bench/yardstick/epoll_load.c), gathering up to 1 MiB per send cost that client
/// 10-20% more CPU per message than 256 KiB sends, and as it is the bottleneck, that much
/// throughput (docs/benchmarks.md).
pub(super) const SEND_MAX: usize = SCRATCH_SIZE;
const _: () = assert!(
    SEND_MAX <= u32::MAX as usize,
    "a send's length fits in a u32"
);

/// A run of echo bytes waiting to be sent, oldest first.
pub(super) enum Chunk {
    /// Still in the pool buffer it was received into (the fast path): bytes `off..len`.
    Pooled { bid: u16, off: usize, len: usize },
    /// Copied into the connection's own memory because the peer could not take it at once.
    Owned { bytes: Vec<u8>, off: usize },
}

/// The memory a gathered send points the kernel at: one `iovec` per chunk, and the header.
pub(super) struct Gather {
    iov: [libc::iovec; GATHER],
    msg: libc::msghdr,
}

impl Gather {
    fn new() -> Box<Gather> {
        Box::new(Gather {
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; GATHER],
            // SAFETY: `msghdr` is plain data; all zeros is an empty header.
            msg: unsafe { std::mem::zeroed() },
        })
    }
}

/// What an ended connection leaves for a new one, so that serving a connection allocates
/// nothing an earlier one already had: its emptied echo queue and its gather list.
#[derive(Default)]
pub(super) struct Spare {
    pub(super) queue: VecDeque<Chunk>,
    pub(super) gather: Option<Box<Gather>>,
}

/// One connection served by the engine.
pub(super) struct UringConn {
    pub(super) fd: OwnedFd,
    pub(super) admitted: Admitted,
    pub(super) log: ConnLog,
    /// Keeps the server's shutdown waiting until this connection has ended.
    pub(super) _token: TaskTrackerToken,
    pub(super) state: ConnState,
    /// Echo bytes not yet sent, oldest first; each chunk holds at least one unsent byte, so the
    /// queue is empty exactly when `state` counts nothing queued. An in-flight send sends the
    /// first one, or gathers the first [`GATHER`].
    pub(super) queue: VecDeque<Chunk>,
    /// The gather list of a send of several chunks at once, made the first time one is needed
    /// and kept: the kernel reads it while the send is in flight, so it must not move.
    pub(super) gather: Option<Box<Gather>>,
    /// Bytes the send in flight asked to send: at most [`SEND_MAX`]. A `u32` sits beside the
    /// 4-byte descriptor, which keeps an engine's connection slot at 248 bytes.
    pub(super) send_len: u32,
}

impl UringConn {
    pub(super) fn new(
        fd: OwnedFd,
        admitted: Admitted,
        log: ConnLog,
        token: TaskTrackerToken,
        state: ConnState,
        spare: Spare,
    ) -> UringConn {
        UringConn {
            fd,
            admitted,
            log,
            _token: token,
            state,
            queue: spare.queue,
            gather: spare.gather,
            send_len: 0,
        }
    }

    /// A receive that takes at most [`QUEUE_LIMIT`] bytes (and the rest of one pool buffer)
    /// before it ends, so that a peer that sends and never reads gets no more than that queued:
    /// a multishot receive that the kernel caps, or on older kernels a single one. It writes
    /// only into pool buffers the kernel picks itself.
    pub(super) fn recv_request(&self) -> squeue::Entry {
        receive_request(self.fd.as_raw_fd(), receive_kind(), QUEUE_LIMIT as u32)
    }

    /// A cancel of every request on the socket; it points to no memory.
    pub(super) fn cancel_all_request(&self) -> squeue::Entry {
        opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(self.fd.as_raw_fd())).all())
            .build()
    }

    /// A send of the queue's first chunks, which must not be empty.
    ///
    /// It points only at memory that outlives it: the queue's first chunks (one, or up to
    /// [`GATHER`] through the boxed gather list), which are neither given back to the pool (if
    /// pooled) nor appended to or dropped (if owned) while the send is in flight — new chunks
    /// only join the back of the queue, and owned ones grow only while no send is in flight —
    /// and the gather list is rewritten only by the next send.
    pub(super) fn send_request(&mut self, pool: &Pool) -> squeue::Entry {
        let fd = types::Fd(self.fd.as_raw_fd());
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        if self.queue.len() == 1 {
            let (bytes, len) = chunk_bytes(&self.queue[0], pool);
            let len = len.min(SEND_MAX);
            self.send_len = len as u32;
            return opcode::Send::new(fd, bytes, len as u32)
                .flags(flags)
                .build();
        }
        // Several chunks: one send gathers them, so a burst of receives goes out as one large
        // write, as the bytes sit, without copying them together first.
        let gather = self.gather.get_or_insert_with(Gather::new);
        let mut total = 0;
        let mut n = 0;
        for chunk in self.queue.iter().take(GATHER) {
            if total >= SEND_MAX {
                break;
            }
            let (bytes, len) = chunk_bytes(chunk, pool);
            let len = len.min(SEND_MAX - total);
            gather.iov[n] = libc::iovec {
                iov_base: bytes.cast_mut().cast(),
                iov_len: len,
            };
            total += len;
            n += 1;
        }
        gather.msg.msg_iov = gather.iov.as_mut_ptr();
        gather.msg.msg_iovlen = n as _;
        self.send_len = total as u32;
        opcode::SendMsg::new(fd, &gather.msg)
            .flags(flags as u32)
            .build()
    }

    /// Queues bytes `range` of pool buffer `bid` where they are, holding the buffer. Bytes that
    /// arrive while a send is under way queue up in the pool too, and go out together in the
    /// next send.
    pub(super) fn queue_pooled(
        &mut self,
        pool: &mut Pool,
        bid: u16,
        range: std::ops::Range<usize>,
    ) {
        pool.hold(bid);
        self.queue.push_back(Chunk::Pooled {
            bid,
            off: range.start,
            len: range.end,
        });
    }

    /// Queues a copy of bytes `range` of pool buffer `bid` in the connection's own memory, so
    /// the pool is not held by a slow peer. Only while waiting for writability: no send is in
    /// flight, so none reads the owned chunk that is appended to.
    pub(super) fn queue_copied(
        &mut self,
        pool: &mut Pool,
        bid: u16,
        range: std::ops::Range<usize>,
    ) {
        let data = pool.bytes(bid, range);
        match self.queue.back_mut() {
            Some(Chunk::Owned { bytes, .. }) => bytes.extend_from_slice(data),
            _ => self.queue.push_back(Chunk::Owned {
                bytes: data.to_vec(),
                off: 0,
            }),
        }
        pool.give_back_if_unused(bid);
    }

    /// Drops the first `sent` bytes of the queue (a send covers its first chunks in order),
    /// giving back the pool buffers it finished.
    pub(super) fn drop_sent(&mut self, sent: usize, pool: &mut Pool) {
        let mut left = sent;
        while let Some(front) = self.queue.front_mut() {
            let (off, len) = match front {
                Chunk::Pooled { off, len, .. } => (off, *len),
                Chunk::Owned { bytes, off } => (off, bytes.len()),
            };
            let take = left.min(len - *off);
            *off += take;
            left -= take;
            if *off < len {
                break;
            }
            if let Some(Chunk::Pooled { bid, .. }) = self.queue.pop_front() {
                pool.release(bid);
            }
        }
    }

    /// The peer's socket is full: moves everything queued out of the pool into one piece of
    /// the connection's own memory. No send is in flight.
    pub(super) fn move_out_of_pool(&mut self, pool: &mut Pool) {
        let mut rest = Vec::with_capacity(self.state.queued());
        for chunk in self.queue.drain(..) {
            match chunk {
                Chunk::Pooled { bid, off, len } => {
                    rest.extend_from_slice(pool.bytes(bid, off..len));
                    pool.release(bid);
                }
                Chunk::Owned { bytes, off } => rest.extend_from_slice(&bytes[off..]),
            }
        }
        self.queue.push_back(Chunk::Owned {
            bytes: rest,
            off: 0,
        });
    }
}

/// Where a queued chunk's unsent bytes are, and how many there are.
fn chunk_bytes(chunk: &Chunk, pool: &Pool) -> (*const u8, usize) {
    match chunk {
        // SAFETY: `off <= len <= BUF_SIZE`: inside buffer `bid`.
        Chunk::Pooled { bid, off, len } => (
            unsafe { pool.buffer(*bid).add(*off) }.cast_const(),
            len - off,
        ),
        Chunk::Owned { bytes, off } => (bytes[*off..].as_ptr(), bytes.len() - off),
    }
}
