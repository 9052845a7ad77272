//! Whether a datagram endpoint echoes at all: a datagram has no connection to refuse, so the
//! only sign of a server is a reply to a probe message.

use std::time::Duration;

use super::datagram::DatagramSocket;
use super::peer::Peer;
use crate::net_error::describe_connect_error;
use crate::payload::Pattern;

/// Probe datagrams sent before a datagram endpoint is declared unreachable.
const PROBE_TRIES: u32 = 3;

/// Connection number carried by probe messages, so they never pass for a load message.
const PROBE_CONN: u32 = u32::MAX;

/// Sends a probe message of `size` bytes (up to three times) and waits `timeout` each time for
/// any reply. The error is one line saying what failed.
pub async fn probe_datagram(peer: &Peer, size: usize, timeout: Duration) -> Result<(), String> {
    let socket = DatagramSocket::open(peer, None, 0).map_err(|e| describe_connect_error(&e))?;
    let message = Pattern::new(size).message(0, PROBE_CONN);
    let mut buf = vec![0u8; size + 1];
    for _ in 0..PROBE_TRIES {
        socket
            .send(&message)
            .await
            .map_err(|e| describe_connect_error(&e))?;
        match tokio::time::timeout(timeout, socket.recv(&mut buf)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => return Err(describe_connect_error(&e)),
            Err(_elapsed) => continue,
        }
    }
    Err(format!(
        "no reply to {PROBE_TRIES} probe datagrams within {timeout:?} each — is an echo server \
         running there?"
    ))
}
