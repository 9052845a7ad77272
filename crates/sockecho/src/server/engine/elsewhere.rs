//! The engine's handle on systems other than Linux (no io_uring, no epoll): the same names as
//! on Linux, but an engine never starts, so every plain connection is served on tokio. The
//! server never asks for one there either.

#![deny(unsafe_code)]

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::Endpoint;
use crate::server::config::EngineKind;
use crate::server::conn::Admitted;
use crate::server::shared::Shared;

/// A connection handed from the accepting loop to the engine (never, here).
#[allow(dead_code)]
pub(crate) struct Arrival {
    pub(crate) fd: OwnedFd,
    pub(crate) admitted: Admitted,
    pub(crate) token: TaskTrackerToken,
}

/// A handle that cannot exist: with no value of this type, every method is unreachable.
pub(crate) enum EngineHandle {}

impl EngineHandle {
    pub(crate) fn start(
        _kind: EngineKind,
        _index: usize,
        _shared: Arc<Shared>,
    ) -> io::Result<EngineHandle> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the stream engines need Linux",
        ))
    }

    pub(crate) fn serving(&self) -> bool {
        match *self {}
    }

    pub(crate) fn hand_over(&self, _arrival: Arrival) {
        match *self {}
    }

    pub(crate) async fn accept_on(
        &self,
        _listeners: Vec<(OwnedFd, Endpoint)>,
    ) -> Vec<(OwnedFd, Endpoint)> {
        match *self {}
    }

    pub(crate) fn drain(&self) {
        match *self {}
    }

    pub(crate) fn cut(&self) {
        match *self {}
    }

    pub(crate) fn finish(&self) {
        match *self {}
    }

    pub(crate) fn join(&self) {
        match *self {}
    }
}
