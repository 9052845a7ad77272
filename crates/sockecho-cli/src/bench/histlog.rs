//! Writing HdrHistogram logs (`--save-hist`) to a file, naming the file in any error.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use sockecho::bench::{Outcome, hlog};

/// Writes the outcome's histograms to `path`.
pub fn save(path: &Path, outcome: &Outcome) -> anyhow::Result<()> {
    let context = || format!("cannot write the histogram log {}", path.display());
    let file = File::create(path).with_context(context)?;
    let mut out = BufWriter::new(file);
    hlog::write(&mut out, outcome).with_context(context)?;
    out.flush().with_context(context)?;
    Ok(())
}
