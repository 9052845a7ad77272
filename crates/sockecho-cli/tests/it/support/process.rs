//! Running the binary under test as a one-shot command, bounded by [`RUN`], and reading what it
//! printed.

use std::ffi::OsStr;
use std::process::{Command, Output};

use super::RUN;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sockecho")
}

/// `sockecho ARGS`, with the environment the binary reads cleared, so that the flags (and the
/// variables a test sets itself) alone decide what it does, whatever the developer's shell
/// holds: `RUST_LOG` and `NO_COLOR` (verbosity and colour), and every `SOCKECHO_*` variable but
/// `SOCKECHO_IO`, which picks the I/O path the whole suite runs on.
pub fn sockecho<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(bin());
    cmd.args(args).env_remove("RUST_LOG").env_remove("NO_COLOR");
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("SOCKECHO_") && text != "SOCKECHO_IO" {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// Runs `sockecho ARGS` to completion with stdin empty (a closed pipe, not a terminal).
pub fn run(args: &[&str]) -> Output {
    run_with_input(args, b"")
}

/// Runs `sockecho ARGS` to completion with `stdin` as its input, killing it and failing the
/// test past [`RUN`]. A panic in its stderr fails the test too.
pub fn run_with_input(args: &[&str], stdin: &[u8]) -> Output {
    run_command_with_input(sockecho(args), stdin)
}

/// Runs `cmd` (made by [`sockecho`], then given variables of its own) to completion with stdin
/// empty, as [`run`] does.
pub fn run_command(cmd: Command) -> Output {
    run_command_with_input(cmd, b"")
}

fn run_command_with_input(cmd: Command, stdin: &[u8]) -> Output {
    let line = format!("{cmd:?}");
    let mut cmd = assert_cmd::Command::from_std(cmd);
    cmd.write_stdin(stdin.to_vec()).timeout(RUN);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("{line} did not finish within {RUN:?}: {e}"));
    assert_no_panic(&stderr_of(&output));
    output
}

pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A panic is a bug whatever the input.
pub fn assert_no_panic(text: &str) {
    assert!(!text.contains("panicked"), "the binary panicked:\n{text}");
}

/// Whether the tests run as root, for whom directory permissions do not apply.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
