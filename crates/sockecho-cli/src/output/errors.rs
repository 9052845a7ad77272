//! The one-line summary of a report's error counts, shared by the table and the exit verdict.

use sockecho::bench::Report;

/// Every error count that is not zero, e.g. "3 mismatched, 1 lost"; "none" if all are.
pub fn error_list(r: &Report) -> String {
    r.errors.summary()
}
