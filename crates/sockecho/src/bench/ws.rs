//! The view of a WebSocket connection (`ws://`, `wss://`) that the stream connection loop
//! drives. The connection, upgrade included (so it counts in the connect time), is opened by the
//! run's one [`WsClient`](crate::connect::WsClient).
//!
//! The loop writes a byte stream of messages; [`WsSocket`] cuts it back into the run's messages
//! (all of one size) and sends each as one binary frame, and reads the payloads of the frames
//! that come back as the echoed byte stream, so verification, pipelining and latency are the
//! plain path's, unchanged. As for TLS, a read or a write is one poll that must not wait
//! (`Pending` means `WouldBlock`), and all waiting happens in [`AsyncWire::ready`], which also
//! sends whatever tungstenite still holds.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures_util::{Sink, Stream};
use tokio::io::{Interest, Ready};
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};

use super::wire::{AsyncWire, Wire};
use crate::connect::{WsConnection, ws_error_into_io};

/// An open WebSocket connection of a run.
pub struct WsSocket {
    /// Boxed: a WebSocket with its buffers is large, and a thread keeps its connections in one
    /// list until the run starts.
    ws: Box<WsConnection>,
    /// Every message of the run has this many bytes.
    size: usize,
    /// The message being written, until all of it has come from the loop.
    outgoing: Vec<u8>,
    /// The rest of the last frame read.
    incoming: Bytes,
    /// The server closed: reads return the end of the stream.
    ended: bool,
    /// The connection task's waker, from its last wait in [`AsyncWire::ready`]. The reads and
    /// writes that must not wait poll with it too: tungstenite keeps the waker of its latest
    /// poll, so one that does nothing could leave the task asleep when the socket is ready.
    waker: Waker,
}

impl WsSocket {
    pub fn new(ws: WsConnection, size: usize) -> WsSocket {
        WsSocket {
            ws: Box::new(ws),
            size: size.max(1),
            outgoing: Vec::with_capacity(size),
            incoming: Bytes::new(),
            ended: false,
            waker: Waker::noop().clone(),
        }
    }

    /// Hands a whole message to tungstenite if it takes one now. `false`: it holds too much.
    fn send_whole(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        if self.outgoing.len() < self.size {
            return Ok(true);
        }
        match Pin::new(&mut *self.ws).poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Err(ws_error_into_io(e)),
            Poll::Pending => return Ok(false),
        }
        let message = std::mem::replace(&mut self.outgoing, Vec::with_capacity(self.size));
        Pin::new(&mut *self.ws)
            .start_send(Message::Binary(message.into()))
            .map_err(ws_error_into_io)?;
        Ok(true)
    }

    /// Reads frames until one carries data (kept in `incoming`), the stream ends, or none is
    /// there. Control frames are taken in passing: tungstenite answers pings itself.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.incoming.is_empty() && !self.ended {
            match Pin::new(&mut *self.ws).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None)
                | Poll::Ready(Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed))) => {
                    self.ended = true;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(ws_error_into_io(e))),
                Poll::Ready(Some(Ok(message @ (Message::Binary(_) | Message::Text(_))))) => {
                    self.incoming = message.into_data();
                }
                Poll::Ready(Some(Ok(_))) => {}
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<Ready>> {
        if !self.waker.will_wake(cx.waker()) {
            self.waker = cx.waker().clone();
        }
        let mut ready = Ready::EMPTY;
        // A message completed by the last write goes out whatever the caller waits for: the
        // loop stops asking to write once it has written every byte.
        let taken = self.send_whole(cx)?;
        match Pin::new(&mut *self.ws).poll_flush(cx) {
            Poll::Ready(Ok(())) if taken && interest.is_writable() => ready |= Ready::WRITABLE,
            Poll::Ready(Ok(())) | Poll::Pending => {}
            // Reading shows why: the server's close, or the error.
            Poll::Ready(Err(_)) => ready |= Ready::READABLE,
        }
        if !self.incoming.is_empty() || self.ended {
            ready |= Ready::READABLE;
        } else if interest.is_readable() {
            match self.poll_frame(cx) {
                Poll::Ready(Ok(())) => ready |= Ready::READABLE,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if ready.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(Ok(ready))
        }
    }
}

impl AsyncWire for WsSocket {
    async fn ready(&mut self, interest: Interest) -> io::Result<Ready> {
        std::future::poll_fn(|cx| self.poll_ready(cx, interest)).await
    }
}

impl Wire for WsSocket {
    /// Reads payload bytes of the frames that have arrived; short only when no more are there.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let waker = self.waker.clone();
        let mut cx = Context::from_waker(&waker);
        let mut n = 0;
        while n < buf.len() {
            match self.poll_frame(&mut cx) {
                Poll::Ready(Ok(())) if self.ended && self.incoming.is_empty() => break,
                Poll::Ready(Ok(())) => {
                    let take = self.incoming.len().min(buf.len() - n);
                    buf[n..n + take].copy_from_slice(&self.incoming.split_to(take));
                    n += take;
                }
                Poll::Ready(Err(e)) if n == 0 => return Err(e),
                // What was read is returned first; the error comes back at the next read.
                Poll::Ready(Err(_)) => break,
                Poll::Pending if n == 0 => return Err(io::ErrorKind::WouldBlock.into()),
                Poll::Pending => break,
            }
        }
        Ok(n)
    }

    /// Takes bytes of the message stream, sending each message as it completes.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let waker = self.waker.clone();
        let mut cx = Context::from_waker(&waker);
        let mut taken = 0;
        for buf in bufs {
            let mut rest: &[u8] = buf;
            while !rest.is_empty() {
                if !self.send_whole(&mut cx)? {
                    break;
                }
                let n = (self.size - self.outgoing.len()).min(rest.len());
                self.outgoing.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                taken += n;
            }
            if !rest.is_empty() {
                break;
            }
        }
        self.send_whole(&mut cx)?;
        if let Poll::Ready(Err(e)) = Pin::new(&mut *self.ws).poll_flush(&mut cx) {
            return Err(ws_error_into_io(e));
        }
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }
}
