//! What every end-to-end test of the binary shares: starting the binary with an environment
//! that cannot pick a store or root behind the test's back, reading what it printed, and a
//! deterministic pseudo-random sequence. Each test file includes it as `mod common;`.

#![allow(dead_code)]

use std::process::{Command, Output};

/// A command that runs the binary under test. The variables that would choose a store, a
/// host root or a notify socket are removed, so only the test's own arguments decide; the
/// user's cache directory (where a remote intake keeps its stat cache) is one under the
/// target directory, so tests never write into the home of whoever runs them.
pub fn asl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_asl"));
    c.env_remove("ASL_STORE")
        .env_remove("ASL_ROOT")
        .env_remove("NOTIFY_SOCKET")
        .env("XDG_CACHE_HOME", test_cache_home());
    c
}

/// `$XDG_CACHE_HOME` for the binary under test (see [`asl`]); tests that need their own
/// set it again.
pub fn test_cache_home() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdg-cache")
}

/// Runs `cmd` to its end and returns what it printed; panics when it cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("cannot start the command")
}

/// stdout and stderr as text.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Exit status, stdout and stderr in one message, for a failed assertion.
pub fn transcript(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The next value of a xorshift64 sequence: cheap, deterministic randomness for choosing
/// kill points and damage, so a failing seed can be replayed.
pub fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}
