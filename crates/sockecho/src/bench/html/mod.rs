//! The HTML report: one self-contained page (inline SVG and CSS, no script, nothing fetched)
//! that shows one or several runs and sweeps side by side.
//!
//! - `model`: what the page is made from ([`Source`]: a [`Run`] or a [`Sweep`]), which
//!   every other file here reads.
//! - [`input`]: reading run reports, sweeps and histogram logs into [`Source`]s.
//! - [`figures`]: percentile distributions, latency units and the knee of a sweep.
//! - [`chart`]: the SVG line chart every figure is drawn with (private).
//! - `page`: the page itself: header, tables, charts and their captions (private).
//!
//! The latency chart is HdrHistogram's percentile distribution plot: latency against
//! 1/(1-p) on a log scale, so that 90 %, 99 %, 99.9 % … sit one decade apart. From a histogram
//! log (`--save-hist`, or the run just made) it is the whole distribution; from a JSON report
//! only the few percentiles the report holds, drawn as dots joined by straight lines.

mod chart;
pub mod figures;
pub mod input;
mod model;
mod page;

pub use input::{InputError, from_outcome, read};
pub use model::{FindMax, Interval, IntervalLatency, Run, Source, Sweep, SweepStep};
pub use page::render;
