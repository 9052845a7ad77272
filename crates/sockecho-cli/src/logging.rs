//! Log output on stderr: readable lines or JSON objects, verbosity from -q/-v or `RUST_LOG`.

use tracing_subscriber::EnvFilter;

use crate::cli::common::{LogFormat, Verbosity};

/// Installs the global subscriber for readable lines. `RUST_LOG`, when set, overrides the flags.
pub fn init(verbosity: &Verbosity) {
    init_with_format(verbosity, LogFormat::Text);
}

/// Installs the global subscriber. In text form only each event's message is shown (it already
/// names the peer), with control characters escaped; in JSON form every field is there for
/// machines, escaped by the JSON encoding.
pub fn init_with_format(verbosity: &Verbosity, format: LogFormat) {
    // -q silences per-connection lines but keeps lifecycle ones (`listening on`, shutdown);
    // -qq keeps only errors.
    let directives = match (verbosity.quiet, verbosity.verbose) {
        (0, 0) => "sockecho=info,sockecho_cli=info,warn",
        (1, _) => "sockecho=info,sockecho_cli=info,sockecho::conn=warn,warn",
        (_, 0) => "error",
        (_, 1) => "sockecho=debug,sockecho_cli=debug,info",
        _ => "sockecho=trace,sockecho_cli=trace,info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder
            .with_ansi(use_color())
            .fmt_fields(tracing_subscriber::fmt::format::debug_fn(
                |writer, field, value| {
                    if field.name() == "message" {
                        write_controls_escaped(writer, &format!("{value:?}"))
                    } else {
                        Ok(())
                    }
                },
            ))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// Writes a message with any control character escaped (`\n`, `\u{1b}`): one event is one
/// line, and nothing that reached a message (text a peer chose, say) can end that line early or
/// send escape sequences to a terminal. Payloads are escaped more fully where they are logged.
fn write_controls_escaped(writer: &mut impl std::fmt::Write, text: &str) -> std::fmt::Result {
    let mut plain = 0;
    for (at, c) in text.char_indices() {
        if c.is_control() {
            writer.write_str(&text[plain..at])?;
            write!(writer, "{}", c.escape_default())?;
            plain = at + c.len_utf8();
        }
    }
    writer.write_str(&text[plain..])
}

fn use_color() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::write_controls_escaped;

    #[test]
    fn control_characters_in_a_message_are_escaped() {
        let mut out = String::new();
        write_controls_escaped(&mut out, "a\nINFO forged\r\x1b[31m é").expect("write");
        assert_eq!(out, "a\\nINFO forged\\r\\u{1b}[31m é");
    }
}
