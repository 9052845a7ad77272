//! What `serve` shares with systemd: sockets passed by socket activation, and readiness and
//! stopping notifications.

use sockecho::server::InheritedSocket;

use crate::usage::UsageError;

/// More inherited descriptors than any service passes; a larger `LISTEN_FDS` is a mistake.
const MAX_LISTEN_FDS: usize = 4096;

/// The sockets systemd passes with socket activation (`LISTEN_FDS`, `LISTEN_PID`), each
/// recognised as a TCP or Unix stream listener or a UDP or Unix datagram socket.
///
/// A `LISTEN_FDS` that is not a count, or a descriptor that is not a socket, is the caller's
/// mistake and a usage error (exit 2). A `LISTEN_PID` of another process means the variables
/// were meant for someone else (e.g. a parent that passed its environment on): that is what
/// systemd's own rule says to ignore, and it is ignored with a warning.
pub fn inherited_sockets() -> anyhow::Result<Vec<InheritedSocket>> {
    let Some(count) = activation_request()? else {
        return Ok(Vec::new());
    };
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
            return Err(UsageError(format!(
                "inherited file descriptor {} (LISTEN_FDS={count}) is not open, or not a TCP, UDP \
                 or Unix socket",
                3 + index
            ))
            .into());
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

/// How many sockets `LISTEN_FDS` passes to this process: `None` when it is unset, zero, or
/// meant for another process.
fn activation_request() -> Result<Option<usize>, UsageError> {
    let Some(fds) = std::env::var_os("LISTEN_FDS") else {
        return Ok(None);
    };
    let fds = fds.to_string_lossy();
    let count = match fds.trim().parse::<usize>() {
        Ok(n) if n <= MAX_LISTEN_FDS => n,
        Ok(_) => {
            return Err(UsageError(format!(
                "LISTEN_FDS={fds} is more descriptors than socket activation passes (at most \
                 {MAX_LISTEN_FDS}); unset it to serve the endpoints given"
            )));
        }
        Err(_) => {
            return Err(UsageError(format!(
                "LISTEN_FDS={fds:?} is not a number of inherited descriptors (socket activation \
                 sets e.g. LISTEN_FDS=1); unset it to serve the endpoints given"
            )));
        }
    };
    match std::env::var("LISTEN_PID").as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("") => {}
        Ok(pid) => {
            let me = std::process::id();
            match pid.trim().parse::<u32>() {
                Ok(pid) if pid == me => {}
                Ok(pid) => {
                    tracing::warn!(
                        "LISTEN_FDS={count} is for process {pid}, not this one ({me}): ignoring \
                         the inherited descriptors and serving the endpoints given (or the \
                         default one)"
                    );
                    // Unset them like listenfd does, so no child takes them either.
                    drop(listenfd::ListenFd::from_env());
                    return Ok(None);
                }
                Err(_) => {
                    return Err(UsageError(format!(
                        "LISTEN_PID={pid:?} is not a process id; unset LISTEN_FDS and LISTEN_PID \
                         to serve the endpoints given"
                    )));
                }
            }
        }
        Err(std::env::VarError::NotUnicode(pid)) => {
            return Err(UsageError(format!(
                "LISTEN_PID={pid:?} is not a process id; unset LISTEN_FDS and LISTEN_PID to serve \
                 the endpoints given"
            )));
        }
    }
    Ok((count > 0).then_some(count))
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
