//! TLS configuration: everything sockecho knows about certificates, keys and trust.
//!
//! This module owns the rustls side of the toolkit and nothing else: it turns files and
//! options into a [`tokio_rustls::TlsAcceptor`] for servers ([`ServerTls`]) and a
//! [`tokio_rustls::TlsConnector`] for clients ([`client_connector`]), and it turns handshake
//! failures into one line a person can act on ([`describe_handshake_error`]). The server and
//! client loops wrap their streams with these and never touch rustls types themselves.
//!
//! Ways a client may decide to trust a server:
//! - by default, the system's root certificates (as a browser would);
//! - `--ca FILE`: only the roots in that PEM file (for a private CA, or a self-signed server
//!   whose certificate was saved with [`ServerTls::certificate_pem`]);
//! - `--pin-sha256 FINGERPRINT`: exactly one certificate, known by its SHA-256 as printed by
//!   [`ServerTls::fingerprint`];
//! - `--insecure`: any certificate, for tests against servers whose identity does not matter.
//!
//! All of it runs on the `ring` crypto provider, chosen explicitly rather than through rustls'
//! process-wide default so that the library builds with only a C compiler (no cmake) and so
//! that another crate in the same process picking a different default cannot change ours.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::{Error as PemError, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, HandshakeType,
    OtherError, RootCertStore, ServerConfig, SignatureScheme,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::net_error::plain;

/// Length in bytes of a certificate fingerprint (a SHA-256 digest).
pub const FINGERPRINT_LEN: usize = 32;

/// Why TLS could not be set up. Each message names the file or text at fault and, where there
/// is one, the way out.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate, key or CA file could not be read at all.
    #[error("cannot read {what} {}: {}", path.display(), plain(cause))]
    Read {
        /// Which file it was meant to be: "certificate", "key" or "CA file".
        what: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    /// A file was read but its PEM is malformed.
    #[error("cannot parse {what} {} as PEM: {detail}", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    /// A certificate or CA file holds no `CERTIFICATE` section.
    #[error(
        "no certificate found in {} (expected PEM \"BEGIN CERTIFICATE\" sections)",
        path.display()
    )]
    NoCertificate { path: PathBuf },
    /// A key file holds no private key section.
    #[error(
        "no private key found in {} (expected a PEM PKCS#8, PKCS#1 or SEC1 key)",
        path.display()
    )]
    NoKey { path: PathBuf },
    /// A key file holds a key the crypto provider rejects.
    #[error("cannot use key {}: {detail}", path.display())]
    BadKey { path: PathBuf, detail: String },
    /// The key is fine on its own but belongs to another certificate.
    #[error(
        "key {} does not match certificate {} — were they made together?",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// The certificate chain cannot be served with this key for another reason.
    #[error("cannot use certificate {}: {detail}", path.display())]
    BadCertificate { path: PathBuf, detail: String },
    /// A certificate in a CA file cannot serve as a trust anchor.
    #[error("cannot use a certificate in CA file {} as a root: {detail}", path.display())]
    BadCa { path: PathBuf, detail: String },
    /// Making a self-signed certificate failed.
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(String),
    /// The system has no root certificates to verify servers with.
    #[error(
        "no trusted root certificates found on this system{detail} — pass --ca FILE, or \
         --pin-sha256 with the server's fingerprint"
    )]
    NoSystemRoots {
        /// Why loading failed, as " (reason)", or empty when nothing was found.
        detail: String,
    },
    /// A fingerprint given to pin is not 32 bytes of hex.
    #[error(
        "invalid fingerprint {text:?}: {reason}; expected 64 hex digits (a SHA-256), colons optional"
    )]
    InvalidFingerprint { text: String, reason: String },
    /// A host cannot be used as a TLS server name.
    #[error("invalid TLS server name {host:?}: neither a DNS name nor an IP address")]
    InvalidServerName { host: String },
    /// Client options that ask for two different kinds of trust at once.
    #[error("{0}")]
    ConflictingOptions(&'static str),
    /// rustls refused the configuration itself (a bug rather than bad input).
    #[error("cannot configure TLS: {0}")]
    Config(String),
}

/// The crypto provider for every config built here; see the module docs for why it is explicit.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ---------------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------------

/// What a TLS server needs: the rustls configuration to accept connections with, and the
/// certificate it presents, so the CLI can show its fingerprint or hand it to clients.
#[derive(Clone)]
pub struct ServerTls {
    /// Shared by every accepted connection; an acceptor is only an `Arc` around it.
    config: Arc<ServerConfig>,
    /// The end-entity certificate, kept to export it as PEM for a client's `--ca`.
    leaf: CertificateDer<'static>,
    /// SHA-256 of `leaf`, computed once because it is printed and compared by clients.
    fingerprint: [u8; FINGERPRINT_LEN],
}

impl ServerTls {
    /// Loads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
    /// SEC1), checking that the key belongs to the leaf certificate.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        let chain = read_certificates(cert, "certificate")?;
        // `read_certificates` never returns an empty chain, and the leaf comes first.
        let leaf = chain[0].clone();
        let key_der = read_private_key(key)?;
        let config = server_config(chain, key_der).map_err(|err| match err {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::KeyMismatch {
                    cert: cert.to_owned(),
                    key: key.to_owned(),
                }
            }
            other => TlsError::BadCertificate {
                path: cert.to_owned(),
                detail: other.to_string(),
            },
        })?;
        ServerTls::new(config, leaf)
    }

    /// Makes a self-signed certificate and key for this run only, valid for `names`
    /// (for instance `["localhost", "127.0.0.1", "::1"]`). Names that parse as IP addresses
    /// (brackets allowed) become IP subject-alternative names, the rest DNS names.
    ///
    /// Clients cannot trust it through the system roots; they pin [`ServerTls::fingerprint`]
    /// or use [`ServerTls::certificate_pem`] as their CA file.
    pub fn self_signed(names: &[String]) -> Result<ServerTls, TlsError> {
        if names.is_empty() {
            return Err(TlsError::SelfSigned(
                "no host names given for the certificate".into(),
            ));
        }
        let names: Vec<String> = names.iter().map(|n| unbracket(n).to_owned()).collect();
        let generated = generate_self_signed(&names)
            .map_err(|err| TlsError::SelfSigned(format!("{err} (names: {})", names.join(", "))))?;
        let leaf = generated.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            generated.signing_key.serialize_der(),
        ));
        let config = server_config(vec![leaf.clone()], key)
            .map_err(|err| TlsError::SelfSigned(err.to_string()))?;
        ServerTls::new(config, leaf)
    }

    /// rustls' defaults but for how TLS 1.3 sessions are resumed: from stateless tickets (the
    /// session sealed under a key only this process knows, rotated every 6 hours) instead of
    /// rustls' 256-entry session cache. The cache forgets a session once 128 more handshakes
    /// have followed it, so a crowd of more than about a hundred returning clients made full
    /// handshakes; tickets hold no memory per session and resume any number of clients, for a
    /// cipher pass over a ticket's hundred-odd bytes. TLS 1.2 session IDs still use the cache.
    fn new(mut config: ServerConfig, leaf: CertificateDer<'static>) -> Result<ServerTls, TlsError> {
        config.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| TlsError::Config(format!("no session ticket key: {e}")))?;
        let fingerprint = sha256(&leaf);
        Ok(ServerTls {
            config: Arc::new(config),
            leaf,
            fingerprint,
        })
    }

    /// SHA-256 of the leaf certificate's DER, as lowercase hex pairs joined by colons
    /// (`"ab:cd:…"`), the form `--pin-sha256` takes.
    pub fn fingerprint(&self) -> String {
        format_fingerprint(&self.fingerprint)
    }

    /// The leaf certificate as PEM, to save as a client's CA file.
    pub fn certificate_pem(&self) -> String {
        pem_certificate(&self.leaf)
    }

    /// The leaf certificate's DER.
    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.leaf
    }

    /// An acceptor for incoming connections; cheap to clone, one per listener or connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.config))
    }
}

impl fmt::Debug for ServerTls {
    // The config holds the private key; show only what identifies the certificate.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, rustls::Error> {
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
}

fn generate_self_signed(
    names: &[String],
) -> Result<rcgen::CertifiedKey<rcgen::KeyPair>, rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    // A verifier looks for a trusted root by the certificate's issuer name, which for a
    // self-signed certificate is its own subject. A plain "CN=localhost" would collide with
    // Debian's snakeoil certificate in /etc/ssl/certs (and with this tool's other runs), and
    // a collision turns "unknown issuer" into a baffling signature error. The key's own
    // fingerprint makes the name unique.
    let key_id = format_fingerprint(&sha256(key.public_key_raw())).replace(':', "");
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(
        rcgen::DnType::CommonName,
        format!("sockecho self-signed {}", &key_id[..16]),
    );
    params.distinguished_name = subject;
    // Say what the certificate is for, so verifiers that check key usage accept it as a server's.
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key)?;
    Ok(rcgen::CertifiedKey {
        cert,
        signing_key: key,
    })
}

// ---------------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------------

/// How a client decides to trust the server's certificate. The default verifies it against
/// the system's root certificates. At most one field may be set.
#[derive(Debug, Clone, Default)]
pub struct ClientTlsOptions {
    /// Trust the roots in this PEM file instead of the system ones. The server's name is still
    /// checked against its certificate.
    pub ca_file: Option<PathBuf>,
    /// Accept exactly the certificate whose SHA-256 is this (hex, colons optional, any case).
    /// No CA is consulted, and the certificate's names and validity dates are not checked
    /// either: the pin alone identifies the server. The handshake signature is still verified,
    /// so the server must hold that certificate's private key.
    pub pin_sha256: Option<String>,
    /// Accept any certificate: the connection is encrypted but the server is not
    /// authenticated. The handshake signature is still checked against the certificate sent.
    pub insecure: bool,
}

/// Builds the connector for `opts`. Loading system roots reads many files, so build it once
/// and clone it for each connection.
pub fn client_connector(opts: &ClientTlsOptions) -> Result<TlsConnector, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError::Config(err.to_string()))?;
    let builder = match (opts.insecure, &opts.pin_sha256, &opts.ca_file) {
        (false, None, None) => builder.with_root_certificates(system_roots()?),
        (false, None, Some(path)) => builder.with_root_certificates(read_ca_file(path)?),
        (false, Some(pin), None) => {
            let verifier = NoCaVerifier::new(Some(parse_fingerprint(pin)?), &provider);
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        }
        (true, None, None) => {
            let verifier = NoCaVerifier::new(None, &provider);
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        }
        _ => {
            return Err(TlsError::ConflictingOptions(
                "--ca, --pin-sha256 and --insecure each decide whom to trust: give only one",
            ));
        }
    };
    Ok(TlsConnector::from(Arc::new(builder.with_no_client_auth())))
}

/// The name a client sends in SNI and checks the certificate against: a DNS name, or an IP
/// address (IPv6 with or without brackets).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(unbracket(host).to_owned()).map_err(|_| TlsError::InvalidServerName {
        host: host.to_owned(),
    })
}

/// The system's roots; an empty store would fail every handshake with a misleading "unknown
/// issuer", so that case is an error of its own.
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::debug!("ignored {ignored} unparsable system root certificates");
    }
    if added == 0 {
        let detail = match found.errors.first() {
            Some(err) => format!(" ({err})"),
            None => String::new(),
        };
        return Err(TlsError::NoSystemRoots { detail });
    }
    for err in &found.errors {
        tracing::debug!("while loading system root certificates: {err}");
    }
    Ok(roots)
}

fn read_ca_file(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(path, "CA file")? {
        roots.add(cert).map_err(|err| TlsError::BadCa {
            path: path.to_owned(),
            detail: err.to_string(),
        })?;
    }
    Ok(roots)
}

/// Verifies a server without any CA: either by a pinned fingerprint or (with no pin) not at
/// all. Either way the handshake signatures are checked, so a peer cannot present a
/// certificate whose key it does not hold.
#[derive(Debug)]
struct NoCaVerifier {
    /// The only acceptable certificate's SHA-256; `None` accepts any certificate.
    pin: Option<[u8; FINGERPRINT_LEN]>,
    /// The provider's signature algorithms, to check handshake signatures as rustls would.
    algorithms: WebPkiSupportedAlgorithms,
}

impl NoCaVerifier {
    fn new(pin: Option<[u8; FINGERPRINT_LEN]>, provider: &CryptoProvider) -> NoCaVerifier {
        NoCaVerifier {
            pin,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

/// The error a pinned verifier reports, carried inside rustls' `CertificateError::Other` so
/// that [`describe_handshake_error`] can show which certificate came instead.
#[derive(Debug, thiserror::Error)]
#[error("certificate fingerprint {got} does not match the pinned one")]
struct PinMismatch {
    got: String,
}

impl ServerCertVerifier for NoCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(pin) = &self.pin else {
            return Ok(ServerCertVerified::assertion());
        };
        let got = sha256(end_entity);
        if &got == pin {
            Ok(ServerCertVerified::assertion())
        } else {
            let mismatch = PinMismatch {
                got: format_fingerprint(&got),
            };
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(mismatch)),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

// ---------------------------------------------------------------------------------------------
// Fingerprints
// ---------------------------------------------------------------------------------------------

/// The fingerprint of a DER certificate, formatted like [`ServerTls::fingerprint`]; for showing
/// which certificate a server presented.
pub fn certificate_fingerprint(cert_der: &[u8]) -> String {
    format_fingerprint(&sha256(cert_der))
}

/// Parses a fingerprint as printed by [`ServerTls::fingerprint`]. Colons are optional and
/// either case is accepted, so a value copied from another tool works too.
pub fn parse_fingerprint(text: &str) -> Result<[u8; FINGERPRINT_LEN], TlsError> {
    let invalid = |reason: String| TlsError::InvalidFingerprint {
        text: text.to_owned(),
        reason,
    };
    let digits: String = text.trim().chars().filter(|&c| c != ':').collect();
    if let Some(bad) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(invalid(format!("{bad:?} is not a hex digit")));
    }
    if digits.len() != 2 * FINGERPRINT_LEN {
        return Err(invalid(format!("found {} hex digits", digits.len())));
    }
    let mut out = [0u8; FINGERPRINT_LEN];
    for (i, byte) in out.iter_mut().enumerate() {
        // Every character is an ASCII hex digit (checked above), so slicing by byte is safe and
        // parsing cannot fail; the error arm is only there to avoid an unwrap.
        *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16)
            .map_err(|err| invalid(err.to_string()))?;
    }
    Ok(out)
}

fn sha256(data: &[u8]) -> [u8; FINGERPRINT_LEN] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; FINGERPRINT_LEN];
    // A SHA-256 digest is always 32 bytes, so the lengths match.
    out.copy_from_slice(digest.as_ref());
    out
}

fn format_fingerprint(bytes: &[u8; FINGERPRINT_LEN]) -> String {
    let pairs: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    pairs.join(":")
}

// ---------------------------------------------------------------------------------------------
// Handshake errors
// ---------------------------------------------------------------------------------------------

/// Explains a failed handshake in one line that says what to do, e.g. "certificate is not
/// trusted (unknown issuer) — pass --ca FILE, or --pin-sha256 with the server's fingerprint".
///
/// tokio-rustls reports TLS failures as an `io::Error` wrapping a `rustls::Error`; those are
/// explained by cause, and plain I/O errors (the peer hanging up mid-handshake) by kind.
/// Works for errors on either side of the connection.
pub fn describe_handshake_error(err: &io::Error) -> String {
    if let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return describe_tls_error(tls);
    }
    match err.kind() {
        io::ErrorKind::UnexpectedEof => {
            "the peer closed the connection during the TLS handshake — does it speak TLS?".into()
        }
        io::ErrorKind::ConnectionReset => {
            "the peer reset the connection during the TLS handshake — does it speak TLS?".into()
        }
        _ => plain(err),
    }
}

fn describe_tls_error(err: &rustls::Error) -> String {
    use rustls::Error;
    match err {
        Error::InvalidCertificate(cert) => describe_certificate_error(cert),
        Error::AlertReceived(alert) => describe_alert(*alert),
        // Our own ClientHello coming back means the bytes were echoed, not answered.
        Error::InappropriateHandshakeMessage {
            got_type: HandshakeType::ClientHello,
            ..
        } => "the server does not speak TLS: it sent our own hello back (a plain echo server?)"
            .into(),
        Error::InvalidMessage(_) => {
            "the peer does not speak TLS (plain text, or another protocol)".into()
        }
        Error::PeerIncompatible(_) => {
            format!("the peer shares no TLS version or cipher suite with us ({err})")
        }
        Error::NoCertificatesPresented => "the peer sent no certificate".into(),
        other => other.to_string(),
    }
}

fn describe_certificate_error(err: &CertificateError) -> String {
    match err {
        CertificateError::UnknownIssuer => "certificate is not trusted (unknown issuer) — pass \
            --ca FILE, or --pin-sha256 with the server's fingerprint"
            .into(),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let names = if presented.is_empty() {
                "no names".to_owned()
            } else {
                presented.join(", ")
            };
            format!(
                "certificate is not valid for host {} (it is for {names})",
                expected.to_str()
            )
        }
        CertificateError::NotValidForName => {
            "certificate is not valid for the host name connected to".into()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "certificate expired (or this machine's clock is wrong)".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "certificate is not valid yet (or this machine's clock is wrong)".into()
        }
        // The issuer's name matched a trusted root but its key did not sign this certificate:
        // a different certificate that happens to share the name is trusted, not this one.
        CertificateError::BadSignature
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "certificate is not trusted (a trusted root has its issuer's name but did not sign \
             it) — pass --ca FILE, or --pin-sha256 with the server's fingerprint"
                .into()
        }
        CertificateError::Revoked => "certificate has been revoked".into(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "certificate is not meant for a TLS server (extended key usage)".into()
        }
        CertificateError::BadEncoding => "certificate is malformed".into(),
        CertificateError::Other(OtherError(inner)) => match inner.downcast_ref::<PinMismatch>() {
            Some(mismatch) => format!(
                "certificate fingerprint does not match the pinned one (got {})",
                mismatch.got
            ),
            // webpki's refusal of a CA certificate (`CA:TRUE`) offered as the server's own, the
            // usual result of `openssl req -x509` without a separate server certificate. Told
            // apart by its name, so as not to depend on webpki's error type directly.
            None if inner.to_string() == "CaUsedAsEndEntity" => {
                "certificate is a CA's (basic constraints CA:TRUE), not a server's: the server \
                 must present a certificate that CA signed, or connect with --pin-sha256 and the \
                 server's fingerprint"
                    .into()
            }
            None => format!("certificate rejected: {inner}"),
        },
        other => format!("certificate rejected: {other}"),
    }
}

fn describe_alert(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateRevoked
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateUnknown
        | AlertDescription::UnknownCA
        | AlertDescription::AccessDenied => format!(
            "the peer rejected our certificate ({alert:?} alert) — a client of a self-signed \
             server needs --ca FILE or --pin-sha256"
        ),
        AlertDescription::HandshakeFailure | AlertDescription::ProtocolVersion => {
            format!("the peer shares no TLS version or cipher suite with us ({alert:?} alert)")
        }
        other => format!("the peer ended the handshake with a {other:?} alert"),
    }
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|cause| TlsError::Read {
        what,
        path: path.to_owned(),
        cause,
    })
}

/// Every certificate in a PEM file, in order; at least one.
fn read_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read_file(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| pem_error(path, what, err))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file, checked by the provider so that a bad key is blamed
/// on the key file rather than on the certificate it is paired with.
fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read_file(path, "key")?;
    let key = PrivateKeyDer::from_pem_slice(&text).map_err(|err| match err {
        PemError::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        other => pem_error(path, "key", other),
    })?;
    provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|err| TlsError::BadKey {
            path: path.to_owned(),
            detail: err.to_string(),
        })?;
    Ok(key)
}

fn pem_error(path: &Path, what: &'static str, err: PemError) -> TlsError {
    TlsError::Pem {
        what,
        path: path.to_owned(),
        detail: err.to_string(),
    }
}

fn pem_certificate(cert: &CertificateDer<'_>) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", cert.as_ref().to_vec()))
}

/// `[::1]` → `::1`: hosts come from endpoints, where IPv6 addresses wear brackets.
fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::future::Future;
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;

    /// Generous for loopback; a test that needs it is broken, not slow.
    const LIMIT: Duration = Duration::from_secs(10);

    const PAYLOAD: &[u8] = b"hello over TLS\n";

    async fn within<F: Future>(what: &str, fut: F) -> F::Output {
        match tokio::time::timeout(LIMIT, fut).await {
            Ok(out) => out,
            Err(_) => panic!("timed out: {what}"),
        }
    }

    fn localhost_names() -> Vec<String> {
        ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec()
    }

    /// Accepts one connection, completes the TLS handshake and echoes until the client closes.
    /// Resolves to the number of bytes echoed, or the server side's handshake/IO error.
    async fn serve_one(tls: &ServerTls) -> (SocketAddr, JoinHandle<io::Result<usize>>) {
        let listener = within("bind", TcpListener::bind("127.0.0.1:0"))
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        let acceptor = tls.acceptor();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await?;
            let mut stream = acceptor.accept(tcp).await?;
            let mut buf = [0u8; 1024];
            let mut echoed = 0;
            loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                stream.write_all(&buf[..n]).await?;
                echoed += n;
            }
            stream.shutdown().await?;
            Ok(echoed)
        });
        (addr, task)
    }

    async fn handshake(
        connector: &TlsConnector,
        addr: SocketAddr,
        name: &str,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = within("connect", TcpStream::connect(addr)).await?;
        let name = server_name(name).expect("valid server name");
        within("client handshake", connector.connect(name, tcp)).await
    }

    /// Sends the payload, checks it comes back, closes cleanly and checks the server echoed
    /// exactly that much.
    async fn echo_round_trip(
        mut stream: tokio_rustls::client::TlsStream<TcpStream>,
        server: JoinHandle<io::Result<usize>>,
    ) {
        within("write", stream.write_all(PAYLOAD))
            .await
            .expect("write payload");
        let mut back = vec![0u8; PAYLOAD.len()];
        within("read echo", stream.read_exact(&mut back))
            .await
            .expect("read echo");
        assert_eq!(back, PAYLOAD);
        within("shutdown", stream.shutdown())
            .await
            .expect("close_notify");
        let mut rest = Vec::new();
        within("read to end", stream.read_to_end(&mut rest))
            .await
            .expect("clean end of stream");
        assert!(rest.is_empty(), "unexpected bytes after echo: {rest:?}");
        let echoed = within("server", server)
            .await
            .expect("server task")
            .expect("server side");
        assert_eq!(echoed, PAYLOAD.len());
    }

    /// Runs a handshake expected to fail and returns the client's and server's descriptions.
    async fn failed_handshake(
        tls: &ServerTls,
        connector: &TlsConnector,
        name: &str,
    ) -> (String, String) {
        let (addr, server) = serve_one(tls).await;
        let client_err = match handshake(connector, addr, name).await {
            Ok(_) => panic!("handshake with {name} should fail"),
            Err(err) => describe_handshake_error(&err),
        };
        let server_err = match within("server", server).await.expect("server task") {
            Ok(n) => panic!("server should fail, echoed {n} bytes"),
            Err(err) => describe_handshake_error(&err),
        };
        (client_err, server_err)
    }

    fn pinned(fingerprint: String) -> TlsConnector {
        client_connector(&ClientTlsOptions {
            pin_sha256: Some(fingerprint),
            ..Default::default()
        })
        .expect("pinned connector")
    }

    fn with_ca(path: &Path) -> TlsConnector {
        client_connector(&ClientTlsOptions {
            ca_file: Some(path.to_owned()),
            ..Default::default()
        })
        .expect("CA connector")
    }

    fn connector_error(opts: ClientTlsOptions) -> TlsError {
        match client_connector(&opts) {
            Ok(_) => panic!("{opts:?} should be refused"),
            Err(err) => err,
        }
    }

    fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write test file");
        path
    }

    /// A certificate and its key as PEM, made the way an operator's tool would.
    fn generated_pems(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    #[tokio::test]
    async fn pinned_client_echoes_through_self_signed_server() {
        let tls = ServerTls::self_signed(&localhost_names()).unwrap();
        let (addr, server) = serve_one(&tls).await;
        // Upper case without colons, as another tool might print it.
        let pin = tls.fingerprint().replace(':', "").to_uppercase();
        let stream = handshake(&pinned(pin), addr, "localhost").await.unwrap();
        echo_round_trip(stream, server).await;
    }

    #[tokio::test]
    async fn wrong_pin_fails_and_names_the_real_fingerprint() {
        let tls = ServerTls::self_signed(&localhost_names()).unwrap();
        let other = ServerTls::self_signed(&localhost_names()).unwrap();
        let (client, server) =
            failed_handshake(&tls, &pinned(other.fingerprint()), "localhost").await;
        assert_eq!(
            client,
            format!(
                "certificate fingerprint does not match the pinned one (got {})",
                tls.fingerprint()
            )
        );
        assert!(server.contains("peer rejected our certificate"), "{server}");
    }

    #[tokio::test]
    async fn system_roots_do_not_trust_a_self_signed_server() {
        let tls = ServerTls::self_signed(&localhost_names()).unwrap();
        let connector = match client_connector(&ClientTlsOptions::default()) {
            Ok(connector) => connector,
            // A machine without a CA bundle: the error itself must point the way out.
            Err(err @ TlsError::NoSystemRoots { .. }) => {
                let text = err.to_string();
                assert!(text.contains("--ca FILE"), "{text}");
                return;
            }
            Err(other) => panic!("unexpected error: {other}"),
        };
        let (client, server) = failed_handshake(&tls, &connector, "localhost").await;
        assert!(
            client.starts_with("certificate is not trusted (unknown issuer)"),
            "{client}"
        );
        assert!(client.contains("--pin-sha256"), "{client}");
        assert!(server.contains("UnknownCA"), "{server}");
    }

    #[tokio::test]
    async fn ca_file_from_self_signed_certificate_is_trusted_by_name_and_ip() {
        let dir = tempfile::tempdir().unwrap();
        let tls = ServerTls::self_signed(&localhost_names()).unwrap();
        let ca = write(dir.path(), "ca.pem", &tls.certificate_pem());
        for name in ["localhost", "127.0.0.1"] {
            let (addr, server) = serve_one(&tls).await;
            let stream = handshake(&with_ca(&ca), addr, name).await.unwrap();
            echo_round_trip(stream, server).await;
        }
    }

    #[tokio::test]
    async fn ca_file_of_another_self_signed_server_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let tls = ServerTls::self_signed(&localhost_names()).unwrap();
        let other = ServerTls::self_signed(&localhost_names()).unwrap();
        let ca = write(dir.path(), "other.pem", &other.certificate_pem());
        let (client, _) = failed_handshake(&tls, &with_ca(&ca), "localhost").await;
        assert!(
            client.starts_with("certificate is not trusted (unknown issuer)"),
            "{client}"
        );
    }

    #[tokio::test]
    async fn a_ca_certificate_served_as_the_server_s_own_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("certificate");
        let cert_path = write(dir.path(), "ca.pem", &cert.pem());
        let key_path = write(dir.path(), "ca-key.pem", &key.serialize_pem());
        let tls = ServerTls::from_pem_files(&cert_path, &key_path).unwrap();
        let (client, _) = failed_handshake(&tls, &with_ca(&cert_path), "localhost").await;
        assert!(
            client.starts_with("certificate is a CA's (basic constraints CA:TRUE)"),
            "{client}"
        );
        assert!(client.contains("--pin-sha256"), "{client}");
    }

    #[tokio::test]
    async fn ca_file_rejects_a_name_the_certificate_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let tls = ServerTls::self_signed(&localhost_names()).unwrap();
        let ca = write(dir.path(), "ca.pem", &tls.certificate_pem());
        let (client, _) = failed_handshake(&tls, &with_ca(&ca), "other.example").await;
        assert!(
            client.starts_with("certificate is not valid for host other.example"),
            "{client}"
        );
        assert!(client.contains("localhost"), "{client}");
    }

    #[tokio::test]
    async fn insecure_client_accepts_any_certificate() {
        let tls = ServerTls::self_signed(&["example.invalid".to_owned()]).unwrap();
        let (addr, server) = serve_one(&tls).await;
        let connector = client_connector(&ClientTlsOptions {
            insecure: true,
            ..Default::default()
        })
        .unwrap();
        let stream = handshake(&connector, addr, "localhost").await.unwrap();
        echo_round_trip(stream, server).await;
    }

    #[tokio::test]
    async fn tls_client_against_plain_echo_server_is_explained() {
        let listener = within("bind", TcpListener::bind("127.0.0.1:0"))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let plain_echo = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await?;
            let (mut rd, mut wr) = tcp.split();
            tokio::io::copy(&mut rd, &mut wr).await
        });
        let connector = client_connector(&ClientTlsOptions {
            insecure: true,
            ..Default::default()
        })
        .unwrap();
        let err = handshake(&connector, addr, "localhost").await.unwrap_err();
        assert_eq!(
            describe_handshake_error(&err),
            "the server does not speak TLS: it sent our own hello back (a plain echo server?)"
        );
        // The echo loop ends once the client drops its side; its result does not matter.
        let _ = within("plain echo server", plain_echo).await;
    }

    #[tokio::test]
    async fn plain_client_against_tls_server_is_explained() {
        let tls = ServerTls::self_signed(&localhost_names()).unwrap();
        let (addr, server) = serve_one(&tls).await;
        let mut tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
        within("write", tcp.write_all(b"hello\n")).await.unwrap();
        let err = within("server", server).await.unwrap().unwrap_err();
        assert_eq!(
            describe_handshake_error(&err),
            "the peer does not speak TLS (plain text, or another protocol)"
        );
    }

    #[tokio::test]
    async fn pem_files_load_and_serve() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, key_pem) = generated_pems("localhost");
        let cert = write(dir.path(), "cert.pem", &cert_pem);
        let key = write(dir.path(), "key.pem", &key_pem);
        let tls = ServerTls::from_pem_files(&cert, &key).unwrap();
        // The PEM written back names the same certificate that was loaded.
        assert_eq!(tls.certificate_pem().replace("\r\n", "\n"), cert_pem);
        let (addr, server) = serve_one(&tls).await;
        let stream = handshake(&with_ca(&cert), addr, "localhost").await.unwrap();
        echo_round_trip(stream, server).await;
    }

    #[test]
    fn pem_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, key_pem) = generated_pems("localhost");
        let (_, other_key_pem) = generated_pems("localhost");
        let cert = write(dir.path(), "cert.pem", &cert_pem);
        let key = write(dir.path(), "key.pem", &key_pem);
        let other_key = write(dir.path(), "other-key.pem", &other_key_pem);
        let missing = dir.path().join("missing.pem");
        let garbage_key = write(
            dir.path(),
            "garbage-key.pem",
            "-----BEGIN PRIVATE KEY-----\nAAAAAAAA\n-----END PRIVATE KEY-----\n",
        );
        let error = |cert: &Path, key: &Path| match ServerTls::from_pem_files(cert, key) {
            Ok(tls) => panic!("loading should fail, got {tls:?}"),
            Err(err) => err.to_string(),
        };

        assert_eq!(
            error(&missing, &key),
            format!(
                "cannot read certificate {}: no such file or directory",
                missing.display()
            )
        );
        assert_eq!(
            error(&cert, &missing),
            format!(
                "cannot read key {}: no such file or directory",
                missing.display()
            )
        );
        assert!(
            error(&key, &key).starts_with(&format!("no certificate found in {}", key.display())),
        );
        assert!(
            error(&cert, &cert).starts_with(&format!("no private key found in {}", cert.display())),
        );
        assert!(
            error(&cert, &garbage_key)
                .starts_with(&format!("cannot use key {}: ", garbage_key.display())),
        );
        assert_eq!(
            error(&cert, &other_key),
            format!(
                "key {} does not match certificate {} — were they made together?",
                other_key.display(),
                cert.display()
            )
        );
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key_pem) = generated_pems("localhost");
        let not_ca = write(dir.path(), "key-not-ca.pem", &key_pem);
        let err = connector_error(ClientTlsOptions {
            ca_file: Some(not_ca.clone()),
            ..Default::default()
        });
        assert!(
            err.to_string()
                .starts_with(&format!("no certificate found in {}", not_ca.display())),
            "{err}"
        );
    }

    #[test]
    fn trust_options_exclude_each_other() {
        let err = connector_error(ClientTlsOptions {
            pin_sha256: Some("00".repeat(32)),
            insecure: true,
            ..Default::default()
        });
        assert!(matches!(err, TlsError::ConflictingOptions(_)), "{err}");
    }

    #[test]
    fn self_signed_needs_a_name() {
        let err = ServerTls::self_signed(&[]).unwrap_err();
        assert!(err.to_string().contains("no host names"), "{err}");
    }

    #[test]
    fn fingerprint_is_colon_separated_lowercase_sha256() {
        // SHA-256("abc") from FIPS 180-2.
        assert_eq!(
            certificate_fingerprint(b"abc"),
            "ba:78:16:bf:8f:01:cf:ea:41:41:40:de:5d:ae:22:23:\
             b0:03:61:a3:96:17:7a:9c:b4:10:ff:61:f2:00:15:ad"
        );
    }

    #[test]
    fn parse_fingerprint_accepts_printed_and_copied_forms() {
        let tls = ServerTls::self_signed(&localhost_names()).unwrap();
        let printed = tls.fingerprint();
        let bytes = parse_fingerprint(&printed).unwrap();
        assert_eq!(format_fingerprint(&bytes), printed);
        assert_eq!(parse_fingerprint(&printed.to_uppercase()).unwrap(), bytes);
        assert_eq!(parse_fingerprint(&printed.replace(':', "")).unwrap(), bytes);
        assert_eq!(parse_fingerprint(&format!(" {printed}\n")).unwrap(), bytes);
    }

    #[test]
    fn parse_fingerprint_rejects_wrong_length_and_non_hex() {
        let short = parse_fingerprint("ab:cd").unwrap_err().to_string();
        assert_eq!(
            short,
            "invalid fingerprint \"ab:cd\": found 4 hex digits; expected 64 hex digits \
             (a SHA-256), colons optional"
        );
        let text = format!("{}zz", "a".repeat(62));
        let non_hex = parse_fingerprint(&text).unwrap_err().to_string();
        assert!(non_hex.contains("'z' is not a hex digit"), "{non_hex}");
        assert!(parse_fingerprint(&"a".repeat(66)).is_err());
        assert!(parse_fingerprint("").is_err());
    }

    #[test]
    fn server_names_take_dns_names_and_ip_addresses() {
        assert!(matches!(
            server_name("localhost").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(matches!(
            server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        let err = server_name("not a host").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid TLS server name \"not a host\": neither a DNS name nor an IP address"
        );
    }
}
