//! `--metrics ADDR`: Prometheus metrics over HTTP, plus `/healthz`, `/readyz` and `/info`.
//!
//! The server's counters are atomics in the library; each scrape copies them into a fresh
//! `prometheus-client` registry and encodes it in the OpenMetrics text format, so the hot path
//! never touches the metrics library. Each connection is served within the limits of
//! [`metrics_conn`](crate::metrics_conn); the cap on connections is applied here, at accept.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::Context;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use sockecho::Counters;
use tokio::sync::Semaphore;

use crate::metrics_conn::{self, Limits};

/// Where the server is in its life, for `/readyz`: starting (the default, 0), ready or
/// draining.
#[derive(Debug, Default)]
pub struct Health(AtomicU8);

const READY: u8 = 1;
const DRAINING: u8 = 2;

impl Health {
    /// Every listener is bound.
    pub fn set_ready(&self) {
        self.0.store(READY, Ordering::Relaxed);
    }

    /// Shutdown has begun: no new connections.
    pub fn set_draining(&self) {
        self.0.store(DRAINING, Ordering::Relaxed);
    }

    fn state(&self) -> (StatusCode, &'static str) {
        match self.0.load(Ordering::Relaxed) {
            READY => (StatusCode::OK, "ready\n"),
            DRAINING => (StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        }
    }
}

/// What this server is, for `/info` and `sockecho_info`: fixed for its lifetime.
#[derive(Debug, Clone)]
pub struct About {
    /// `--identity`, if given.
    pub identity: Option<String>,
    /// The host (or pod) name, always.
    pub hostname: String,
    pub version: &'static str,
    /// The echo listeners' endpoints, as bound.
    pub listeners: Vec<String>,
}

/// Everything a request may be answered from.
struct State {
    counters: Arc<Counters>,
    health: Arc<Health>,
    about: About,
    limits: Limits,
    endpoint: metrics_conn::Counters,
    /// One permit per connection served at once.
    slots: Arc<Semaphore>,
}

/// Binds the metrics listener; the returned future serves it for as long as it is polled.
pub async fn bind(
    addr: &str,
    counters: Arc<Counters>,
    health: Arc<Health>,
    about: About,
    limits: Limits,
) -> anyhow::Result<impl std::future::Future<Output = ()> + use<>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve metrics on {addr}"))?;
    let local = listener.local_addr().context("metrics listener address")?;
    tracing::info!("metrics on http://{local}/metrics (also /healthz, /readyz, /info)");
    let state = Arc::new(State {
        counters,
        health,
        about,
        limits,
        endpoint: metrics_conn::Counters::default(),
        slots: Arc::new(Semaphore::new(limits.max_conns)),
    });
    Ok(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!("metrics accept failed: {e}");
                    // Out of descriptors: give the echo server's connections a moment to end.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Accepted and closed at once rather than left in the backlog, so the refusal is
            // quick for the client and counted here.
            let Ok(permit) = state.slots.clone().try_acquire_owned() else {
                drop(stream);
                metrics_conn::Counters::add(&state.endpoint.over_limit);
                tracing::debug!("metrics connection from {peer} closed: connection limit");
                continue;
            };
            metrics_conn::Counters::add(&state.endpoint.accepted);
            let state = state.clone();
            tokio::spawn(async move {
                let responder = state.clone();
                metrics_conn::serve(stream, state.limits, &state.endpoint, move |req| {
                    respond(req, &responder)
                })
                .await;
                drop(permit);
            });
        }
    })
}

fn respond(req: &Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match req.uri().path() {
        "/metrics" => match encode(state) {
            Ok(body) => {
                let mut response = text(StatusCode::OK, body);
                response.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                response
            }
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding failed: {e}\n"),
            ),
        },
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let (status, body) = state.health.state();
            text(status, body)
        }
        "/info" => {
            let about = &state.about;
            let body = serde_json::json!({
                "identity": about.identity,
                "hostname": about.hostname,
                "version": about.version,
                "listeners": about.listeners,
                // The last PROXY protocol headers taken (--proxy-protocol), oldest first.
                "proxy_headers": state.counters.recent_proxy_headers(),
            });
            let mut response = text(StatusCode::OK, format!("{body}\n"));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "try /metrics, /healthz, /readyz or /info\n",
        ),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

type Labels = Vec<(&'static str, &'static str)>;

/// Copies the counters into a registry and encodes it.
fn encode(state: &State) -> Result<String, std::fmt::Error> {
    let mut root = Registry::default();
    let mut info = vec![("version".to_owned(), state.about.version.to_owned())];
    if let Some(identity) = &state.about.identity {
        info.insert(0, ("identity".to_owned(), identity.clone()));
    }
    // Registered as `sockecho`, encoded as `sockecho_info`.
    root.register(
        "sockecho",
        "This server: its --identity (if given) and version",
        Info::new(info),
    );
    let registry = root.sub_registry_with_prefix("sockecho");
    encode_endpoint(registry, state);
    let counters = &state.counters;
    let counter = |registry: &mut Registry, name: &str, help: &str| {
        let family = Family::<Labels, Counter>::default();
        registry.register(name, help, family.clone());
        family
    };
    let connections = counter(
        registry,
        "connections",
        "Stream connections accepted and served",
    );
    let rejected = counter(
        registry,
        "connections_rejected",
        "Stream connections refused at once, by reason",
    );
    let closed = counter(
        registry,
        "connections_closed",
        "Stream connections ended, by reason",
    );
    let bytes = counter(
        registry,
        "bytes_echoed",
        "Bytes echoed on stream connections",
    );
    let datagrams = counter(registry, "datagrams_echoed", "Datagrams echoed");
    let datagram_bytes = counter(
        registry,
        "datagram_bytes_echoed",
        "Payload bytes of echoed datagrams",
    );
    let dropped = counter(
        registry,
        "datagrams_dropped",
        "Datagrams received but not echoed, by reason",
    );
    let tls_failures = counter(
        registry,
        "tls_handshake_failures",
        "TLS handshakes that failed or timed out",
    );
    let accept_errors = counter(
        registry,
        "accept_errors",
        "Failed accept calls (e.g. out of file descriptors)",
    );
    let faults = counter(
        registry,
        "faults_injected",
        "Faults injected on purpose (serve --fault), by kind",
    );
    for kind in sockecho::server::fault::FaultKind::ALL {
        faults
            .get_or_create(&vec![("kind", kind.as_str())])
            .inc_by(counters.faults().get(kind));
    }
    let proxy_headers = counter(
        registry,
        "proxy_headers",
        "PROXY headers taken (--proxy-protocol), by kind: v1, v2, or local (no client address)",
    );
    let proxy_errors = counter(
        registry,
        "proxy_header_errors",
        "Connections closed over their PROXY header, by reason",
    );
    let open = Family::<Labels, Gauge>::default();
    registry.register(
        "connections_open",
        "Stream connections open now",
        open.clone(),
    );

    for (transport, stats) in counters.by_transport() {
        let t = transport.as_str();
        let with = |extra: Option<(&'static str, &'static str)>| -> Labels {
            let mut labels = vec![("transport", t)];
            labels.extend(extra);
            labels
        };
        let stream = !transport.is_datagram();
        if stream {
            connections
                .get_or_create(&with(None))
                .inc_by(stats.connections_accepted);
            open.get_or_create(&with(None))
                .set(i64::try_from(stats.connections_open()).unwrap_or(i64::MAX));
            for (reason, n) in [
                ("denied", stats.connections_denied),
                ("per_ip_limit", stats.connections_over_ip_limit),
            ] {
                rejected
                    .get_or_create(&with(Some(("reason", reason))))
                    .inc_by(n);
            }
            let errors_and_cuts = stats.connection_errors + stats.connections_cut;
            let normal = stats
                .connections_closed
                .saturating_sub(errors_and_cuts + stats.connections_idle_closed);
            for (reason, n) in [
                ("normal", normal),
                ("idle_timeout", stats.connections_idle_closed),
                ("error", stats.connection_errors),
                ("cut_at_shutdown", stats.connections_cut),
            ] {
                closed
                    .get_or_create(&with(Some(("reason", reason))))
                    .inc_by(n);
            }
            bytes.get_or_create(&with(None)).inc_by(stats.stream_bytes);
            accept_errors
                .get_or_create(&with(None))
                .inc_by(stats.accept_errors);
            tls_failures
                .get_or_create(&with(None))
                .inc_by(stats.tls_handshake_failures);
            // PROXY headers come on TCP only (TLS and WebSocket included).
            let proxied = !matches!(
                transport,
                sockecho::Transport::Udp
                    | sockecho::Transport::Unix
                    | sockecho::Transport::UnixGram
            );
            if proxied {
                for (kind, n) in [
                    ("v1", stats.proxy_headers_v1),
                    ("v2", stats.proxy_headers_v2),
                    ("local", stats.proxy_headers_local),
                ] {
                    proxy_headers
                        .get_or_create(&with(Some(("kind", kind))))
                        .inc_by(n);
                }
                for (reason, n) in [
                    ("untrusted", stats.proxy_untrusted),
                    ("missing", stats.proxy_header_missing),
                    ("malformed", stats.proxy_header_malformed),
                    ("too_long", stats.proxy_header_too_long),
                    ("timeout", stats.proxy_header_timeout),
                    ("closed", stats.proxy_header_closed),
                ] {
                    proxy_errors
                        .get_or_create(&with(Some(("reason", reason))))
                        .inc_by(n);
                }
            }
        } else {
            datagrams.get_or_create(&with(None)).inc_by(stats.datagrams);
            datagram_bytes
                .get_or_create(&with(None))
                .inc_by(stats.datagram_bytes);
            for (reason, n) in [
                ("send_failed", stats.datagrams_dropped),
                ("denied", stats.datagrams_denied),
                ("rate_limited", stats.datagrams_rate_limited),
                ("reflection_guard", stats.datagrams_reflection_blocked),
            ] {
                dropped
                    .get_or_create(&with(Some(("reason", reason))))
                    .inc_by(n);
            }
        }
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &root)?;
    Ok(out)
}

/// The metrics endpoint's own families: `sockecho_metrics_*`.
fn encode_endpoint(registry: &mut Registry, state: &State) {
    let endpoint = &state.endpoint;
    let get = metrics_conn::Counters::get;
    let accepted = Counter::<u64>::default();
    accepted.inc_by(get(&endpoint.accepted));
    registry.register(
        "metrics_connections",
        "Connections to the metrics endpoint accepted and served",
        accepted,
    );
    let open = Gauge::<i64>::default();
    let idle_slots = state.slots.available_permits();
    open.set(i64::try_from(state.limits.max_conns.saturating_sub(idle_slots)).unwrap_or(i64::MAX));
    registry.register(
        "metrics_connections_open",
        "Connections to the metrics endpoint open now",
        open,
    );
    let rejected = Family::<Labels, Counter>::default();
    registry.register(
        "metrics_connections_rejected",
        "Connections to the metrics endpoint closed by its limits, by reason",
        rejected.clone(),
    );
    for (reason, counter) in [
        ("limit", &endpoint.over_limit),
        ("header_timeout", &endpoint.header_timeout),
        ("idle_timeout", &endpoint.idle_timeout),
        ("header_too_large", &endpoint.header_too_large),
    ] {
        rejected
            .get_or_create(&vec![("reason", reason)])
            .inc_by(get(counter));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(identity: Option<&str>) -> State {
        let limits = Limits {
            max_conns: 8,
            header_timeout: std::time::Duration::from_secs(5),
            idle_timeout: std::time::Duration::from_secs(30),
        };
        State {
            counters: Arc::default(),
            health: Arc::default(),
            about: About {
                identity: identity.map(str::to_owned),
                hostname: "host-1".into(),
                version: "9.8.7",
                listeners: vec!["tcp://127.0.0.1:7".into()],
            },
            limits,
            endpoint: metrics_conn::Counters::default(),
            slots: Arc::new(Semaphore::new(limits.max_conns)),
        }
    }

    #[test]
    fn encodes_every_family_with_transport_labels() {
        let text = encode(&state(None)).unwrap();
        for needle in [
            "sockecho_info{version=\"9.8.7\"} 1",
            "sockecho_metrics_connections_total 0",
            "sockecho_metrics_connections_open 0",
            "sockecho_metrics_connections_rejected_total{reason=\"limit\"} 0",
            "sockecho_metrics_connections_rejected_total{reason=\"header_too_large\"} 0",
            "sockecho_connections_total{transport=\"tcp\"} 0",
            "sockecho_connections_open{transport=\"unix\"} 0",
            "sockecho_connections_rejected_total{transport=\"tcp\",reason=\"denied\"} 0",
            "sockecho_datagrams_dropped_total{transport=\"udp\",reason=\"reflection_guard\"} 0",
            "sockecho_datagrams_echoed_total{transport=\"unixgram\"} 0",
            "sockecho_tls_handshake_failures_total{transport=\"tcp\"} 0",
            "sockecho_faults_injected_total{kind=\"reset-after\"} 0",
            "sockecho_proxy_headers_total{transport=\"tcp\",kind=\"v2\"} 0",
            "sockecho_proxy_header_errors_total{transport=\"tls\",reason=\"untrusted\"} 0",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn the_identity_is_a_label_of_sockecho_info_escaped() {
        let text = encode(&state(Some("pod \"7\""))).unwrap();
        assert!(
            text.contains("sockecho_info{identity=\"pod \\\"7\\\"\",version=\"9.8.7\"} 1"),
            "{text}"
        );
    }
}
