//! Text a peer controls (payloads under `--log-data`, the names of Unix peers), made safe to
//! write into a line-oriented log.
//!
//! A payload goes into the log as text so that a person can read it, but it must never be able
//! to end the log line and forge another one, move the cursor or recolour a terminal. So every
//! character that is not plainly printable is written as an escape, in the style of Rust string
//! literals:
//!
//! - `\n`, `\r`, `\t` and `\\` (a backslash is doubled, so an escape is never ambiguous);
//! - other ASCII control characters as `\xNN` (ESC is `\x1b`, DEL `\x7f`);
//! - Unicode controls, line and paragraph separators and bidirectional overrides as `\u{NNNN}`;
//! - bytes that are not UTF-8 as `\xNN`.
//!
//! Payloads are also trimmed of leading and trailing ASCII whitespace first, so the newline
//! that ends a typed line does not show.

use std::fmt;

/// `data` as it is written into logs: trimmed, with everything but printable characters
/// escaped. Formats lazily, so building one costs nothing unless the log line is written.
pub fn escaped(data: &[u8]) -> Escaped<'_> {
    Escaped(data.trim_ascii())
}

/// Untrimmed: for names (Unix socket paths), where every byte matters.
pub(crate) fn escaped_whole(data: &[u8]) -> Escaped<'_> {
    Escaped(data)
}

/// Bytes from a peer, displayed escaped; see the module docs for the form.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(&'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            let valid = chunk.valid();
            let mut plain = 0;
            for (at, c) in valid.char_indices() {
                if !needs_escape(c) {
                    continue;
                }
                f.write_str(&valid[plain..at])?;
                match c {
                    '\n' => f.write_str("\\n")?,
                    '\r' => f.write_str("\\r")?,
                    '\t' => f.write_str("\\t")?,
                    '\\' => f.write_str("\\\\")?,
                    c if c.is_ascii() => write!(f, "\\x{:02x}", u32::from(c))?,
                    c => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                }
                plain = at + c.len_utf8();
            }
            f.write_str(&valid[plain..])?;
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

/// Characters a terminal or a log reader could take for something other than text.
fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(
            c,
            // Line and paragraph separators: some readers break lines there.
            '\u{2028}' | '\u{2029}'
            // Bidirectional marks, embeddings, overrides and isolates reorder what is shown.
            | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(data: &[u8]) -> String {
        escaped(data).to_string()
    }

    #[test]
    fn plain_text_is_unchanged_and_the_line_end_trimmed() {
        assert_eq!(text(b"hello, world\n"), "hello, world");
        assert_eq!(text("grüße 👋".as_bytes()), "grüße 👋");
        assert_eq!(text(b""), "");
    }

    #[test]
    fn line_breaks_and_terminal_escapes_cannot_forge_a_line() {
        assert_eq!(
            text(b"ok\nINFO fake line\r\x1b[31mred\x1b[0m\x07"),
            "ok\\nINFO fake line\\r\\x1b[31mred\\x1b[0m\\x07"
        );
        assert_eq!(text(b"tab\there\x7f"), "tab\\there\\x7f");
    }

    #[test]
    fn backslashes_are_doubled_so_escapes_are_unambiguous() {
        assert_eq!(text(b"a\\nb"), "a\\\\nb");
    }

    #[test]
    fn unicode_controls_separators_and_bidi_overrides_are_escaped() {
        assert_eq!(
            text("a\u{85}b\u{2028}c\u{202e}d".as_bytes()),
            "a\\u{85}b\\u{2028}c\\u{202e}d"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_show_as_hex() {
        assert_eq!(text(b"ok\xff\xfe!"), "ok\\xff\\xfe!");
        assert_eq!(escaped_whole(b" x ").to_string(), " x ");
    }
}
