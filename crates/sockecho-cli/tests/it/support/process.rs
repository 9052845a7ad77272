//! Running the binary under test as a one-shot command, bounded by [`RUN`], and reading what it
//! printed.

use std::ffi::OsStr;
use std::process::{Command, Output};

use super::RUN;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sockecho")
}

/// `sockecho ARGS`, with the log environment cleared so the flags alone decide verbosity and
/// colour.
pub fn sockecho<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(bin());
    cmd.args(args).env_remove("RUST_LOG").env_remove("NO_COLOR");
    cmd
}

/// Runs `sockecho ARGS` to completion with stdin empty (a closed pipe, not a terminal).
pub fn run(args: &[&str]) -> Output {
    run_with_input(args, b"")
}

/// Runs `sockecho ARGS` to completion with `stdin` as its input, killing it and failing the
/// test past [`RUN`]. A panic in its stderr fails the test too.
pub fn run_with_input(args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = assert_cmd::Command::from_std(sockecho(args));
    cmd.write_stdin(stdin.to_vec()).timeout(RUN);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("sockecho {args:?} did not finish within {RUN:?}: {e}"));
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
