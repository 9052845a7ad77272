//! `sockecho ping`: one message per interval to an echo server, a line per reply with its
//! round-trip time, and ping's summary at the end or on Ctrl-C. Exit 0 if every message got its
//! reply, 1 otherwise. The lines' wording is in `lines`.

mod lines;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sockecho::ping::{PingConfig, PingError, ping};

use crate::cli::ping::PingOpts;
use crate::connect::connect_options;
use crate::logging;
use crate::signals::Interrupts;
use crate::usage::UsageError;

pub fn main(opts: PingOpts) -> anyhow::Result<ExitCode> {
    logging::init(&opts.verbosity);
    let config = config(&opts);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(config))
}

/// The library's settings for the flags; the reply timeout defaults to at least the interval.
fn config(opts: &PingOpts) -> PingConfig {
    PingConfig {
        endpoint: opts.endpoint.clone(),
        interval: opts.interval,
        count: opts.count,
        size: opts.size,
        timeout: opts
            .timeout
            .unwrap_or_else(|| opts.interval.max(Duration::from_secs(1))),
        connect: connect_options(&opts.tls, &opts.send_proxy),
    }
}

async fn run(config: PingConfig) -> anyhow::Result<ExitCode> {
    let mut signals = Interrupts::new()?;
    let stop = async move {
        signals.next().await;
    };
    let size = config.size;
    let timeout = config.timeout;
    let mut stdout = std::io::stdout();
    let mut peer = config.endpoint.to_string();
    let summary = ping(
        &config,
        |event| {
            let line = lines::describe(&event, &mut peer, size, timeout);
            // Output is best effort: a closed pipe must not stop the summary or the exit code.
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
        },
        stop,
    )
    .await;
    let summary = match summary {
        Ok(s) => s,
        Err(PingError::Invalid(problem)) => return Err(UsageError(problem).into()),
        Err(e) => return Err(e.into()),
    };
    let _ = write!(stdout, "{}", lines::summary_text(&summary));
    let _ = stdout.flush();
    if let Some(reason) = &summary.ended_by {
        eprintln!("error: connection to {} lost: {reason}", summary.peer);
    }
    Ok(if summary.all_replied() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
