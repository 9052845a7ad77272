//! Log output on stderr: readable lines or JSON objects, verbosity from -q/-v or `RUST_LOG`.

use tracing_subscriber::EnvFilter;

use crate::cli::common::{LogFormat, Verbosity};

/// Installs the global subscriber for readable lines. `RUST_LOG`, when set, overrides the flags.
pub fn init(verbosity: &Verbosity) {
    init_with_format(verbosity, LogFormat::Text);
}

/// Installs the global subscriber. In text form only each event's message is shown (it already
/// names the peer); in JSON form every field is there for machines.
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
                        write!(writer, "{value:?}")
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

fn use_color() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}
