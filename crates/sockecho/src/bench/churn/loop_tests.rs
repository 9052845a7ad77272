//! Tests of the churn loops (epoll and io_uring alike) against listeners in the test: counts that add up with what the listener accepted, failed
//! connects sorted by reason, source addresses and resets that reach the listener, and a
//! server's close right behind its reply.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use super::{Dialer, Starts, epoll, uring};
use crate::bench::plan::{ChurnPlan, ConnPlan, Schedule, ThreadCtx};
use crate::bench::recorder::ThreadRecorder;
use crate::bench::timing::Clock;
use crate::connect::Peer;
use crate::payload::Pattern;

fn ctx(clock: Clock, run_ms: u64) -> ThreadCtx {
    churn_ctx(clock, run_ms, 1, false)
}

/// A thread whose connections exchange `messages` each and close with a reset if `rst`.
fn churn_ctx(clock: Clock, run_ms: u64, messages: u64, rst: bool) -> ThreadCtx {
    let start = clock.now() + 10_000_000;
    ThreadCtx {
        clock,
        pattern: Pattern::new(64),
        schedule: Cell::new(Schedule {
            start,
            warm_end: start,
            end: start + run_ms * 1_000_000,
        }),
        end: tokio::sync::watch::channel(u64::MAX).1,
        pipeline: 1,
        timeout_ns: 500_000_000,
        udp_offload: false,
        recorder: ThreadRecorder::default(),
        live: Arc::default(),
        scratch: RefCell::new(vec![0; 64 * 1024]),
        send_buf: RefCell::new(Vec::new()),
        churn: Some(ChurnPlan {
            messages,
            lifetime_ns: u64::MAX,
            rst,
        }),
        send_timer: Default::default(),
    }
}

/// Which loop runs the slots.
#[derive(Debug, Clone, Copy)]
enum Loop {
    Epoll,
    Uring,
}

/// Every loop.
const LOOPS: [Loop; 2] = [Loop::Epoll, Loop::Uring];

/// Runs the slots in loop `which` (`false` if this kernel has no io_uring for it).
fn run_in(
    which: Loop,
    ctx: &ThreadCtx,
    plans: Vec<ConnPlan>,
    dialer: &Dialer,
    starts: Option<&Starts>,
) -> bool {
    if let Loop::Epoll = which {
        epoll::run(ctx, plans, dialer, starts, 1_000_000_000);
        return true;
    }
    if let Err(e) = crate::sys::uring::probe() {
        eprintln!("io_uring is not available here ({e}); nothing to test");
        return false;
    }
    uring::Churner::new(ctx, dialer, starts, 1_000_000_000)
        .unwrap()
        .run(plans);
    true
}

#[test]
fn refused_connects_are_counted_by_reason() {
    refused_connects(Loop::Epoll);
}

#[test]
fn refused_connects_are_counted_by_reason_on_io_uring() {
    refused_connects(Loop::Uring);
}

#[test]
fn closed_loop_slots_reconnect_after_each_exchange() {
    reconnects(Loop::Epoll);
}

#[test]
fn closed_loop_slots_reconnect_after_each_exchange_on_io_uring() {
    reconnects(Loop::Uring);
}

/// A port nobody listens on refuses every attempt; the open loop's schedule says how many
/// there were: one every 10 ms over 100 ms.
fn refused_connects(which: Loop) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let ctx = ctx(Clock::new(), 100);
    let dialer = Dialer::new(&Peer::Tcp(addr), &[], false).unwrap().unwrap();
    let starts = Starts::new(ctx.schedule().start, 100.0, 0, 1);
    let plans = vec![
        ConnPlan {
            id: 0,
            pacing: None,
        },
        ConnPlan {
            id: 1,
            pacing: None,
        },
    ];
    if !run_in(which, &ctx, plans, &dialer, Some(&starts)) {
        return;
    }
    let totals = *ctx.recorder.totals.borrow();
    assert_eq!(totals.connect_errors.refused, 10, "{totals:?}");
    assert_eq!(totals.connect_errors.total(), 10, "{totals:?}");
    assert_eq!(totals.errors.connect_failed, 10, "{totals:?}");
    assert_eq!(totals.connections_opened, 0);
    assert_eq!(totals.messages_sent, 0);
}

/// Closed loop against a listener that accepts and echoes: each slot's connections follow
/// one another, and every one sends and gets back its message.
fn reconnects(which: Loop) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut accepted = 0u64;
        // The bench closes first, after its one reply: read it, echo it, wait for the end.
        listener.set_nonblocking(false).unwrap();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            accepted += 1;
            let mut buf = [0u8; 64];
            if stream.read_exact(&mut buf).is_ok() {
                let _ = stream.write_all(&buf);
            }
            if buf == [0xffu8; 64] {
                break;
            }
        }
        accepted
    });
    let ctx = ctx(Clock::new(), 100);
    let dialer = Dialer::new(&Peer::Tcp(addr), &[], false).unwrap().unwrap();
    let plans = vec![ConnPlan {
        id: 0,
        pacing: None,
    }];
    let ran = run_in(which, &ctx, plans, &dialer, None);
    // Tell the server the run is over.
    let mut last = std::net::TcpStream::connect(addr).unwrap();
    last.write_all(&[0xff; 64]).unwrap();
    let accepted = server.join().unwrap();
    if !ran {
        return;
    }
    let totals = *ctx.recorder.totals.borrow();
    assert!(totals.connections_opened > 1, "{totals:?}");
    assert_eq!(accepted, totals.connections_opened + 1, "{totals:?}");
    assert_eq!(totals.messages_sent, totals.connections_opened);
    assert_eq!(totals.messages_received, totals.messages_sent);
    assert_eq!(totals.errors, Default::default());
    assert_eq!(
        ctx.recorder.first_echo.borrow().len(),
        totals.connections_opened
    );
}

#[test]
fn connections_come_from_the_source_addresses_in_turn() {
    for which in LOOPS {
        from_sources(which);
    }
}

#[test]
fn a_close_rst_resets_each_connection() {
    for which in LOOPS {
        resets(which);
    }
}

#[test]
fn a_server_close_behind_its_reply_ends_the_connection() {
    for which in LOOPS {
        closed_behind_reply(which);
    }
}

/// What a test listener saw of the connections it accepted.
#[derive(Debug, Default)]
struct Seen {
    accepted: u64,
    /// Source addresses, in the order accepted.
    sources: Vec<std::net::IpAddr>,
    /// Connections whose end was a reset rather than a FIN.
    resets: u64,
}

/// A listener on 127.0.0.1 that reads `reads` 64-byte messages per connection and echoes the
/// first `echoes` of them, then closes if `close_after`, else waits for the bench's end. A
/// connection sending all 0xff ends it.
fn listener(
    reads: usize,
    echoes: usize,
    close_after: bool,
) -> (std::net::SocketAddr, std::thread::JoinHandle<Seen>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut seen = Seen::default();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            // Before the bench may have reset it.
            let source = stream.peer_addr().map(|a| a.ip());
            let mut buf = [0u8; 64];
            let mut last = false;
            for n in 0..reads {
                if stream.read_exact(&mut buf).is_err() {
                    break;
                }
                last = buf == [0xffu8; 64];
                if n < echoes || last {
                    let _ = stream.write_all(&buf);
                }
                if last {
                    break;
                }
            }
            if last {
                break;
            }
            seen.accepted += 1;
            if let Ok(ip) = source {
                seen.sources.push(ip);
            }
            if !close_after {
                match stream.read(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => seen.resets += 1,
                    _ => {}
                }
            }
        }
        seen
    });
    (addr, server)
}

/// Ends a [`listener`].
fn stop(addr: std::net::SocketAddr) {
    use std::io::Write;
    let mut last = std::net::TcpStream::connect(addr).unwrap();
    last.write_all(&[0xff; 64]).unwrap();
}

/// One slot binding to 127.0.0.2 and 127.0.0.3 in turn: every connection the listener saw
/// came from them, alternately.
fn from_sources(which: Loop) {
    let (addr, server) = listener(1, 1, false);
    let ctx = ctx(Clock::new(), 100);
    let sources = ["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()];
    let dialer = Dialer::new(&Peer::Tcp(addr), &sources, false)
        .unwrap()
        .unwrap();
    let plans = vec![ConnPlan {
        id: 0,
        pacing: None,
    }];
    let ran = run_in(which, &ctx, plans, &dialer, None);
    stop(addr);
    let seen = server.join().unwrap();
    if !ran {
        return;
    }
    let totals = *ctx.recorder.totals.borrow();
    assert!(totals.connections_opened > 1, "{which:?} {totals:?}");
    assert_eq!(
        seen.accepted, totals.connections_opened,
        "{which:?} {totals:?}"
    );
    for (n, ip) in seen.sources.iter().enumerate() {
        assert_eq!(*ip, sources[n % 2], "{which:?}: connection {n}");
    }
    assert_eq!(totals.errors, Default::default(), "{which:?}");
}

/// `--close rst`: every finished connection ends with a reset, which the listener sees.
fn resets(which: Loop) {
    let (addr, server) = listener(1, 1, false);
    let ctx = churn_ctx(Clock::new(), 100, 1, true);
    let dialer = Dialer::new(&Peer::Tcp(addr), &[], false).unwrap().unwrap();
    let plans = vec![ConnPlan {
        id: 0,
        pacing: None,
    }];
    let ran = run_in(which, &ctx, plans, &dialer, None);
    stop(addr);
    let seen = server.join().unwrap();
    if !ran {
        return;
    }
    let totals = *ctx.recorder.totals.borrow();
    assert!(totals.connections_opened > 1, "{which:?} {totals:?}");
    assert_eq!(
        seen.accepted, totals.connections_opened,
        "{which:?} {totals:?}"
    );
    assert_eq!(seen.resets, seen.accepted, "{which:?}");
}

/// Two messages per connection, both sent at once (pipeline 2), against a server that reads
/// both, answers one and closes at once, so that its FIN is queued right behind the reply and
/// nothing the bench sends afterwards provokes a reset: each connection must end there,
/// counted disconnected, not wait out the run.
fn closed_behind_reply(which: Loop) {
    let (addr, server) = listener(2, 1, true);
    let mut ctx = churn_ctx(Clock::new(), 200, 2, false);
    ctx.pipeline = 2;
    let dialer = Dialer::new(&Peer::Tcp(addr), &[], true).unwrap().unwrap();
    let plans = vec![ConnPlan {
        id: 0,
        pacing: None,
    }];
    let ran = run_in(which, &ctx, plans, &dialer, None);
    stop(addr);
    let seen = server.join().unwrap();
    if !ran {
        return;
    }
    let totals = *ctx.recorder.totals.borrow();
    // A connection stuck until the end would make this one or two.
    assert!(totals.connections_opened > 5, "{which:?} {totals:?}");
    assert_eq!(
        seen.accepted, totals.connections_opened,
        "{which:?} {totals:?}"
    );
    assert_eq!(
        totals.errors.disconnected, totals.connections_opened,
        "{which:?} {totals:?}"
    );
    assert_eq!(
        totals.messages_received, totals.connections_opened,
        "{which:?} {totals:?}"
    );
    assert_eq!(totals.errors.mismatched, 0, "{which:?} {totals:?}");
}
