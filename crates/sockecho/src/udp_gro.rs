//! UDP generic receive offload (GRO), as the server's UDP loop and the load generator both use
//! it: a socket with it on may be handed a sender's consecutive datagrams of one size as one
//! buffer, with a note of that size; all datagrams in the buffer but the last are exactly that
//! long, and the last is no longer.

use std::os::fd::AsFd;

use nix::sys::socket::{ControlMessageOwned, setsockopt, sockopt};

/// Lets the kernel hand `socket` coalesced buffers. Fails on kernels before 5.0.
pub(crate) fn enable(socket: &impl AsFd) -> nix::Result<()> {
    setsockopt(socket, sockopt::UdpGroSegment, &true)
}

/// The size of each datagram in a received buffer of `len` bytes, from the buffer's control
/// messages: the kernel's note if it coalesced several, else `len` (one datagram).
pub(crate) fn segment_size(
    cmsgs: impl IntoIterator<Item = ControlMessageOwned>,
    len: usize,
) -> usize {
    cmsgs
        .into_iter()
        .find_map(|c| match c {
            ControlMessageOwned::UdpGroSegments(size) => usize::try_from(size).ok(),
            _ => None,
        })
        .filter(|&size| size > 0)
        .unwrap_or(len)
}
