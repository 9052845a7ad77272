//! Writing HdrHistogram logs (`--save-hist`) to a file, naming the file in any error.
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

/// A histogram log's file, open for writing.
pub struct HistFile {
    file: File,
    path: PathBuf,
}

/// Opens (creating if need be) the file `--save-hist` names; a path that cannot be written is a
/// usage error naming it.
pub fn open(path: &Path) -> anyhow::Result<HistFile> {
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
    Ok(HistFile {
        file,
        path: path.to_owned(),
    })
}

impl HistFile {
    /// Replaces the file's content with the outcome's histograms.
    pub fn save(mut self, outcome: &Outcome) -> anyhow::Result<()> {
        let path = self.path.display().to_string();
        let context = || format!("cannot write the histogram log {path}");
        self.file.set_len(0).with_context(context)?;
        self.file.rewind().with_context(context)?;
        let mut out = BufWriter::new(self.file);
        hlog::write(&mut out, outcome).with_context(context)?;
        out.flush().with_context(context)?;
        Ok(())
    }
}
