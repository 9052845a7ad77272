//! WebSocket echo (`ws://`, `wss://`): the HTTP upgrade on the endpoint's path, then each
//! message echoed back as it came, on a tokio task (never the io_uring engine).
//!
//! The upgrade request is read here rather than by tungstenite's handshake, because that one
//! drops a plain HTTP request without an answer: here a request for another path gets `404`,
//! and one that is not an upgrade gets `426 Upgrade Required`, each with a line of text a user
//! can read in a browser or in `curl`. After the `101` answer tungstenite takes over the
//! frames: it reassembles fragments, answers pings, enforces the message size limit and echoes
//! the close code back.
//!
//! Text stays text and binary stays binary. A message over `--ws-max-message` closes the
//! connection with 1009 (message too big); shutdown closes with 1001 (going away) and waits,
//! up to the grace period, for the client's close.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use super::conn::{Admitted, ConnLog};
use super::echo::CloseReason;
use super::peer_text::escaped;
use super::shared::Shared;

/// The most a request head may take; a longer one is answered `431` and closed.
const MAX_REQUEST_HEAD: usize = 16 << 10;
/// Most header lines parsed in a request head.
const MAX_HEADERS: usize = 64;
/// How long a client that was sent a close frame for an error gets to answer it.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Serves one connection of a `ws://` or `wss://` listener whose upgrade path is `path` (after
/// the TLS handshake, for `wss://`): the upgrade, then the echo, then the log line.
pub(crate) async fn connection<S>(mut stream: S, conn: Admitted, shared: Arc<Shared>, path: &str)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut log = ConnLog::opened(&conn, &shared);
    let upgrade = tokio::select! {
        upgrade = tokio::time::timeout(
            shared.config.tls_handshake_timeout,
            upgrade(&mut stream, path),
        ) => upgrade,
        // Nothing echoed yet: a client still sending its request is simply closed.
        () = shared.drain.cancelled() => {
            log.closed(&conn, &shared, Ok(CloseReason::Drained));
            return;
        }
    };
    let tail = match upgrade {
        Ok(Ok(tail)) => tail,
        Ok(Err(e)) => {
            log.closed(&conn, &shared, Err(e));
            return;
        }
        Err(_) => {
            let timeout = shared.config.tls_handshake_timeout;
            let e = io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no WebSocket upgrade request within {timeout:?}"),
            );
            log.closed(&conn, &shared, Err(e));
            return;
        }
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(shared.config.ws_max_message))
        .max_frame_size(Some(shared.config.ws_max_message));
    let mut ws =
        WebSocketStream::from_partially_read(stream, tail, Role::Server, Some(config)).await;
    let peer = shared.config.log_data.then(|| conn.peer.to_string());
    let result = tokio::select! {
        result = echo(&mut ws, &shared, peer.as_deref(), &mut log.bytes) => result,
        () = shared.cut.cancelled() => Ok(CloseReason::Cut),
    };
    if !matches!(result, Ok(CloseReason::Cut)) {
        // After the close handshake the server ends the connection (RFC 6455, 7.1.1), with a
        // TLS close_notify first on wss://, so the client sees a clean end, not a truncation.
        let _ = tokio::time::timeout(CLOSE_WAIT, ws.get_mut().shutdown()).await;
    }
    log.closed(&conn, &shared, result);
}

/// Reads the upgrade request and answers it. `Ok` carries the bytes that came after the
/// request (the first frames of an eager client); `Err` says why there is no WebSocket, after
/// the client was told in plain HTTP.
async fn upgrade<S>(stream: &mut S, path: &str) -> io::Result<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before sending a whole WebSocket upgrade request",
            ));
        }
        // Only the last few bytes of what was there before can start the blank line.
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(at) = head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            break from + at + 4;
        }
        if head.len() > MAX_REQUEST_HEAD {
            refuse(
                stream,
                431,
                "Request Header Fields Too Large",
                &[],
                "request head too long\n",
            )
            .await;
            return Err(io::Error::other(format!(
                "upgrade request head over {MAX_REQUEST_HEAD} bytes; answered 431"
            )));
        }
    };
    let tail = head.split_off(end);
    match answer(&head, path) {
        Ok(accept) => {
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            stream.write_all(response.as_bytes()).await?;
            stream.flush().await?;
            Ok(tail)
        }
        Err(refusal) => {
            refuse(
                stream,
                refusal.status,
                refusal.reason,
                refusal.headers,
                &refusal.body,
            )
            .await;
            // The body quotes the path the client asked for: escaped, as all peer text in logs.
            Err(io::Error::other(format!(
                "answered {} {}: {}",
                refusal.status,
                refusal.reason,
                escaped(refusal.body.as_bytes())
            )))
        }
    }
}

/// An HTTP answer that is not an upgrade.
#[derive(Debug, PartialEq, Eq)]
struct Refusal {
    status: u16,
    reason: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: String,
}

impl Refusal {
    fn new(status: u16, reason: &'static str, body: String) -> Refusal {
        Refusal {
            status,
            reason,
            headers: &[],
            body,
        }
    }
}

/// Decides on a complete request head: the `Sec-WebSocket-Accept` value for a valid upgrade on
/// `path`, or the refusal to send.
fn answer(head: &[u8], path: &str) -> Result<String, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => {
            return Err(Refusal::new(
                400,
                "Bad Request",
                "malformed HTTP request\n".into(),
            ));
        }
    }
    let asked = request.path.unwrap_or("/");
    // A query string is part of the path when the endpoint names one, else ignored.
    let matches = asked == path || (!path.contains('?') && asked.split('?').next() == Some(path));
    if !matches {
        return Err(Refusal::new(
            404,
            "Not Found",
            format!("no WebSocket endpoint at {asked}; this server echoes at {path}\n"),
        ));
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(Refusal {
            status: 426,
            reason: "Upgrade Required",
            headers: &[("Upgrade", "websocket"), ("Connection", "Upgrade")],
            body: format!("this is a WebSocket echo endpoint: connect to ws://HOST:PORT{path}\n"),
        });
    }
    if request.method != Some("GET") {
        return Err(Refusal::new(
            400,
            "Bad Request",
            "a WebSocket upgrade is a GET request\n".into(),
        ));
    }
    if header("sec-websocket-version").as_deref() != Some("13") {
        return Err(Refusal {
            status: 426,
            reason: "Upgrade Required",
            headers: &[("Sec-WebSocket-Version", "13")],
            body: "only WebSocket version 13 is spoken here\n".into(),
        });
    }
    match header("sec-websocket-key") {
        Some(key) if !key.is_empty() => Ok(derive_accept_key(key.as_bytes())),
        _ => Err(Refusal::new(
            400,
            "Bad Request",
            "the upgrade request has no Sec-WebSocket-Key\n".into(),
        )),
    }
}

/// Sends a plain-text HTTP answer and closes; a client that is already gone is not an error.
async fn refuse<S>(stream: &mut S, status: u16, reason: &str, headers: &[(&str, &str)], body: &str)
where
    S: AsyncWrite + Unpin,
{
    let mut response = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str(&format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Echoes messages until the client closes, the idle timeout passes, or shutdown's close
/// handshake ends. `bytes` counts the payload bytes echoed.
async fn echo<S>(
    ws: &mut WebSocketStream<S>,
    shared: &Shared,
    log_data_as: Option<&str>,
    bytes: &mut u64,
) -> io::Result<CloseReason>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let idle_timeout = shared.config.idle_timeout;
    let idle = tokio::time::sleep(idle_timeout.unwrap_or(Duration::MAX / 4));
    tokio::pin!(idle);
    let drain: &CancellationToken = &shared.drain;
    // Set once this side sent its close frame (shutdown): what arrives after is not echoed.
    let mut closing = false;
    loop {
        let next = tokio::select! {
            biased;
            () = drain.cancelled(), if !closing => {
                closing = true;
                send_close(ws, CloseCode::Away, "server shutting down").await;
                continue;
            }
            () = &mut idle, if idle_timeout.is_some() && !closing => {
                send_close(ws, CloseCode::Normal, "idle timeout").await;
                return Ok(CloseReason::IdleTimeout);
            }
            next = ws.next() => next,
        };
        if let Some(timeout) = idle_timeout {
            idle.as_mut().reset(tokio::time::Instant::now() + timeout);
        }
        let message = match next {
            None => {
                return Ok(if closing {
                    CloseReason::Drained
                } else {
                    CloseReason::PeerClosed
                });
            }
            Some(Ok(message)) => message,
            Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                return Ok(CloseReason::PeerClosed);
            }
            Some(Err(WsError::Io(e))) => return Err(e),
            Some(Err(WsError::Capacity(e))) => {
                send_close(ws, CloseCode::Size, "message too big").await;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("closed with 1009: {e} (--ws-max-message)"),
                ));
            }
            Some(Err(WsError::Utf8(e))) => {
                send_close(ws, CloseCode::Invalid, "text message is not UTF-8").await;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("closed with 1007: {e}"),
                ));
            }
            Some(Err(e)) => {
                send_close(ws, CloseCode::Protocol, "protocol error").await;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("closed with 1002: {e}"),
                ));
            }
        };
        match message {
            Message::Text(_) | Message::Binary(_) if closing => {}
            Message::Text(text) => {
                *bytes += text.len() as u64;
                if let Some(peer) = log_data_as {
                    tracing::info!(target: crate::DATA_LOG, "{peer}: {}", escaped(text.as_bytes()));
                }
                ws.send(Message::Text(text)).await.map_err(into_io)?;
            }
            Message::Binary(data) => {
                *bytes += data.len() as u64;
                if let Some(peer) = log_data_as {
                    tracing::info!(target: crate::DATA_LOG, "{peer}: {}", escaped(&data));
                }
                ws.send(Message::Binary(data)).await.map_err(into_io)?;
            }
            // tungstenite queued the pong, or the echo of the close frame; send it now.
            Message::Ping(_) | Message::Close(_) => ws.flush().await.map_err(into_io)?,
            Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

/// Starts the close handshake with `code`, then waits a little for the client's close so it
/// reads ours before the connection goes (a reset could lose it).
async fn send_close<S>(ws: &mut WebSocketStream<S>, code: CloseCode, reason: &'static str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    if ws.close(Some(frame)).await.is_err() {
        return;
    }
    if code == CloseCode::Away {
        // Shutdown: the echo loop goes on reading until the client answers or the grace ends.
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

fn into_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade_request(path: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    }

    #[test]
    fn a_valid_upgrade_gets_the_accept_key() {
        // The example of RFC 6455, section 1.3.
        assert_eq!(
            answer(upgrade_request("/echo").as_bytes(), "/echo"),
            Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_owned())
        );
        assert!(answer(upgrade_request("/echo?a=1").as_bytes(), "/echo").is_ok());
    }

    #[test]
    fn refusals_say_why() {
        let status = |head: &str, path: &str| answer(head.as_bytes(), path).map_err(|r| r.status);
        assert_eq!(status(&upgrade_request("/other"), "/echo"), Err(404));
        assert_eq!(
            status("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", "/echo"),
            Err(426)
        );
        assert_eq!(status("nonsense\r\n\r\n", "/"), Err(400));
        let old = upgrade_request("/").replace("Version: 13", "Version: 8");
        assert_eq!(status(&old, "/"), Err(426));
        let keyless = upgrade_request("/").replace("Sec-WebSocket-Key", "X-Key");
        assert_eq!(status(&keyless, "/"), Err(400));
        let post = upgrade_request("/").replace("GET", "POST");
        assert_eq!(status(&post, "/"), Err(400));
    }
}
