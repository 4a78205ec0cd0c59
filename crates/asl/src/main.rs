//! `asl`: the one executable of the toolkit.
//!
//! It is installed once and linked under every tool name (`asl-intake`, `overlay-boot`, ...).
//! The name it was started as picks the tool; `asl <tool> ARGS` works too. All logic lives in
//! the library crates; this crate only parses arguments, calls them and prints results.

mod exit;
mod tools;

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    tools::dispatch(argv)
}
