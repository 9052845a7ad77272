//! The I/O path choice for plain TCP and Unix stream connections, shared by the server and the
//! load generator ([`IoMode`]), and the one probe that settles "auto" to what this kernel
//! allows.

use std::io;

/// Which loop drives plain TCP and Unix stream connections. TLS connections, datagram sockets
/// and a server without worker threads always run on tokio.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IoMode {
    /// io_uring where the kernel (Linux 6.12 or later) and any sandbox allow it, else epoll.
    /// The only choice on other systems, where it means tokio's reactor (kqueue).
    #[default]
    Auto,
    /// io_uring; fails if it is not available.
    Uring,
    /// epoll: the server's epoll engine (one epoll loop of its own per worker thread), the load
    /// threads' own epoll loops in the bench.
    Epoll,
}

impl IoMode {
    /// The name reports and logs use: `auto`, `io_uring` or `epoll`.
    pub fn as_str(self) -> &'static str {
        match self {
            IoMode::Auto => "auto",
            IoMode::Uring => "io_uring",
            IoMode::Epoll => "epoll",
        }
    }

    /// Why this system cannot take this choice, if it cannot: io_uring and epoll are Linux's.
    pub fn unsupported_here(self) -> Option<&'static str> {
        if cfg!(target_os = "linux") || self == IoMode::Auto {
            None
        } else {
            Some("--io uring and --io epoll need Linux; leave --io at auto on this system")
        }
    }

    /// Settles the choice: `Auto` becomes `Uring` if this kernel and any sandbox allow
    /// everything the io_uring loops need, else `Epoll`; `Uring` fails if they do not. On other
    /// systems `Auto` settles to `Epoll`, the portable path.
    pub fn resolve(self) -> io::Result<IoMode> {
        if self == IoMode::Epoll || (self == IoMode::Auto && !cfg!(target_os = "linux")) {
            return Ok(IoMode::Epoll);
        }
        match probe_uring() {
            Ok(()) => Ok(IoMode::Uring),
            Err(e) if self == IoMode::Uring => Err(e),
            Err(e) => {
                tracing::info!("io_uring is not available ({e}); stream I/O uses epoll");
                Ok(IoMode::Epoll)
            }
        }
    }
}

impl std::fmt::Display for IoMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(target_os = "linux")]
fn probe_uring() -> io::Result<()> {
    crate::sys::uring::probe()
}

#[cfg(not(target_os = "linux"))]
fn probe_uring() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "io_uring needs Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_report_values() {
        assert_eq!(
            [IoMode::Auto, IoMode::Uring, IoMode::Epoll].map(IoMode::as_str),
            ["auto", "io_uring", "epoll"]
        );
        assert_eq!(IoMode::Uring.to_string(), "io_uring");
    }

    #[test]
    fn auto_settles_to_a_loop_and_epoll_stays() {
        let settled = IoMode::Auto.resolve().expect("auto never fails");
        assert!(matches!(settled, IoMode::Uring | IoMode::Epoll));
        assert_eq!(IoMode::Epoll.resolve().expect("epoll"), IoMode::Epoll);
        assert_eq!(IoMode::Uring.resolve().is_ok(), settled == IoMode::Uring);
    }

    #[test]
    fn only_linux_takes_an_explicit_loop() {
        assert_eq!(IoMode::Auto.unsupported_here(), None);
        assert_eq!(
            IoMode::Uring.unsupported_here().is_none(),
            cfg!(target_os = "linux")
        );
    }
}
