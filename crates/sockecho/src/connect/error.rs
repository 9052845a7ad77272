//! The error of a failed connect: the endpoint, and one line saying what went wrong.

use crate::Endpoint;

/// Why an endpoint could not be reached. The message names the endpoint; `problem` alone says
/// what went wrong, for callers that name the endpoint their own way.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {endpoint}: {problem}")]
pub struct ConnectError {
    pub endpoint: Endpoint,
    pub problem: String,
}

impl ConnectError {
    pub(crate) fn new(endpoint: &Endpoint, problem: impl Into<String>) -> Self {
        ConnectError {
            endpoint: endpoint.clone(),
            problem: problem.into(),
        }
    }
}
