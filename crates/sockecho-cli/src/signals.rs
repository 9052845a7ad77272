//! SIGINT and SIGTERM, the two ways a user or a service manager asks a command to stop, as one
//! stream shared by every subcommand that must react to them.

use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Both signals. Once made, neither ends the process by itself any more.
pub struct Interrupts {
    interrupt: Signal,
    terminate: Signal,
}

impl Interrupts {
    /// Installs the handlers. Needs a tokio runtime with signals enabled.
    pub fn new() -> anyhow::Result<Interrupts> {
        Ok(Interrupts {
            interrupt: signal(SignalKind::interrupt())
                .context("cannot install a SIGINT handler")?,
            terminate: signal(SignalKind::terminate())
                .context("cannot install a SIGTERM handler")?,
        })
    }

    /// Waits for the next of either signal; returns its name.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
