//! The one-line summary of a report's error counts, shared by the table and the exit verdict.

use sockecho::bench::Report;

/// Every error count that is not zero, e.g. "3 mismatched, 1 lost"; "none" if all are.
pub fn error_list(r: &Report) -> String {
    let e = &r.errors;
    let parts: Vec<String> = [
        (e.mismatched, "mismatched"),
        (e.truncated, "truncated"),
        (e.reordered, "reordered"),
        (e.duplicated, "duplicated"),
        (e.lost, "lost"),
        (e.warmup, "wrong during warm-up"),
        (e.connect_failed, "connections failed"),
        (e.disconnected, "disconnected"),
        (e.refused, "refused"),
        (e.late, "late replies"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}
