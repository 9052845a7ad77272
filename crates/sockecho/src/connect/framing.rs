//! [`Framing`]: how the bytes a tool writes to a WebSocket are cut into messages, chosen with
//! the other connect options and applied by the WebSocket stream.

/// How a WebSocket stream cuts the bytes written to it into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Every write is one binary message (ping, and anything writing whole messages).
    Writes,
    /// Every line is one message without its newline: text if it is UTF-8, else binary. The
    /// newline is given back after the echo of each message that had one, so the bytes read
    /// back equal the bytes written (the line clients).
    Lines,
}
