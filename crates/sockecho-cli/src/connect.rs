//! The client side's TLS trust flags turned into the library's connect options, shared by
//! `client`, `bench` and `ping`.

use sockecho::connect::ConnectOptions;
use sockecho::tls::ClientTlsOptions;

use crate::cli::common::TlsClientArgs;

/// The library's connect options; warns loudly about --insecure.
pub fn connect_options(args: &TlsClientArgs) -> ConnectOptions {
    if args.insecure {
        eprintln!(
            "warning: --insecure: the server's certificate is not checked; anyone on the \
             path can impersonate the server and read or change this traffic"
        );
    }
    ConnectOptions {
        tls: ClientTlsOptions {
            ca_file: args.ca.clone(),
            pin_sha256: args.pin_sha256.clone(),
            insecure: args.insecure,
        },
        ..Default::default()
    }
}
