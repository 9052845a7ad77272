//! `bench`'s parsed flags turned into the library's `BenchConfig`, checked as a whole before
//! anything connects, so the load engine never sees clap.

use sockecho::bench::{BenchConfig, BenchError, Churn, Close};

use crate::cli::bench::{BenchOpts, CloseChoice};
use crate::connect::connect_options;
use crate::usage::UsageError;

/// The run `opts` ask for; a combination the library refuses is a usage error. Reads the
/// open-file limit, so raise it first.
pub fn config(opts: &BenchOpts) -> anyhow::Result<BenchConfig> {
    let config = BenchConfig {
        endpoint: opts.endpoint.clone(),
        connections: opts.connections as usize,
        size: opts.size,
        duration: opts.duration,
        warmup: opts.warmup,
        pipeline: opts.pipeline as usize,
        rate: opts.rate,
        threads: opts.threads.into(),
        timeout: opts.timeout,
        connect_timeout: opts.connect_timeout,
        connect: connect_options(&opts.tls, &opts.send_proxy),
        sources: opts.source.clone().map(|s| s.0).unwrap_or_default(),
        io: opts.io.into(),
        udp_offload: opts.udp_offload,
        interval: opts.interval,
        churn: opts.churn.then(|| churn(opts)),
    };
    match config.validate() {
        Ok(()) => Ok(config),
        Err(BenchError::Invalid(problem)) => Err(UsageError(problem).into()),
        Err(other) => Err(other.into()),
    }
}

/// The churn settings: one message per connection unless a count or a lifetime is given.
fn churn(opts: &BenchOpts) -> Churn {
    Churn {
        messages_per_conn: match (opts.messages_per_conn, opts.conn_lifetime) {
            (None, None) => Some(1),
            (n, _) => n,
        },
        lifetime: opts.conn_lifetime,
        close: match opts.close {
            CloseChoice::Fin => Close::Fin,
            CloseChoice::Rst => Close::Rst,
        },
        conn_rate: opts.conn_rate,
        tls_resume: opts.tls_resume,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn opts(args: &[&str]) -> BenchOpts {
        let mut argv = vec!["sockecho", "bench"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)
            .expect("the arguments parse")
            .command
        {
            Command::Bench(opts) => *opts,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn flags_reach_the_config() {
        let config = config(&opts(&[
            "udp://127.0.0.1:9",
            "-c",
            "3",
            "-s",
            "1KiB",
            "--io",
            "epoll",
        ]))
        .expect("a valid run");
        assert_eq!(config.connections, 3);
        assert_eq!(config.size, 1024);
        assert_eq!(config.io, sockecho::io::IoMode::Epoll);
        assert_eq!(config.endpoint.to_string(), "udp://127.0.0.1:9");
    }

    #[test]
    fn churn_flags_reach_the_config() {
        let c = config(&opts(&["tcp://127.0.0.1:9", "--churn"])).expect("a valid run");
        assert_eq!(c.churn, Some(Churn::default()));
        let c = config(&opts(&[
            "tcp://127.0.0.1:9",
            "--churn",
            "--conn-lifetime",
            "50ms",
            "--close",
            "rst",
            "--conn-rate",
            "500",
        ]))
        .expect("a valid run");
        let churn = c.churn.expect("churn is on");
        assert_eq!(churn.messages_per_conn, None);
        assert_eq!(churn.lifetime, Some(std::time::Duration::from_millis(50)));
        assert_eq!(churn.close, Close::Rst);
        assert_eq!(churn.conn_rate, Some(500.0));
        assert_eq!(c.mode(), sockecho::bench::Mode::Open);
        let err = config(&opts(&["udp://127.0.0.1:9", "--churn"])).unwrap_err();
        assert!(err.is::<UsageError>(), "{err:#}");
        let err = config(&opts(&["tcp://127.0.0.1:9", "--churn", "--rate", "10"])).unwrap_err();
        assert!(err.to_string().contains("--conn-rate"), "{err:#}");
    }

    #[test]
    fn combinations_the_library_refuses_are_usage_errors() {
        let err = config(&opts(&["udp://127.0.0.1:9", "-s", "1MiB"])).unwrap_err();
        assert!(err.is::<UsageError>(), "{err:#}");
        assert!(err.to_string().contains("UDP datagram"), "{err:#}");
    }
}
