//! `serve`'s parsed flags turned into the library's `ServerConfig` and endpoint list, so the
//! server never sees clap.

use sockecho::io::IoMode;
use sockecho::server::fault::FaultPlan;
use sockecho::server::{AccessPolicy, ProxyProtocol, ServerConfig};
use sockecho::{Endpoint, Host, HostPort};

use crate::cli::serve::{ENDPOINTS_VAR, ServeOpts};
use crate::metrics_conn::Limits;
use crate::usage::UsageError;

/// A derived default `--max-conns` below this gets a warning: the open-file limit is too small
/// for a server.
const SMALL_MAX_CONNS: usize = 64;

/// The tutorial's port.
pub const DEFAULT_PORT: u16 = 54000;

/// Where to listen: the endpoints given on the command line, else those in
/// [`ENDPOINTS_VAR`] (`from_env`, its value), else the default one when systemd passed no
/// sockets either.
pub fn endpoints(
    opts: &ServeOpts,
    from_env: Option<&str>,
    inherited: usize,
) -> Result<Vec<Endpoint>, UsageError> {
    if !opts.endpoints.is_empty() {
        return Ok(opts.endpoints.clone());
    }
    let listed: Vec<&str> = from_env
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .collect();
    if !listed.is_empty() {
        return listed
            .into_iter()
            .map(|text| {
                text.parse::<Endpoint>()
                    .map_err(|e| UsageError(format!("{ENDPOINTS_VAR}: {e}")))
            })
            .collect();
    }
    Ok(if inherited == 0 {
        vec![Endpoint::Tcp(HostPort {
            host: Host::Any,
            port: DEFAULT_PORT,
        })]
    } else {
        Vec::new()
    })
}

/// This machine's (or pod's) host name.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// `--identity`, with `auto` standing for `hostname`.
pub fn identity(opts: &ServeOpts, hostname: &str) -> Option<String> {
    opts.identity.as_ref().map(|name| {
        if name == "auto" {
            hostname.to_owned()
        } else {
            name.clone()
        }
    })
}

/// The metrics endpoint's bounds.
pub fn metrics_limits(opts: &ServeOpts) -> Limits {
    Limits {
        max_conns: opts.metrics_max_conns as usize,
        header_timeout: opts.metrics_header_timeout,
        idle_timeout: opts.metrics_idle_timeout,
    }
}

/// The server's settings; reads the TLS certificate and key files when given. An I/O path
/// this system does not have is a usage error.
pub fn config(opts: &ServeOpts, identity: Option<String>) -> anyhow::Result<ServerConfig> {
    if let Some(problem) = IoMode::from(opts.io).unsupported_here() {
        return Err(UsageError(problem.into()).into());
    }
    let mut config = ServerConfig {
        identity,
        // 0 means never, as for most servers' idle timeouts: closing every connection at once
        // would make the server useless.
        idle_timeout: opts.idle_timeout.filter(|d| !d.is_zero()),
        grace: opts.grace,
        log_data: opts.log_data,
        threads: match opts.threads {
            Some(n) => n.into(),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
        access: AccessPolicy {
            allow: opts.allow.clone(),
            deny: opts.deny.clone(),
        },
        max_conns_per_ip: opts.max_conns_per_ip.map(|n| n as usize),
        udp_rate: opts.udp_rate,
        reflection_guard: !opts.no_reflection_guard,
        io: IoMode::from(opts.io),
        ..ServerConfig::default()
    };
    if let Some(n) = opts.max_conns {
        config.max_conns = n as usize;
    } else {
        if opts.metrics.is_some() {
            // The metrics endpoint's connections use descriptors from the same limit.
            config.max_conns = config
                .max_conns
                .saturating_sub(metrics_limits(opts).max_conns)
                .max(1);
        }
        if config.max_conns < SMALL_MAX_CONNS {
            tracing::warn!(
                "the open-file limit is {} (ulimit -n), so at most {} connections are served at \
                 once by default; raise the limit (ulimit -n, or LimitNOFILE= for a systemd \
                 service) or set --max-conns",
                sockecho::limits::open_file_limit(),
                config.max_conns
            );
        }
    }
    config.tls_handshake_timeout = opts.tls_handshake_timeout;
    config.ws_max_message = opts.ws_max_message;
    if opts.proxy_protocol {
        let mut proxy = ProxyProtocol {
            header_timeout: opts.proxy_header_timeout,
            ..ProxyProtocol::default()
        };
        if !opts.proxy_from.is_empty() {
            proxy.trusted = opts.proxy_from.clone();
        }
        config.proxy_protocol = Some(proxy);
    }
    if let (Some(cert), Some(key)) = (&opts.cert, &opts.key) {
        config.tls = Some(sockecho::tls::ServerTls::from_pem_files(cert, key)?);
    }
    if !opts.fault.is_empty() {
        let seed = opts.fault_seed.unwrap_or_else(FaultPlan::random_seed);
        let plan = FaultPlan::new(opts.fault.clone(), seed)
            .map_err(|e| UsageError(format!("--fault: {e}")))?;
        config.faults = Some(plan);
    }
    Ok(config)
}
