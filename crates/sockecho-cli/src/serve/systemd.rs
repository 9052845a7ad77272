//! What `serve` shares with systemd: sockets passed by socket activation, and readiness and
//! stopping notifications.

use sockecho::server::InheritedSocket;

/// The sockets systemd passes with socket activation (`LISTEN_FDS`, `LISTEN_PID`), each
/// recognised as a TCP or Unix stream listener or a UDP or Unix datagram socket.
pub fn inherited_sockets() -> anyhow::Result<Vec<InheritedSocket>> {
    let mut fds = listenfd::ListenFd::from_env();
    let mut sockets = Vec::new();
    for index in 0..fds.len() {
        let socket = if let Ok(Some(l)) = fds.take_tcp_listener(index) {
            InheritedSocket::Tcp(l)
        } else if let Ok(Some(s)) = fds.take_udp_socket(index) {
            InheritedSocket::Udp(s)
        } else if let Ok(Some(l)) = fds.take_unix_listener(index) {
            InheritedSocket::Unix(l)
        } else if let Ok(Some(s)) = fds.take_unix_datagram(index) {
            InheritedSocket::UnixGram(s)
        } else {
            anyhow::bail!(
                "inherited file descriptor {} (LISTEN_FDS) is not a TCP, UDP or Unix socket",
                3 + index
            );
        };
        sockets.push(socket);
    }
    if !sockets.is_empty() {
        tracing::info!(
            "socket activation: serving {} inherited socket(s)",
            sockets.len()
        );
    }
    Ok(sockets)
}

/// Tells systemd about a state change when it asked to be told (`NOTIFY_SOCKET`).
pub fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}
