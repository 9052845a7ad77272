//! A stream endpoint of any transport (TCP, TLS, WebSocket, Unix) as one connected
//! [`BoxStream`], for the tools that read and write through tokio's traits (the clients, ping).

use super::boxed::BoxStream;
use super::error::ConnectError;
use super::resolve::resolve;
use super::tcp::{connect_failed, connect_first, send_proxy_header};
use super::tls::{ConnectOptions, TlsClient};
use super::ws::{WsClient, WsStream};
use crate::{Endpoint, Transport};

/// Connects to a stream endpoint (TCP, TLS or Unix) with default options.
pub async fn connect_stream(endpoint: &Endpoint) -> Result<(BoxStream, Endpoint), ConnectError> {
    connect_stream_with(endpoint, &ConnectOptions::default()).await
}

/// Connects to a stream endpoint (TCP, TLS, WebSocket or Unix), trying each address a host name resolves
/// to in turn. Returns the stream and the address it reached.
pub async fn connect_stream_with(
    endpoint: &Endpoint,
    options: &ConnectOptions,
) -> Result<(BoxStream, Endpoint), ConnectError> {
    match endpoint {
        Endpoint::Tcp(_) => {
            let (mut stream, addr) = connect_first(endpoint, resolve(endpoint).await?).await?;
            send_proxy_header(&mut stream, options.send_proxy.as_ref())
                .await
                .map_err(|problem| ConnectError::new(endpoint, problem))?;
            Ok((Box::new(stream), Endpoint::inet(Transport::Tcp, addr)))
        }
        Endpoint::Tls(hp) => {
            // Set up trust first: a bad --ca file is reported before any network traffic.
            let client = TlsClient::new(&hp.host, options)
                .map_err(|e| ConnectError::new(endpoint, e.to_string()))?;
            let addrs = resolve(endpoint).await?;
            let (tls, addr) = client.connect_first(endpoint, addrs).await?;
            Ok((Box::new(tls), Endpoint::inet(Transport::Tls, addr)))
        }
        Endpoint::Ws(_) | Endpoint::Wss(_) => {
            let client = WsClient::new(endpoint, options)
                .map_err(|e| ConnectError::new(endpoint, e.to_string()))?
                .ok_or_else(|| ConnectError::new(endpoint, "not a WebSocket endpoint"))?;
            let addrs = resolve(endpoint).await?;
            let (ws, addr) = client.connect_first(endpoint, addrs).await?;
            Ok((
                Box::new(WsStream::new(ws, options.ws_framing)),
                endpoint.at(addr),
            ))
        }
        Endpoint::Unix(_) if options.send_proxy.is_some() => Err(ConnectError::new(
            endpoint,
            "a PROXY header (--send-proxy) goes on tcp://, tls://, ws:// and wss:// connections \
             only",
        )),
        Endpoint::Unix(path) => match super::unix::connect_unix_stream(path).await {
            Ok(stream) => Ok((Box::new(stream), endpoint.clone())),
            Err(e) => Err(connect_failed(endpoint, Some(e))),
        },
        Endpoint::Udp(_) | Endpoint::UnixGram(_) => Err(ConnectError::new(
            endpoint,
            "a datagram endpoint has no connection; use the datagram client",
        )),
    }
}
