//! `sockecho completions SHELL`: the shell's completion script, generated from the command
//! line's own definitions.

use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::Cli;
use crate::cli::tools::CompletionsOpts;

pub fn main(opts: CompletionsOpts) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(opts.shell, &mut command, "sockecho", &mut script);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script)
        .and_then(|()| stdout.flush())
        .context("cannot write the completion script")?;
    Ok(ExitCode::SUCCESS)
}
