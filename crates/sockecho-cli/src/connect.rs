//! The client side's TLS trust and PROXY header flags turned into the library's connect
//! options, shared by `client`, `bench` and `ping`.

use sockecho::connect::ConnectOptions;
use sockecho::proxy_protocol::{SendProxy, Version};
use sockecho::tls::ClientTlsOptions;

use crate::cli::common::{ProxyVersion, SendProxyArgs, TlsClientArgs};

/// The library's connect options; warns loudly about --insecure.
pub fn connect_options(args: &TlsClientArgs, proxy: &SendProxyArgs) -> ConnectOptions {
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
        send_proxy: proxy.send_proxy.map(|version| SendProxy {
            version: match version {
                ProxyVersion::V1 => Version::V1,
                ProxyVersion::V2 => Version::V2,
            },
            source: proxy.proxy_source,
        }),
        ..Default::default()
    }
}
