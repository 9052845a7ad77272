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

/// The current soft open-file limit (`ulimit -n`).
pub fn open_file_limit() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(1 << 20)
}

/// The default `--max-conns`: what the current open-file limit allows, less a reserve. Under a
/// small limit the reserve shrinks to half of it, so the default never falls to a handful of
/// connections (or to none): at `ulimit -n 64` it is 32.
pub fn default_max_conns() -> usize {
    max_conns_for(open_file_limit())
}

fn max_conns_for(fd_limit: u64) -> usize {
    let reserve = FD_RESERVE.min(fd_limit / 2);
    usize::try_from(fd_limit.saturating_sub(reserve).max(1)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::max_conns_for;

    #[test]
    fn the_default_keeps_a_reserve_but_never_eats_the_limit() {
        assert_eq!(max_conns_for(1_048_576), 1_048_512);
        assert_eq!(max_conns_for(1024), 960);
        assert_eq!(max_conns_for(128), 64);
        assert_eq!(max_conns_for(64), 32);
        assert_eq!(max_conns_for(3), 2);
        assert_eq!(max_conns_for(1), 1);
        assert_eq!(max_conns_for(0), 1);
    }
}
