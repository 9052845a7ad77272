//! The histogram files a run writes (`--save-hist`, an HdrHistogram interval log; `--save-hgrm`,
//! the percentile distribution), opened before the run so that an unwritable path fails at
//! once rather than after minutes of load, and named in any error. A file opened here is only
//! emptied when its content is written; one this created is removed again if the run ends
//! without writing it, and a file that is there is left as it is until then, so
//! `bench merge --save-hist` may name one of its own inputs.

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sockecho::bench::{Outcome, hgrm, hlog};

use crate::usage::UsageError;

/// The files asked for, open.
#[derive(Debug, Default)]
pub struct HistFiles {
    hist: Option<Target>,
    hgrm: Option<Target>,
}

#[derive(Debug)]
struct Target {
    path: PathBuf,
    /// What the file holds, for messages.
    what: &'static str,
    /// Taken when written.
    file: Option<File>,
    created: bool,
}

impl Target {
    /// Opens `path` for the flag `flag`; a path that cannot be written is a usage error.
    fn open(path: &Path, what: &'static str, flag: &str) -> anyhow::Result<Target> {
        let created = !path.exists();
        let file = File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| {
                UsageError(format!(
                    "cannot write the {what} {} ({flag}): {}",
                    path.display(),
                    sockecho::net_error::plain(&e)
                ))
            })?;
        Ok(Target {
            path: path.to_owned(),
            what,
            file: Some(file),
            created,
        })
    }

    /// Replaces the file's content with what `fill` writes.
    fn write(
        &mut self,
        fill: impl FnOnce(&mut BufWriter<&mut File>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let context = || format!("cannot write the {} {}", self.what, self.path.display());
        // Some(..) from `open` until here, the one place that takes it.
        let mut file = self.file.take().with_context(context)?;
        file.set_len(0).with_context(context)?;
        file.rewind().with_context(context)?;
        let mut out = BufWriter::new(&mut file);
        fill(&mut out).with_context(context)?;
        out.flush().with_context(context)?;
        Ok(())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if self.file.take().is_some() && self.created {
            // Best effort: an empty file left behind is harmless.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl HistFiles {
    /// Opens each file given, creating it if need be.
    pub fn open(save_hist: Option<&Path>, save_hgrm: Option<&Path>) -> anyhow::Result<HistFiles> {
        Ok(HistFiles {
            hist: save_hist
                .map(|p| Target::open(p, "histogram log", "--save-hist"))
                .transpose()?,
            hgrm: save_hgrm
                .map(|p| Target::open(p, "percentile distribution", "--save-hgrm"))
                .transpose()?,
        })
    }

    /// Writes the outcome's histograms into the files.
    pub fn write(mut self, outcome: &Outcome) -> anyhow::Result<()> {
        if let Some(target) = &mut self.hist {
            target.write(|out| Ok(hlog::write(out, outcome)?))?;
        }
        if let Some(target) = &mut self.hgrm {
            target.write(|out| Ok(hgrm::write(out, &outcome.latency)?))?;
        }
        Ok(())
    }
}
