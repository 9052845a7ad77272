//! The histogram files a run writes (`--save-hist`, an HdrHistogram interval log; `--save-hgrm`,
//! the percentile distribution), opened before the run so that an unwritable path fails at
//! once rather than after minutes of load, and named in any error.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sockecho::bench::{Outcome, hgrm, hlog};

/// The files asked for, open and empty.
#[derive(Debug, Default)]
pub struct HistFiles {
    hist: Option<(PathBuf, File)>,
    hgrm: Option<(PathBuf, File)>,
}

impl HistFiles {
    /// Creates (or empties) each file given.
    pub fn open(save_hist: Option<&Path>, save_hgrm: Option<&Path>) -> anyhow::Result<HistFiles> {
        let create = |path: Option<&Path>, what: &str| -> anyhow::Result<Option<(PathBuf, File)>> {
            path.map(|p| {
                File::create(p)
                    .with_context(|| format!("cannot write the {what} {}", p.display()))
                    .map(|f| (p.to_owned(), f))
            })
            .transpose()
        };
        Ok(HistFiles {
            hist: create(save_hist, "histogram log")?,
            hgrm: create(save_hgrm, "percentile distribution")?,
        })
    }

    /// Writes the outcome's histograms into the files.
    pub fn write(self, outcome: &Outcome) -> anyhow::Result<()> {
        if let Some((path, file)) = self.hist {
            let context = || format!("cannot write the histogram log {}", path.display());
            let mut out = BufWriter::new(file);
            hlog::write(&mut out, outcome).with_context(context)?;
            out.flush().with_context(context)?;
        }
        if let Some((path, file)) = self.hgrm {
            let context = || {
                format!(
                    "cannot write the percentile distribution {}",
                    path.display()
                )
            };
            let mut out = BufWriter::new(file);
            hgrm::write(&mut out, &outcome.latency).with_context(context)?;
            out.flush().with_context(context)?;
        }
        Ok(())
    }
}
