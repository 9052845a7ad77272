//! Tests of the churn loops (epoll and io_uring alike) against listeners in the test: counts
//! that add up with what the listener accepted, and failed connects sorted by reason.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use super::{Dialer, Starts, epoll, uring};
use crate::bench::plan::{ChurnPlan, ConnPlan, Schedule, ThreadCtx};
use crate::bench::recorder::ThreadRecorder;
use crate::bench::timing::Clock;
use crate::connect::Peer;
use crate::payload::Pattern;

fn ctx(clock: Clock, run_ms: u64) -> ThreadCtx {
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
            messages: 1,
            lifetime_ns: u64::MAX,
            rst: false,
        }),
        send_timer: Default::default(),
    }
}

/// Runs the slots in the epoll loop, or in the io_uring loop where the kernel allows it
/// (`false` if it does not).
fn run_in(
    uring: bool,
    ctx: &ThreadCtx,
    plans: Vec<ConnPlan>,
    dialer: &Dialer,
    starts: Option<&Starts>,
) -> bool {
    if !uring {
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
    refused_connects(false);
}

#[test]
fn refused_connects_are_counted_by_reason_on_io_uring() {
    refused_connects(true);
}

#[test]
fn closed_loop_slots_reconnect_after_each_exchange() {
    reconnects(false);
}

#[test]
fn closed_loop_slots_reconnect_after_each_exchange_on_io_uring() {
    reconnects(true);
}

/// A port nobody listens on refuses every attempt; the open loop's schedule says how many
/// there were: one every 10 ms over 100 ms.
fn refused_connects(uring: bool) {
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
    if !run_in(uring, &ctx, plans, &dialer, Some(&starts)) {
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
fn reconnects(uring: bool) {
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
    let ran = run_in(uring, &ctx, plans, &dialer, None);
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
