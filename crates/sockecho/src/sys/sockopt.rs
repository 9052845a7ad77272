//! Socket options and addresses that only Linux has, set by hand because socket2 lacks them.

use std::io;
use std::os::fd::AsFd;

use nix::sys::socket::{setsockopt, sockopt::IpBindAddressNoPort};

/// `IP_BIND_ADDRESS_NO_PORT`: a bind to a source address leaves the port to `connect`.
/// Fails on kernels before 4.2.
pub(crate) fn set_bind_address_no_port(socket: &impl AsFd) -> io::Result<()> {
    Ok(setsockopt(socket, IpBindAddressNoPort, &true)?)
}

/// Whether `IP_BIND_ADDRESS_NO_PORT` is set.
#[cfg(test)]
pub(crate) fn bind_address_no_port(socket: &impl AsFd) -> io::Result<bool> {
    Ok(nix::sys::socket::getsockopt(socket, IpBindAddressNoPort)?)
}
