//! Writing HdrHistogram logs (`--save-hist`) to a file, naming the file in any error, or to
//! stdout (`--save-hist -`).
//!
//! The file is opened before the run, so a path that cannot be written is a usage error at once
//! rather than a failure after the whole run; it is emptied only when the log is written, so
//! `bench merge --save-hist` may name one of its own inputs.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sockecho::bench::{Outcome, hlog};

use crate::usage::UsageError;

/// Where a histogram log goes, ready for writing.
pub enum HistOut {
    /// A file, already open.
    File { file: File, path: PathBuf },
    /// Stdout (`-`), which then carries the log alone.
    Stdout,
}

/// Opens (creating if need be) the file `--save-hist` names, or takes stdout for `-`; a path
/// that cannot be written is a usage error naming it.
pub fn open(path: &Path) -> anyhow::Result<HistOut> {
    if path == Path::new("-") {
        return Ok(HistOut::Stdout);
    }
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| {
            UsageError(format!(
                "cannot write the histogram log {} (--save-hist): {}",
                path.display(),
                sockecho::net_error::plain(&e)
            ))
        })?;
    Ok(HistOut::File {
        file,
        path: path.to_owned(),
    })
}

impl HistOut {
    /// Whether the log goes to stdout, where nothing else may then be printed.
    pub fn on_stdout(&self) -> bool {
        matches!(self, HistOut::Stdout)
    }

    /// Writes the outcome's histograms, replacing a file's content.
    pub fn save(self, outcome: &Outcome) -> anyhow::Result<()> {
        match self {
            HistOut::File { mut file, path } => {
                let path = path.display().to_string();
                let context = || format!("cannot write the histogram log {path}");
                file.set_len(0).with_context(context)?;
                file.rewind().with_context(context)?;
                let mut out = BufWriter::new(file);
                hlog::write(&mut out, outcome).with_context(context)?;
                out.flush().with_context(context)?;
            }
            HistOut::Stdout => {
                let context = || "cannot write the histogram log on stdout";
                let mut out = std::io::stdout().lock();
                hlog::write(&mut out, outcome).context(context())?;
                out.flush().context(context())?;
            }
        }
        Ok(())
    }
}
