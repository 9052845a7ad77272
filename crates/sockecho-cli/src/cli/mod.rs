//! Command-line syntax: every subcommand and flag with its help text and environment variable,
//! and nothing else. What the values mean is decided by the subcommands' runners; completions
//! and the man page are generated from these same definitions, so they cannot drift.
//!
//! Every flag that configures a run can also come from `SOCKECHO_<FLAG_NAME>` (the long name in
//! upper snake case); a flag on the command line wins over its variable. A flag of the same
//! name in two subcommands reads the same variable.

pub mod bench;
pub mod client;
pub mod common;
pub mod ping;
pub mod serve;
pub mod tools;

use clap::{Parser, Subcommand};

/// Echo server, client and load generator for TCP, UDP, TLS, WebSocket and Unix sockets.
///
/// Endpoints: tcp://HOST:PORT, udp://HOST:PORT, tls://HOST:PORT, ws://HOST:PORT[/PATH],
/// wss://HOST:PORT[/PATH], unix:PATH, unixgram:PATH, HOST:PORT (tcp),
/// PORT (tcp on all interfaces). IPv6 hosts go in brackets: tcp://[::1]:7. Port 0 picks a free
/// port.
#[derive(Debug, Parser)]
#[command(name = "sockecho", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an echo server on one or more endpoints (default: TCP port 54000, all interfaces).
    Serve(serve::ServeOpts),
    /// Connect to an echo server: interactive on a terminal, a pipe tool otherwise.
    Client(client::ClientOpts),
    /// Load an echo server: throughput, latency percentiles and verification of every echo.
    // Boxed: its many flags make it by far the largest variant.
    Bench(Box<bench::BenchOpts>),
    /// Send one message per interval to an echo server and time each reply, like ping.
    Ping(ping::PingOpts),
    /// Print a shell completion script for sockecho on stdout.
    Completions(tools::CompletionsOpts),
    /// Print the sockecho(1) man page on stdout, or write every page into a directory.
    Man(tools::ManOpts),
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every flag that takes part in a run names its variable, spelled after the flag.
    #[test]
    fn env_names_follow_the_flags() {
        let root = Cli::command();
        for name in ["serve", "client", "bench", "ping"] {
            let sub = root.find_subcommand(name).expect("the subcommand exists");
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                // Verbosity counts -q/-v (RUST_LOG is its variable); --insecure must be typed.
                if ["quiet", "verbose", "insecure"].contains(&id) {
                    continue;
                }
                let expected = format!("SOCKECHO_{}", id.to_uppercase());
                // serve's endpoints are read from their variable by the runner, which splits
                // only the variable's value at commas.
                if (name, id) == ("serve", "endpoints") {
                    assert!(arg.get_env().is_none());
                    assert_eq!(serve::ENDPOINTS_VAR, expected);
                    continue;
                }
                let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
                assert_eq!(env.as_deref(), Some(expected.as_str()), "{name} {id}");
            }
        }
    }

    #[test]
    fn on_off_flags_need_no_value() {
        let parsed = Cli::try_parse_from(["sockecho", "serve", "--log-data"]).unwrap();
        let Command::Serve(opts) = parsed.command else {
            panic!("parsed as another subcommand");
        };
        assert!(opts.log_data);
        assert!(!opts.no_reflection_guard);
    }
}
