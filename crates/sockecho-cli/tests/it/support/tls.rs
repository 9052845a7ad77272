//! TLS material and log lines: certificates written to disk for `--tls-cert`/`--tls-key` and
//! for clients to trust, the fingerprint the server logs for its self-signed certificate, and
//! the address of its `tls://` listener.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::server::Server;

/// Starts `sockecho ARGS` (a `serve` with exactly one `tls://` listener) and returns it with the
/// address from its `listening on tls://` line. [`Server::start`] does not fit: [`Ep`] has no TLS
/// form.
pub fn start_tls_server(args: &[&str]) -> (Server, SocketAddr) {
    let server = Server::spawn(args);
    let log = server.wait_for("listening on tls://");
    let addr = log
        .lines()
        .find_map(|l| l.split_once("listening on tls://").map(|(_, a)| a.trim()))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address on the `listening on tls://` line:\n{log}"));
    (server, addr)
}

/// Starts `sockecho serve tls://127.0.0.1:0` presenting `cert` instead of a self-signed one.
pub fn start_tls_server_with(cert: &CertFiles) -> (Server, SocketAddr) {
    let utf8 = |p: &Path| p.to_str().expect("temporary paths are UTF-8").to_owned();
    let (cert, key) = (utf8(&cert.cert), utf8(&cert.key));
    start_tls_server(&["serve", "tls://127.0.0.1:0", "--cert", &cert, "--key", &key])
}

/// The SHA-256 fingerprint from the server's `self-signed certificate` line, checked to be 32
/// lowercase hex pairs joined by colons.
pub fn logged_fingerprint(log: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("TLS: self-signed certificate for this run"))
        .unwrap_or_else(|| panic!("no self-signed certificate line in the log:\n{log}"));
    let fingerprint = line
        .split_once("SHA-256 fingerprint ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no fingerprint on {line:?}"));
    let pairs: Vec<&str> = fingerprint.split(':').collect();
    let lower_hex =
        |p: &&str| p.len() == 2 && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    assert!(
        pairs.len() == 32 && pairs.iter().all(lower_hex),
        "{fingerprint:?} is not a SHA-256 fingerprint in ab:cd:... form"
    );
    fingerprint.to_owned()
}

/// A certificate and its key, as PEM files.
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate's DER, for a client in the test to trust.
    pub der: Vec<u8>,
}

/// Makes a self-signed certificate for `names` (IP addresses become IP names) and writes it and
/// its key to `NAME.crt` and `NAME.key` in `dir`.
pub fn write_cert(dir: &Path, file_name: &str, names: &[&str]) -> CertFiles {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names).expect("make a certificate");
    let cert = dir.join(format!("{file_name}.crt"));
    let key = dir.join(format!("{file_name}.key"));
    std::fs::write(&cert, made.cert.pem()).expect("write the certificate");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write the key");
    CertFiles {
        cert,
        key,
        der: made.cert.der().to_vec(),
    }
}
