//! UDP system calls beyond one datagram per call, Linux only: generic segmentation offload
//! (GSO: one send of several equal-size datagrams), generic receive offload (GRO: a sender's
//! consecutive datagrams of one size handed over as one buffer, with a note of that size; all
//! datagrams in the buffer but the last are exactly that long, and the last is no longer), and
//! the multi-message calls `recvmmsg`/`sendmmsg` the server's UDP loop batches with.
//!
//! nix makes these calls (rustix has neither the segment control messages nor `recvmmsg`);
//! its types are re-exported here so no other file names it.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, UnixAddr, getsockopt, recvmsg, sendmsg, setsockopt,
    sockopt,
};

pub(crate) use nix::errno::Errno;
pub(crate) use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

/// Lets the kernel hand `socket` coalesced buffers (GRO). Fails on kernels before 5.0.
pub(crate) fn enable_gro(socket: &impl AsFd) -> io::Result<()> {
    Ok(setsockopt(socket, sockopt::UdpGroSegment, &true)?)
}

/// Whether this kernel knows `UDP_SEGMENT` for sockets of `peer`'s address family. One that
/// does not would not refuse the option in a send but ignore it, and send a burst as one large
/// datagram.
pub(crate) fn gso_supported(peer: SocketAddr) -> bool {
    let any: SocketAddr = match peer {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    std::net::UdpSocket::bind(any).is_ok_and(|s| getsockopt(&s, sockopt::UdpGsoSegment).is_ok())
}

/// Room for the control message that says how a received buffer divides into datagrams.
pub(crate) fn segment_note_space() -> Vec<u8> {
    nix::cmsg_space!(libc::c_int)
}

/// The size of each datagram in a received buffer of `len` bytes, from the buffer's control
/// messages: the kernel's note if it coalesced several, else `len` (one datagram).
#[inline]
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

/// One `sendmsg` of `data` as datagrams of `segment` bytes each (the last may be shorter), to
/// `to` or the connected peer (GSO).
#[inline]
pub(crate) fn send_segmented(
    socket: &impl AsRawFd,
    data: &[u8],
    segment: u16,
    to: Option<&SockaddrStorage>,
    flags: MsgFlags,
) -> Result<usize, Errno> {
    sendmsg(
        socket.as_raw_fd(),
        &[IoSlice::new(data)],
        &[ControlMessage::UdpGsoSegments(&segment)],
        flags,
        to,
    )
}

/// One `recvmsg` from a connected socket without waiting: the bytes read, and the size of each
/// datagram in them (see [`segment_size`]). `cmsg` is scratch space from
/// [`segment_note_space`].
#[inline]
pub(crate) fn recv_segmented(
    socket: &impl AsRawFd,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> io::Result<(usize, usize)> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<UnixAddr>(
        socket.as_raw_fd(),
        &mut iov,
        Some(cmsg),
        MsgFlags::MSG_DONTWAIT,
    )?;
    Ok((
        msg.bytes,
        segment_size(msg.cmsgs().into_iter().flatten(), msg.bytes),
    ))
}

/// `sendto` of one datagram: skips the message-header copy of `sendmmsg` for a batch of one.
#[inline]
pub(crate) fn send_to(
    socket: &impl AsRawFd,
    data: &[u8],
    to: &SockaddrStorage,
) -> Result<usize, Errno> {
    nix::sys::socket::sendto(socket.as_raw_fd(), data, to, MsgFlags::empty())
}
