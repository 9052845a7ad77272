//! Flags of the commands that describe sockecho itself: `completions` and `man`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct CompletionsOpts {
    /// The shell to complete for.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManOpts {
    /// Write one page per command into DIR (sockecho.1, sockecho-serve.1, ...) instead of
    /// printing sockecho.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}
