//! [`LastSession`]: what one returning TLS client remembers between its connections — the
//! session of its last one, to resume on the next — and nothing more.
//!
//! rustls' own store serves a whole client: up to eight TLS 1.3 tickets per server, handed to
//! whichever connection asks next. A load generator whose churn slots share that store has its
//! slots race for eight tickets; when more slots than that reconnect at once, the rest find
//! none and make full handshakes whatever the server allows (a run of 50 slots resumed about a
//! quarter of its handshakes). A slot stands for one client instead, so it gets a store of its
//! own: it resumes the session of its own last connection, and whether that works is up to the
//! server — its ticket keys, or how many sessions its cache holds — as it would be for a crowd
//! of real clients coming back.

use std::sync::{Mutex, PoisonError};

use rustls::NamedGroup;
use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;

/// The last session of one client with one server. Every connection of the client goes to the
/// same server name, but a store is told the name each time, so a different one starts afresh
/// rather than being offered another server's session.
#[derive(Debug, Default)]
pub(crate) struct LastSession {
    /// Connections of one client come one after another, so the lock is never contended; it is
    /// there because rustls wants the store shareable between threads.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The server the rest belongs to.
    server: Option<ServerName<'static>>,
    /// The key-exchange group the server chose last time, offered first next time so that the
    /// server need not ask for another (a HelloRetryRequest).
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    /// The newest TLS 1.3 ticket: a server sends several per handshake (rustls two), and a
    /// client that makes one connection at a time only ever needs the latest, which is also the
    /// likeliest to still be in a server's cache.
    tls13: Option<Tls13ClientSessionValue>,
}

impl LastSession {
    /// Runs `f` on the state, if it belongs to `server`.
    fn with<T>(
        &self,
        server: &ServerName<'_>,
        f: impl FnOnce(&mut State) -> Option<T>,
    ) -> Option<T> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.server.as_ref() != Some(server) {
            return None;
        }
        f(&mut state)
    }

    /// Runs `f` on the state for `server`, forgetting another server's first.
    fn update(&self, server: ServerName<'static>, f: impl FnOnce(&mut State)) {
        // A panic elsewhere while the lock was held cannot leave the plain values inside half
        // written.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.server.as_ref() != Some(&server) {
            *state = State {
                server: Some(server),
                ..State::default()
            };
        }
        f(&mut state);
    }
}

impl ClientSessionStore for LastSession {
    fn set_kx_hint(&self, server: ServerName<'static>, group: NamedGroup) {
        self.update(server, |s| s.kx_hint = Some(group));
    }

    fn kx_hint(&self, server: &ServerName<'_>) -> Option<NamedGroup> {
        self.with(server, |s| s.kx_hint)
    }

    fn set_tls12_session(&self, server: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.update(server, |s| s.tls12 = Some(value));
    }

    fn tls12_session(&self, server: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.with(server, |s| s.tls12.clone())
    }

    fn remove_tls12_session(&self, server: &ServerName<'static>) {
        self.with(server, |s| s.tls12.take());
    }

    fn insert_tls13_ticket(&self, server: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.update(server, |s| s.tls13 = Some(value));
    }

    /// Each ticket is given out once, as TLS 1.3 asks of clients.
    fn take_tls13_ticket(&self, server: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.with(server, |s| s.tls13.take())
    }
}
