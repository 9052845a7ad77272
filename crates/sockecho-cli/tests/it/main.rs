//! Black-box tests of the `sockecho` binary: each module drives the real binary through one area
//! (serving, clients, bench and ping, operations, TLS, usage errors) with the harness in
//! [`support`]. One test binary, so the harness is built once and every helper is used somewhere.

mod support;

mod bench_churn;
mod bench_faults;
mod bench_html;
mod bench_intervals;
mod bench_rate;
mod bench_stop;
mod bench_sweep;
mod bench_transports;
mod cli_env;
mod client_datagram;
mod client_errors;
mod client_interactive;
mod client_pipe;
mod ops_access;
mod ops_activation;
mod ops_identity;
mod ops_limits;
mod ops_logs_json;
mod ops_metrics;
mod ops_metrics_limits;
mod ops_udp_guard;
mod ping;
mod ping_stall;
mod proxy_protocol;
mod serve_datagram;
mod serve_endpoints;
mod serve_errors;
mod serve_faults;
mod serve_io_paths;
mod serve_limits;
mod serve_logs;
mod serve_shutdown;
mod serve_stream;
mod serve_unix_paths;
mod tls_serve;
mod tls_tools;
mod tls_trust;
// UDP GSO/GRO are Linux's.
#[cfg(target_os = "linux")]
mod udp_offload;
mod usage_errors;
mod usage_values;
mod websocket;
