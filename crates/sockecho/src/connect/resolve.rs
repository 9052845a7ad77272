//! Resolving an Internet endpoint's host to the addresses to try, with the errors a user can
//! act on (no host given, a name that does not resolve).

use std::net::SocketAddr;

use super::error::ConnectError;
use crate::net_error::plain;
use crate::{Endpoint, Host};

/// Resolves an Internet endpoint, turning failure into a connect error.
pub async fn resolve(endpoint: &Endpoint) -> Result<Vec<SocketAddr>, ConnectError> {
    let Some(hp) = endpoint.host_port() else {
        return Err(ConnectError::new(endpoint, "not an Internet endpoint"));
    };
    if hp.host == Host::Any {
        return Err(ConnectError::new(
            endpoint,
            "no host given; name the server, e.g. localhost:PORT",
        ));
    }
    hp.resolve().await.map_err(|e| {
        ConnectError::new(
            endpoint,
            format!("cannot resolve host {}: {}", hp.host, plain(&e)),
        )
    })
}
