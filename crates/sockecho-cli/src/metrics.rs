//! `--metrics ADDR`: Prometheus metrics over HTTP, plus `/healthz` and `/readyz`.
//!
//! The server's counters are atomics in the library; each scrape copies them into a fresh
//! `prometheus-client` registry and encodes it in the OpenMetrics text format, so the hot path
//! never touches the metrics library.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::Context;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sockecho::Counters;

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

/// Binds the metrics listener; the returned future serves it for as long as it is polled.
pub async fn bind(
    addr: &str,
    counters: Arc<Counters>,
    health: Arc<Health>,
) -> anyhow::Result<impl std::future::Future<Output = ()> + use<>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve metrics on {addr}"))?;
    let local = listener.local_addr().context("metrics listener address")?;
    tracing::info!("metrics on http://{local}/metrics (also /healthz, /readyz)");
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
            let (counters, health) = (counters.clone(), health.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    std::future::ready(Ok::<_, Infallible>(respond(&req, &counters, &health)))
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!("metrics request from {peer}: {e}");
                }
            });
        }
    })
}

fn respond(req: &Request<Incoming>, counters: &Counters, health: &Health) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match req.uri().path() {
        "/metrics" => match encode(counters) {
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
            let (status, body) = health.state();
            text(status, body)
        }
        _ => text(StatusCode::NOT_FOUND, "try /metrics, /healthz or /readyz\n"),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

type Labels = Vec<(&'static str, &'static str)>;

/// Copies the counters into a registry and encodes it.
fn encode(counters: &Counters) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("sockecho");
    let counter = |registry: &mut Registry, name: &str, help: &str| {
        let family = Family::<Labels, Counter>::default();
        registry.register(name, help, family.clone());
        family
    };
    let connections = counter(
        &mut registry,
        "connections",
        "Stream connections accepted and served",
    );
    let rejected = counter(
        &mut registry,
        "connections_rejected",
        "Stream connections refused at once, by reason",
    );
    let closed = counter(
        &mut registry,
        "connections_closed",
        "Stream connections ended, by reason",
    );
    let bytes = counter(
        &mut registry,
        "bytes_echoed",
        "Bytes echoed on stream connections",
    );
    let datagrams = counter(&mut registry, "datagrams_echoed", "Datagrams echoed");
    let datagram_bytes = counter(
        &mut registry,
        "datagram_bytes_echoed",
        "Payload bytes of echoed datagrams",
    );
    let dropped = counter(
        &mut registry,
        "datagrams_dropped",
        "Datagrams received but not echoed, by reason",
    );
    let tls_failures = counter(
        &mut registry,
        "tls_handshake_failures",
        "TLS handshakes that failed or timed out",
    );
    let accept_errors = counter(
        &mut registry,
        "accept_errors",
        "Failed accept calls (e.g. out of file descriptors)",
    );
    let faults = counter(
        &mut registry,
        "faults_injected",
        "Faults injected on purpose (serve --fault), by kind",
    );
    for kind in sockecho::server::fault::FaultKind::ALL {
        faults
            .get_or_create(&vec![("kind", kind.as_str())])
            .inc_by(counters.faults().get(kind));
    }
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
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_family_with_transport_labels() {
        let counters = Counters::default();
        let text = encode(&counters).unwrap();
        for needle in [
            "sockecho_connections_total{transport=\"tcp\"} 0",
            "sockecho_connections_open{transport=\"unix\"} 0",
            "sockecho_connections_rejected_total{transport=\"tcp\",reason=\"denied\"} 0",
            "sockecho_datagrams_dropped_total{transport=\"udp\",reason=\"reflection_guard\"} 0",
            "sockecho_datagrams_echoed_total{transport=\"unixgram\"} 0",
            "sockecho_tls_handshake_failures_total{transport=\"tcp\"} 0",
            "sockecho_faults_injected_total{kind=\"reset-after\"} 0",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
