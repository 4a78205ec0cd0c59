//! `asl`: the one executable of the toolkit.
//!
//! It is installed once and linked under every tool name (`asl-intake`, `overlay-boot`, ...).
//! The name it was started as picks the tool; `asl <tool> ARGS` works too. All logic lives in
//! the library crates; this crate only parses arguments, calls them and prints results.

// Every write to stdout goes through `output`, which returns errors instead of panicking
// and notices when the reader has gone (README, "A closed pipe ends a tool quietly").
#![deny(clippy::print_stdout)]

mod exit;
mod output;
mod tools;

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    tools::dispatch(argv)
}
