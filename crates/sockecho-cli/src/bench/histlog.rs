//! The histogram files a run writes (`--save-hist`, an HdrHistogram interval log; `--save-hgrm`,
//! the percentile distribution), opened before the run so that an unwritable path fails at
//! once rather than after minutes of load, and named in any error. Either may be `-`, stdout,
//! which then carries that file alone (for `kubectl logs`). A file opened here is only
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
    sink: Sink,
}

#[derive(Debug)]
enum Sink {
    /// A file; taken when written.
    File { file: Option<File>, created: bool },
    /// Stdout (`-`).
    Stdout,
}

impl Target {
    /// Opens `path` for the flag `flag` (stdout for `-`); a path that cannot be written is a
    /// usage error.
    fn open(path: &Path, what: &'static str, flag: &str) -> anyhow::Result<Target> {
        if path == Path::new("-") {
            return Ok(Target {
                path: path.to_owned(),
                what,
                sink: Sink::Stdout,
            });
        }
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
            sink: Sink::File {
                file: Some(file),
                created,
            },
        })
    }

    /// Replaces the file's content with what `fill` writes, or writes it on stdout.
    fn write(
        &mut self,
        fill: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let context = || format!("cannot write the {} {}", self.what, self.path.display());
        match &mut self.sink {
            Sink::File { file, .. } => {
                // Some(..) from `open` until here, the one place that takes it.
                let mut file = file.take().with_context(context)?;
                file.set_len(0).with_context(context)?;
                file.rewind().with_context(context)?;
                let mut out = BufWriter::new(&mut file);
                fill(&mut out).with_context(context)?;
                out.flush().with_context(context)?;
            }
            Sink::Stdout => {
                let context = || format!("cannot write the {} on stdout", self.what);
                let mut out = std::io::stdout().lock();
                fill(&mut out).with_context(context)?;
                out.flush().with_context(context)?;
            }
        }
        Ok(())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Sink::File {
            file,
            created: true,
        } = &mut self.sink
            && file.take().is_some()
        {
            // Best effort: an empty file left behind is harmless.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl HistFiles {
    /// Opens each file given, creating it if need be.
    pub fn open(save_hist: Option<&Path>, save_hgrm: Option<&Path>) -> anyhow::Result<HistFiles> {
        if save_hist == Some(Path::new("-")) && save_hgrm == Some(Path::new("-")) {
            return Err(UsageError(
                "--save-hist and --save-hgrm cannot both write on stdout (-)".into(),
            )
            .into());
        }
        Ok(HistFiles {
            hist: save_hist
                .map(|p| Target::open(p, "histogram log", "--save-hist"))
                .transpose()?,
            hgrm: save_hgrm
                .map(|p| Target::open(p, "percentile distribution", "--save-hgrm"))
                .transpose()?,
        })
    }

    /// Whether a file goes to stdout, where nothing else may then be printed.
    pub fn on_stdout(&self) -> bool {
        [&self.hist, &self.hgrm]
            .into_iter()
            .flatten()
            .any(|t| matches!(t.sink, Sink::Stdout))
    }

    /// Writes the outcome's histograms into the files.
    pub fn write(mut self, outcome: &Outcome) -> anyhow::Result<()> {
        if let Some(target) = &mut self.hist {
            target.write(|mut out| Ok(hlog::write(&mut out, outcome)?))?;
        }
        if let Some(target) = &mut self.hgrm {
            target.write(|mut out| Ok(hgrm::write(&mut out, &outcome.latency)?))?;
        }
        Ok(())
    }
}
