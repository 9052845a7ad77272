//! `bench`'s parsed flags turned into the library's `BenchConfig`, checked as a whole before
//! anything connects, so the load engine never sees clap.

use sockecho::bench::{BenchConfig, BenchError, Churn, Close, Shard};

use crate::cli::bench::{BenchOpts, CloseChoice};
use crate::connect::connect_options;
use crate::usage::UsageError;

/// The variable a Kubernetes Indexed Job sets to each pod's index.
pub const JOB_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";

/// The run `opts` ask for; a combination the library refuses is a usage error. Reads the
/// open-file limit, so raise it first.
pub fn config(opts: &BenchOpts) -> anyhow::Result<BenchConfig> {
    config_with_index(opts, std::env::var(JOB_COMPLETION_INDEX).ok().as_deref())
}

/// [`config`], with the Indexed Job's index (if any) given.
fn config_with_index(opts: &BenchOpts, job_index: Option<&str>) -> anyhow::Result<BenchConfig> {
    let config = BenchConfig {
        endpoint: opts.endpoint.clone(),
        connections: opts.connections as usize,
        size: opts.size,
        duration: opts.duration,
        warmup: opts.warmup,
        pipeline: opts.pipeline as usize,
        rate: opts.rate,
        shard: shard(opts, job_index)?,
        start_at: opts.start_at,
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

/// `--shard I/N`, or `--shards N` with I from the Indexed Job; the two must agree if both are
/// given (one may come from the environment).
fn shard(opts: &BenchOpts, job_index: Option<&str>) -> Result<Option<Shard>, UsageError> {
    match (opts.shard, opts.shards) {
        (None, None) => Ok(None),
        (Some(shard), None) => Ok(Some(shard)),
        (Some(shard), Some(count)) if count == shard.count => Ok(Some(shard)),
        (Some(shard), Some(count)) => Err(UsageError(format!(
            "--shard {shard} and --shards {count} disagree on the number of shards"
        ))),
        (None, Some(count)) => {
            let Some(text) = job_index else {
                return Err(UsageError(format!(
                    "--shards {count} takes this process's shard from {JOB_COMPLETION_INDEX}, \
                     which is not set (a Kubernetes Indexed Job sets it); give --shard I/{count}"
                )));
            };
            text.trim()
                .parse::<u32>()
                .ok()
                .and_then(|index| Shard::new(index, count))
                .map(Some)
                .ok_or_else(|| {
                    UsageError(format!(
                        "{JOB_COMPLETION_INDEX}={text:?} is not a shard of {count} (0 to {})",
                        count - 1
                    ))
                })
        }
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
    fn the_shard_comes_from_the_flag_or_the_indexed_job() {
        let config_of = |args: &[&str], index| config_with_index(&opts(args), index);
        let shard = |args: &[&str], index| config_of(args, index).map(|c| c.shard);
        let base = ["tcp://127.0.0.1:9", "-c", "6"];
        let with = |extra: &[&'static str]| [&base[..], extra].concat();
        assert_eq!(shard(&base, Some("2")).unwrap(), None);
        assert_eq!(
            shard(&with(&["--shard", "1/3"]), None).unwrap(),
            Shard::new(1, 3)
        );
        assert_eq!(
            shard(&with(&["--shards", "3"]), Some("2")).unwrap(),
            Shard::new(2, 3)
        );
        assert_eq!(
            shard(&with(&["--shard", "0/3", "--shards", "3"]), Some("2")).unwrap(),
            Shard::new(0, 3)
        );
        for (args, index, problem) in [
            (with(&["--shards", "3"]), None, "is not set"),
            (with(&["--shards", "3"]), Some("3"), "is not a shard of 3"),
            (with(&["--shard", "0/2", "--shards", "3"]), None, "disagree"),
            (with(&["--shard", "0/7"]), None, "cannot be split into 7"),
        ] {
            let err = config_of(&args, index).unwrap_err();
            assert!(err.is::<UsageError>(), "{err:#}");
            assert!(err.to_string().contains(problem), "{args:?}: {err:#}");
        }
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
