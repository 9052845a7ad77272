//! `sockecho bench report FILE... -o PAGE` and `sockecho bench --html PAGE`: the self-contained
//! HTML report (the library draws it) written to a file.

use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use sockecho::bench::{Outcome, html};

use crate::cli::bench::ReportOpts;

/// Reads every input, then writes the page. Exit 0 once written, whatever the runs measured:
/// the page shows their errors.
pub fn main(opts: ReportOpts) -> anyhow::Result<ExitCode> {
    let mut sources = Vec::with_capacity(opts.files.len());
    for path in &opts.files {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let label = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        let source = html::read(&label, &bytes)
            .with_context(|| format!("{} cannot go into the report", path.display()))?;
        sources.push(source);
    }
    let page = html::render(&sources);
    std::fs::write(&opts.output, page)
        .with_context(|| format!("cannot write the report {}", opts.output.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// The page of `bench --html`, opened before the run so that a path that cannot be written
/// fails at once rather than after the whole run. A file this created is removed again if the
/// run ends without a page; a file that was there is left as it was until the page replaces it.
pub struct HtmlOutput {
    path: PathBuf,
    file: Option<File>,
    created: bool,
}

impl HtmlOutput {
    pub fn open(path: &Path) -> anyhow::Result<HtmlOutput> {
        let created = !path.exists();
        let file = File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot write the report {}", path.display()))?;
        Ok(HtmlOutput {
            path: path.to_path_buf(),
            file: Some(file),
            created,
        })
    }

    /// Writes the page of the run just made.
    pub fn write(mut self, outcome: &Outcome) -> anyhow::Result<()> {
        let context = || format!("cannot write the report {}", self.path.display());
        let run = html::from_outcome(&outcome.report.endpoint, outcome).with_context(context)?;
        let page = html::render(&[html::Source::Run(Box::new(run))]);
        // Some(..) from `open` until here, the one place that takes it.
        let mut file = self.file.take().context("the report was already written")?;
        file.set_len(0).with_context(context)?;
        file.rewind().with_context(context)?;
        file.write_all(page.as_bytes()).with_context(context)?;
        file.flush().with_context(context)?;
        Ok(())
    }
}

impl Drop for HtmlOutput {
    fn drop(&mut self) {
        if self.file.take().is_some() && self.created {
            // Best effort: an empty file left behind is harmless.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
