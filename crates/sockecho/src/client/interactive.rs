//! The tutorial's interactive client: a prompt, one line sent per entry, the echo shown as
//! `SERVER> text`, and an empty line to quit.

use std::future::Future;
use std::io::{self, Write};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::ClientError;
use crate::Endpoint;
use crate::connect::BoxStream;

/// The greeting printed once connected.
pub const GREETING: &str = "Connected to server. Type messages (empty line to quit):";
/// The prompt before each line.
pub const PROMPT: &str = "> ";
/// The prefix of each reply.
pub const REPLY_PREFIX: &str = "SERVER> ";

/// Where the interactive client gets its lines: a line editor on a terminal, a list in tests.
pub trait LineSource {
    /// Shows `prompt` and returns the next line without its line ending, or `None` at end of
    /// input (Ctrl-D, Ctrl-C).
    fn read_line(&mut self, prompt: &str) -> impl Future<Output = io::Result<Option<String>>>;
}

/// Runs the prompt loop over a connected stream until an empty line or end of input, then
/// closes the connection. Returns the number of lines echoed.
pub async fn interactive<L, W>(
    stream: BoxStream,
    endpoint: &Endpoint,
    lines: &mut L,
    out: &mut W,
) -> Result<u64, ClientError>
where
    L: LineSource,
    W: Write,
{
    writeln!(out, "{GREETING}")
        .and_then(|()| out.flush())
        .map_err(|e| ClientError::local("cannot write to the terminal", &e))?;
    // Split, so that a long line's echo is read while the line is still being written: an echo
    // server writes back as it reads, and would stall on a full buffer otherwise.
    let (from_server, mut to_server) = tokio::io::split(stream);
    let mut stream = BufReader::new(from_server);
    let mut reply = Vec::new();
    let mut echoed = 0;
    let io_lost = |e: io::Error| ClientError::lost(endpoint, &e);
    let server_closed = || ClientError::lost(endpoint, &io::ErrorKind::UnexpectedEof.into());
    loop {
        // Watch the connection while waiting for the user, so a server that goes away is
        // reported at once rather than at the next line typed.
        let line = {
            let next_line = lines.read_line(PROMPT);
            tokio::pin!(next_line);
            loop {
                tokio::select! {
                    line = &mut next_line => break line,
                    n = stream.read_until(b'\n', &mut reply) => {
                        if n.map_err(io_lost)? == 0 {
                            // End the prompt's line so the error starts on its own.
                            let _ = writeln!(out);
                            return Err(server_closed());
                        }
                        // Something the server sent on its own: show it like a reply.
                        print_reply(out, &reply)?;
                        reply.clear();
                    }
                }
            }
        };
        let line = line.map_err(|e| ClientError::local("cannot read input", &e))?;
        let Some(line) = line.filter(|l| !l.is_empty()) else {
            break;
        };
        let mut message = line.into_bytes();
        message.push(b'\n');
        let (_, n) = tokio::try_join!(
            to_server.write_all(&message),
            stream.read_until(b'\n', &mut reply)
        )
        .map_err(io_lost)?;
        if n == 0 {
            return Err(server_closed());
        }
        print_reply(out, &reply)?;
        reply.clear();
        echoed += 1;
    }
    // Close politely; the server may already be gone, which is fine when quitting.
    let _ = to_server.shutdown().await;
    Ok(echoed)
}

fn print_reply(out: &mut impl Write, reply: &[u8]) -> Result<(), ClientError> {
    let text = String::from_utf8_lossy(reply);
    writeln!(out, "{REPLY_PREFIX}{}", text.trim_end_matches(['\n', '\r']))
        .and_then(|()| out.flush())
        .map_err(|e| ClientError::local("cannot write to the terminal", &e))
}

/// Lines from a fixed list, for tests and scripted sessions; prompts go nowhere.
impl LineSource for std::vec::IntoIter<String> {
    async fn read_line(&mut self, _prompt: &str) -> io::Result<Option<String>> {
        Ok(self.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{EchoOptions, echo_stream};
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn prints_greeting_and_replies_then_quits_on_empty_line() {
        let (client, mut server) = tokio::net::UnixStream::pair().unwrap();
        let task = tokio::spawn(async move {
            echo_stream(
                &mut server,
                &EchoOptions::default(),
                &CancellationToken::new(),
            )
            .await
        });
        let mut lines = vec![
            "hello".to_string(),
            "wörld ✓".into(),
            "".into(),
            "never".into(),
        ]
        .into_iter();
        let mut out = Vec::new();
        let endpoint: Endpoint = "unix:pair".parse().unwrap();
        let n = interactive(Box::new(client), &endpoint, &mut lines, &mut out)
            .await
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{GREETING}\nSERVER> hello\nSERVER> wörld ✓\n")
        );
        assert_eq!(
            lines.next().as_deref(),
            Some("never"),
            "read past the empty line"
        );
        let outcome = task.await.unwrap();
        assert_eq!(outcome.bytes, 6 + "wörld ✓\n".len() as u64);
    }

    /// A line longer than both sockets' buffers: its echo must be read while it is written.
    #[tokio::test]
    async fn a_line_larger_than_the_buffers_is_echoed() {
        let (client, mut server) = tokio::net::UnixStream::pair().unwrap();
        tokio::spawn(async move {
            echo_stream(
                &mut server,
                &EchoOptions::default(),
                &CancellationToken::new(),
            )
            .await
        });
        let line = "x".repeat(8 << 20);
        let mut lines = vec![line.clone(), "".into()].into_iter();
        let mut out = Vec::new();
        let endpoint: Endpoint = "unix:pair".parse().unwrap();
        let n = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            interactive(Box::new(client), &endpoint, &mut lines, &mut out),
        )
        .await
        .expect("the echo of a long line does not deadlock")
        .unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            out.len(),
            GREETING.len() + 1 + REPLY_PREFIX.len() + line.len() + 1
        );
    }

    #[tokio::test]
    async fn server_going_away_is_an_error() {
        let (client, server) = tokio::net::UnixStream::pair().unwrap();
        drop(server);
        let mut lines = vec!["hello".to_string()].into_iter();
        let endpoint: Endpoint = "unix:pair".parse().unwrap();
        let err = interactive(Box::new(client), &endpoint, &mut lines, &mut Vec::new())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("connection to unix:pair lost: the server"),
            "{msg}"
        );
    }
}
