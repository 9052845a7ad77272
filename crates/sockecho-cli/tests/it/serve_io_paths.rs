//! Both stream I/O paths (`--io uring` and `--io epoll`) under the loads most likely to break
//! one of them: many connections writing uneven pieces at once (the io_uring path shares one
//! receive pool among them), and clients that never read next to ones that do.
//!
//! The rest of the suite runs on the default path (io_uring where the kernel allows it); CI runs
//! it again with `SOCKECHO_IO=epoll`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::support::{
    Server, WAIT, echo_once, pattern, run, stderr_of, tcp_connect, temp_dir, unix_connect,
};

const PATHS: [(&str, &str); 2] = [("uring", "io_uring"), ("epoll", "epoll")];

/// A server on TCP and a Unix socket in a fresh directory, on I/O path `io`, one worker. The
/// directory lives as long as the returned guard.
fn start(io: &str) -> (Server, tempfile::TempDir) {
    let dir = temp_dir();
    let sock = dir.path().join("e.sock");
    let server = Server::start(
        &["tcp://127.0.0.1:0", &format!("unix://{}", sock.display())],
        &["--io", io, "--threads", "1"],
    );
    (server, dir)
}

/// Sizes of the pieces a writer sends: uneven, from 1 byte to 192 KiB, different per seed.
fn piece_sizes(total: usize, seed: u64) -> Vec<usize> {
    let mut x = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    let mut sizes = Vec::new();
    let mut left = total;
    while left > 0 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let size = match x % 4 {
            0 => 1 + (x >> 8) as usize % 16,
            1 => 1 + (x >> 8) as usize % 1500,
            2 => 1 + (x >> 8) as usize % 65_536,
            _ => 1 + (x >> 8) as usize % 196_608,
        };
        let size = size.min(left);
        sizes.push(size);
        left -= size;
    }
    sizes
}

/// Writes `data` in uneven pieces on another thread, half-closes, and returns the whole echo.
fn echo_in_pieces<S>(stream: S, writer: S, data: Vec<u8>, seed: u64) -> std::io::Result<Vec<u8>>
where
    S: Read + Write + Send + 'static + HalfClose,
{
    let mut reader = stream;
    let mut writer = writer;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let mut at = 0;
        for size in piece_sizes(data.len(), seed) {
            writer.write_all(&data[at..at + size])?;
            at += size;
        }
        writer.half_close()
    });
    let mut back = Vec::new();
    reader.read_to_end(&mut back)?;
    sender.join().expect("writer thread")?;
    Ok(back)
}

trait HalfClose {
    fn half_close(&self) -> std::io::Result<()>;
}

impl HalfClose for TcpStream {
    fn half_close(&self) -> std::io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl HalfClose for UnixStream {
    fn half_close(&self) -> std::io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

#[test]
fn each_path_says_which_it_is_and_runs_its_engine_thread() {
    for (flag, name) in PATHS {
        let (server, _dir) = start(flag);
        let log = server.wait_for("stream I/O");
        assert!(
            log.lines()
                .any(|line| line.ends_with(&format!("stream I/O: {name}"))),
            "--io {flag} should log its path as {name}, served by its engine:\n{log}"
        );
        // It serves; and the worker's engine thread, which serves plain streams instead of
        // tokio, is there by name.
        echo_once(&mut tcp_connect(server.tcp()), b"through the engine");
        let threads = thread_names(server.pid().as_raw_nonzero().get());
        let engine = format!("{flag}-0");
        assert!(
            threads.contains(&engine),
            "no {engine} thread in {threads:?}"
        );
    }
}

/// Stream faults are dealt by their own echo on tokio: no engine starts, and the log says so.
#[test]
fn with_stream_faults_plain_streams_are_served_on_tokio() {
    let server = Server::start(
        &["tcp://127.0.0.1:0"],
        &["--io", "epoll", "--threads", "1", "--fault", "delay=1ms"],
    );
    let log = server.wait_for("stream I/O");
    assert!(log.contains("stream I/O: epoll (tokio)"), "{log}");
    echo_once(&mut tcp_connect(server.tcp()), b"on tokio");
    let threads = thread_names(server.pid().as_raw_nonzero().get());
    assert!(
        !threads
            .iter()
            .any(|t| t.starts_with("epoll-") || t.starts_with("uring-")),
        "{threads:?}"
    );
}

/// The names of the threads of process `pid` (as `top -H` shows them: the server names its
/// worker threads `worker-N` and their engine threads `uring-N` or `epoll-N`).
fn thread_names(pid: i32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

#[test]
fn many_connections_writing_uneven_pieces_get_every_byte_back_in_order() {
    const CONNS: u64 = 40;
    const EACH: usize = 1536 * 1024;
    for (flag, _) in PATHS {
        let (server, _dir) = start(flag);
        let tcp = server.tcp();
        let path = server.find("unix://").path().to_owned();
        let clients: Vec<_> = (0..CONNS)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let data = pattern(EACH - i as usize * 1000, 100 + i);
                    let back = if i % 2 == 0 {
                        let stream = tcp_connect(tcp);
                        let writer = stream.try_clone().expect("clone");
                        echo_in_pieces(stream, writer, data.clone(), i)
                    } else {
                        let stream = unix_connect(&path);
                        let writer = stream.try_clone().expect("clone");
                        echo_in_pieces(stream, writer, data.clone(), i)
                    }
                    .expect("echo");
                    assert_eq!(back.len(), data.len(), "--io {flag}: connection {i} length");
                    let first_bad = back.iter().zip(&data).position(|(a, b)| a != b);
                    assert_eq!(first_bad, None, "--io {flag}: connection {i} differs");
                })
            })
            .collect();
        for client in clients {
            client.join().expect("client thread");
        }
        let log = server.wait_log("every disconnect", |log| {
            log.matches(" disconnected (").count() as u64 >= CONNS
        });
        assert_eq!(
            log.matches(", peer closed)").count() as u64,
            CONNS,
            "--io {flag}: each connection ends because its peer closed:\n{log}"
        );
    }
}

#[test]
fn clients_that_never_read_do_not_hold_up_the_others() {
    for (flag, _) in PATHS {
        let (server, _dir) = start(flag);
        let addr = server.tcp();
        // More clients than the io_uring path has pool buffers flood without reading until
        // their writes stall (all at once, each on its own thread).
        let flood = pattern(64 * 1024, 9);
        let flooders: Vec<_> = (0..32)
            .map(|_| {
                let flood = flood.clone();
                std::thread::spawn(move || flood_until_stalled(addr, &flood))
            })
            .collect();
        let mut stalled: Vec<TcpStream> = flooders
            .into_iter()
            .map(|f| f.join().expect("flooder"))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("--io {flag}: {e}"));
        // Everyone else is still served, byte for byte, large and small.
        for (i, size) in [1usize, 64, 70_000, 3 << 20].into_iter().enumerate() {
            echo_once(&mut tcp_connect(addr), &pattern(size, 20 + i as u64));
        }
        // And a stalled client that starts reading gets its echo from the start, in order.
        let mut first = stalled.swap_remove(0);
        first.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut back = vec![0u8; flood.len()];
        first.read_exact(&mut back).expect("read the stalled echo");
        assert!(
            back == flood,
            "--io {flag}: the stalled echo starts with the flood"
        );
    }
}

/// Connects with a small receive buffer and writes `flood` over and over without reading, until
/// a write times out after at least one whole `flood`: the server has stopped reading from this
/// client. A write cut short by the timeout is carried on from where it stopped, so the bytes
/// sent are always `flood` repeated, whatever a busy server's pauses do to the timeouts.
fn flood_until_stalled(addr: std::net::SocketAddr, flood: &[u8]) -> Result<TcpStream, String> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .map_err(|e| e.to_string())?;
    socket
        .set_recv_buffer_size(64 * 1024)
        .map_err(|e| e.to_string())?;
    socket.connect(&addr.into()).map_err(|e| e.to_string())?;
    let mut stream = TcpStream::from(socket);
    stream
        .set_write_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + 3 * WAIT;
    let mut sent = 0usize;
    loop {
        if Instant::now() > deadline {
            return Err("the flood never stalled".into());
        }
        match stream.write(&flood[sent % flood.len()..]) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if sent >= flood.len() {
                    return Ok(stream);
                }
            }
            Err(e) => return Err(format!("flooding write failed: {e}")),
        }
    }
}

#[test]
fn an_unknown_io_path_is_a_usage_error() {
    let out = run(&["serve", "tcp://127.0.0.1:0", "--io", "kqueue"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("uring") && err.contains("epoll"),
        "the error lists the choices:\n{err}"
    );
}
