//! `sockecho man`: the manual pages in roff, generated from the command line's own
//! definitions. Without `--dir`, sockecho(1) goes to stdout (its SUBCOMMANDS section names the
//! other pages); with `--dir DIR`, every page is written there: sockecho.1, sockecho-serve.1,
//! sockecho-bench-merge.1, ...

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::Cli;
use crate::cli::tools::ManOpts;

pub fn main(opts: ManOpts) -> anyhow::Result<ExitCode> {
    match &opts.dir {
        Some(dir) => write_all(dir)?,
        None => print_main_page()?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_main_page() -> anyhow::Result<()> {
    use std::io::Write;
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .context("cannot render the man page")?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&page)
        .and_then(|()| stdout.flush())
        .context("cannot write the man page")
}

fn write_all(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_gets_a_page() {
        let dir = std::env::temp_dir().join(format!("sockecho-man-{}", std::process::id()));
        write_all(&dir).expect("the pages are written");
        for page in ["sockecho.1", "sockecho-serve.1", "sockecho-bench-merge.1"] {
            let text = std::fs::read_to_string(dir.join(page)).expect("the page exists");
            assert!(
                text.starts_with(".ie"),
                "{page} starts with {:?}",
                &text[..20]
            );
            assert!(text.contains(".TH"), "{page}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
