//! `sockecho client`: the interactive prompt on a terminal, a pipe tool otherwise.

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use anyhow::Context;
use rustyline::error::ReadlineError;
use sockecho::client::datagram::{
    DatagramClient, DatagramSummary, datagram_interactive, datagram_pipe,
};
use sockecho::client::interactive::{LineSource, interactive};
use sockecho::client::pipe::pipe;
use sockecho::connect::{ConnectOptions, Framing, connect_stream_with};

use crate::cli::client::ClientOpts;
use crate::connect::connect_options;
use crate::logging;
use crate::usage::UsageError;

pub fn main(opts: ClientOpts) -> anyhow::Result<ExitCode> {
    logging::init(&opts.verbosity);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The line editor puts the terminal in raw mode while it reads. If the server goes away
    // mid-prompt the read is abandoned, so restore the terminal ourselves, and do not wait for
    // the abandoned read's thread.
    let saved_terminal = rustix::termios::tcgetattr(rustix::stdio::stdin()).ok();
    let result = runtime.block_on(run(opts));
    runtime.shutdown_background();
    if let Some(termios) = saved_terminal {
        let _ = rustix::termios::tcsetattr(
            rustix::stdio::stdin(),
            rustix::termios::OptionalActions::Now,
            &termios,
        );
    }
    result
}

async fn run(opts: ClientOpts) -> anyhow::Result<ExitCode> {
    let endpoint = &opts.endpoint;
    let on_terminal = io::stdin().is_terminal();
    if endpoint.transport().is_datagram() {
        if opts.send_proxy.send_proxy.is_some() {
            return Err(UsageError(
                "a PROXY header (--send-proxy) goes on tcp and tls endpoints only".into(),
            )
            .into());
        }
        let mut client = DatagramClient::connect(endpoint).await?;
        let summary = if on_terminal {
            let mut editor = Editor::new()?;
            datagram_interactive(&mut client, &mut editor, &mut io::stdout(), opts.timeout).await?
        } else {
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            datagram_pipe(
                &mut client,
                stdin,
                &mut io::stdout().lock(),
                &mut io::stderr(),
                opts.timeout,
            )
            .await?
        };
        return Ok(datagram_exit(&summary, opts.timeout));
    }
    let options = ConnectOptions {
        // Each line one message, as users of WebSocket echo expect.
        ws_framing: Framing::Lines,
        ..connect_options(&opts.tls, &opts.send_proxy)
    };
    let (stream, reached) = connect_stream_with(endpoint, &options).await?;
    tracing::debug!("connected to {reached}");
    if on_terminal {
        let mut editor = Editor::new()?;
        interactive(stream, endpoint, &mut editor, &mut io::stdout()).await?;
    } else {
        pipe(stream, endpoint, tokio::io::stdin(), tokio::io::stdout()).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit 1 if any reply was lost or any line could not be sent (each was already reported on
/// its own line); 0 otherwise.
fn datagram_exit(summary: &DatagramSummary, timeout: std::time::Duration) -> ExitCode {
    if summary.lost > 0 {
        eprintln!(
            "error: {} of {} datagrams got no reply within {timeout:?}",
            summary.lost, summary.sent
        );
    }
    if summary.too_long > 0 {
        eprintln!(
            "error: {} line(s) too long for one datagram were not sent",
            summary.too_long
        );
    }
    if summary.lost == 0 && summary.too_long == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Lines from the terminal with editing and history (rustyline). The editor blocks, so each
/// line is read on the blocking thread pool.
struct Editor {
    inner: Option<rustyline::DefaultEditor>,
}

impl Editor {
    fn new() -> anyhow::Result<Self> {
        let inner = rustyline::DefaultEditor::new().context("cannot set up line editing")?;
        Ok(Editor { inner: Some(inner) })
    }
}

impl LineSource for Editor {
    async fn read_line(&mut self, prompt: &str) -> io::Result<Option<String>> {
        let Some(mut editor) = self.inner.take() else {
            return Ok(None);
        };
        let prompt = prompt.to_owned();
        let (editor, result) = tokio::task::spawn_blocking(move || {
            let result = editor.readline(&prompt);
            (editor, result)
        })
        .await
        .map_err(io::Error::other)?;
        self.inner = Some(editor);
        match result {
            Ok(line) => {
                if let Some(editor) = self.inner.as_mut() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                Ok(Some(line))
            }
            Err(ReadlineError::Eof | ReadlineError::Interrupted) => Ok(None),
            Err(ReadlineError::Io(e)) => Err(e),
            Err(e) => Err(io::Error::other(e)),
        }
    }
}
