//! Shared pieces of the library tests: a server running on the test's runtime with a shutdown
//! trigger the test holds, the configuration that follows `SOCKECHO_IO`, and bounded awaits.
//!
//! Every await in these tests goes through [`within`], bounded by [`WAIT`], so a server that
//! stops answering fails the test instead of hanging it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sockecho::io::IoMode;
use sockecho::server::{Server, ServerConfig};
use sockecho::{Endpoint, Host, Stats};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Bound for anything that should happen at once: a connect, an echo, EOF, `run` returning.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
}

/// The stream I/O path the environment asks for, read the way the CLI reads `SOCKECHO_IO`.
pub fn io_from_env() -> IoMode {
    match std::env::var("SOCKECHO_IO").as_deref() {
        Ok("epoll") => IoMode::Epoll,
        Ok("uring") => IoMode::Uring,
        _ => IoMode::Auto,
    }
}

/// A configuration for tests: one worker thread, so `io` decides the stream I/O path (without
/// worker threads the server always serves on epoll), and the given shutdown grace.
pub fn config(grace: Duration) -> ServerConfig {
    ServerConfig {
        threads: 1,
        io: io_from_env(),
        grace,
        ..ServerConfig::default()
    }
}

/// A server running on a task, with the trigger that starts its shutdown.
pub struct Running {
    pub endpoints: Vec<Endpoint>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Stats>,
}

impl Running {
    /// Binds `endpoints` (text, as the CLI takes them) and starts serving them.
    pub async fn start(endpoints: &[&str], config: ServerConfig) -> Running {
        let endpoints: Vec<Endpoint> = endpoints
            .iter()
            .map(|e| e.parse().unwrap_or_else(|err| panic!("{e:?}: {err}")))
            .collect();
        let server = within("bind", Server::bind(&endpoints, config))
            .await
            .unwrap_or_else(|e| panic!("bind {endpoints:?}: {e}"));
        let endpoints = server.endpoints();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            // A dropped sender also shuts the server down, so a failing test does not leak it.
            let _ = stopped.await;
        }));
        Running {
            endpoints,
            stop: Some(stop),
            task,
        }
    }

    /// The address of the server's one Internet endpoint.
    pub fn addr(&self) -> SocketAddr {
        assert_eq!(self.endpoints.len(), 1, "{:?}", self.endpoints);
        let hp = self.endpoints[0]
            .host_port()
            .unwrap_or_else(|| panic!("{} is not an Internet endpoint", self.endpoints[0]));
        match &hp.host {
            Host::Ip(ip) => SocketAddr::new(*ip, hp.port),
            other => panic!("a bound endpoint has a literal address, not {other:?}"),
        }
    }

    /// The socket path of the server's one Unix endpoint.
    pub fn path(&self) -> PathBuf {
        assert_eq!(self.endpoints.len(), 1, "{:?}", self.endpoints);
        match &self.endpoints[0] {
            Endpoint::Unix(p) | Endpoint::UnixGram(p) => p.clone(),
            other => panic!("{other} is not a Unix endpoint"),
        }
    }

    /// Completes the shutdown future; the server starts draining.
    pub fn shut_down(&mut self) {
        let stop = self.stop.take().expect("shut_down is called once");
        stop.send(()).expect("the server is still running");
    }

    /// Waits for `run` to return and gives back its statistics.
    pub async fn stats(self) -> Stats {
        within("the server to finish", self.task)
            .await
            .expect("the server task did not panic")
    }
}

/// Writes `data` and reads back exactly as many bytes, asserting they are the same. Reads run
/// alongside the write so a large message cannot fill both directions' buffers and stall.
pub async fn echo_once<S>(stream: &mut S, data: &[u8])
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut back = vec![0u8; data.len()];
    let (written, read) = within("the echo", async {
        tokio::join!(writer.write_all(data), reader.read_exact(&mut back))
    })
    .await;
    written.expect("write");
    read.expect("read the echo");
    assert!(
        back == data,
        "echo of {} bytes differs from what was sent",
        data.len()
    );
}

/// Reads until EOF, asserting nothing more arrives first.
pub async fn expect_eof<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut rest = Vec::new();
    within("EOF", stream.read_to_end(&mut rest))
        .await
        .expect("read to EOF");
    assert!(
        rest.is_empty(),
        "{} unexpected bytes before EOF",
        rest.len()
    );
}

/// `len` bytes in which every byte value occurs and no short period repeats, so a lost,
/// duplicated or reordered chunk changes the comparison.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as u8) ^ (i as u8)
        })
        .collect()
}

/// A fresh temporary directory for socket files, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}
