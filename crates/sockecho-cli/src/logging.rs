//! Log output: human-readable lines on stderr, verbosity from -q/-v or `RUST_LOG`.

use tracing_subscriber::EnvFilter;

use crate::cli::Verbosity;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the flags.
pub fn init(verbosity: &Verbosity) {
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(use_color())
        .init();
}

fn use_color() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}
