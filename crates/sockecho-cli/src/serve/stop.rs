//! How `serve` is asked to stop, and the exit code that says how it stopped.
//!
//! - The first SIGINT, SIGTERM or SIGHUP starts a graceful drain: no new connections, open ones
//!   finish what has arrived, and whatever is still open when `--grace` ends is cut. The exit
//!   code is 0. SIGHUP usually asks a daemon to reload; the server has nothing to reload, and a
//!   hangup most often means its terminal went away, so it stops gracefully like SIGTERM (and
//!   removes its Unix socket files) rather than die on the spot.
//! - A second one of them during the drain cuts the open connections at once, and the exit code
//!   is 128 + that signal's number (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP), the shell's
//!   code for "ended by this signal", so a script can tell a cut from a clean drain.

use std::future::Future;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::oneshot;

/// A stop signal: its name for logs and its number for the exit code.
#[derive(Debug, Clone, Copy)]
struct StopSignal {
    name: &'static str,
    number: u8,
}

/// The stop signals as they come, from a task that owns their handlers.
pub struct Stop {
    /// Completes at the first stop signal.
    first: oneshot::Receiver<()>,
    /// Completes at the second.
    second: oneshot::Receiver<()>,
    /// The second signal, once it came.
    cut_by: Arc<OnceLock<StopSignal>>,
}

/// Whether the server was cut short by a second signal, and by which; read after it stopped.
pub struct CutBy(Arc<OnceLock<StopSignal>>);

impl Stop {
    /// Installs the handlers: from now on none of these signals ends the process by itself.
    /// Needs a tokio runtime with signals enabled.
    pub fn install() -> anyhow::Result<Stop> {
        let install = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("cannot install a {name} handler"))
        };
        let interrupt = install(SignalKind::interrupt(), "SIGINT")?;
        let terminate = install(SignalKind::terminate(), "SIGTERM")?;
        let hangup = install(SignalKind::hangup(), "SIGHUP")?;
        let (first_tx, first) = oneshot::channel();
        let (second_tx, second) = oneshot::channel();
        let cut_by = Arc::new(OnceLock::new());
        let record = cut_by.clone();
        tokio::spawn(async move {
            let mut handlers = [
                (
                    interrupt,
                    StopSignal {
                        name: "SIGINT",
                        number: 2,
                    },
                ),
                (
                    terminate,
                    StopSignal {
                        name: "SIGTERM",
                        number: 15,
                    },
                ),
                (
                    hangup,
                    StopSignal {
                        name: "SIGHUP",
                        number: 1,
                    },
                ),
            ];
            let first = next(&mut handlers).await;
            if first.name == "SIGHUP" {
                tracing::info!(
                    "received SIGHUP: there is nothing to reload, so the server stops as for \
                     SIGTERM (a second signal cuts open connections at once)"
                );
            } else {
                tracing::info!(
                    "received {} (a second one cuts open connections at once)",
                    first.name
                );
            }
            let _ = first_tx.send(());
            let second = next(&mut handlers).await;
            tracing::info!("received {} while draining: stopping at once", second.name);
            let _ = record.set(second);
            let _ = second_tx.send(());
        });
        Ok(Stop {
            first,
            second,
            cut_by,
        })
    }

    /// The future that starts the drain, the one that cuts it short, and where to read
    /// afterwards whether it was cut.
    pub fn split(self) -> (impl Future<Output = ()>, impl Future<Output = ()>, CutBy) {
        let Stop {
            first,
            second,
            cut_by,
        } = self;
        // A closed channel means the signal task is gone; then nothing more will come.
        let wait = |rx: oneshot::Receiver<()>| async move {
            if rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        (wait(first), wait(second), CutBy(cut_by))
    }
}

/// Waits for the next signal of any of `handlers`.
async fn next(handlers: &mut [(Signal, StopSignal); 3]) -> StopSignal {
    std::future::poll_fn(|cx| {
        for (handler, stop) in handlers.iter_mut() {
            if handler.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(*stop);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

impl CutBy {
    /// 0 after a clean drain (or one that `--grace` ended), 128 + the signal's number after a
    /// second signal cut it short.
    pub fn exit_code(&self) -> ExitCode {
        match self.0.get() {
            Some(signal) => ExitCode::from(128 + signal.number),
            None => ExitCode::SUCCESS,
        }
    }
}
