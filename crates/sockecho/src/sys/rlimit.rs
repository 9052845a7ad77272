//! The process's open-file limit, which bounds how many connections one process can hold.

use rustix::process::{Resource, getrlimit, setrlimit};

/// File descriptors kept back from the connection limit for listeners, logs and the runtime.
const FD_RESERVE: u64 = 64;

/// Raises the soft open-file limit to the hard limit (a process may always do that) and returns
/// the new soft limit.
pub fn raise_fd_limit() -> u64 {
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (limit.current, limit.maximum)
        && cur < max
    {
        limit.current = Some(max);
        if setrlimit(Resource::Nofile, limit).is_err() {
            limit.current = Some(cur);
        }
    }
    limit.current.unwrap_or(u64::MAX)
}

/// The default `--max-conns`: what the current open-file limit allows, less a reserve.
pub fn default_max_conns() -> usize {
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(1 << 20);
    usize::try_from(soft.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX)
}
