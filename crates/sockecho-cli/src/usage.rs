//! Usage errors found after clap: values that parse one by one but not together (a UDP
//! message too large for a datagram, more connections than descriptors). `main` prints them
//! like any error but exits 2, as clap does for its own.

use std::fmt;

/// A problem with the command line, in words that say what to change.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}
