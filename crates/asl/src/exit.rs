//! Exit codes shared by every tool (DESIGN §9) and the one place errors are printed.

use std::process::ExitCode;

/// The documented exit codes. Scripts depend on them; never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Ok = 0,
    Failure = 1,
    Usage = 2,
    /// An integrity problem was found (verify, restore of damaged data).
    Integrity = 3,
    /// The job finished, but some inputs could not be read.
    Unreadable = 4,
}

impl From<Code> for ExitCode {
    fn from(c: Code) -> ExitCode {
        ExitCode::from(c as u8)
    }
}

/// An error that carries the exit code it should produce. Tools return it (through anyhow)
/// when the default code 1 is wrong, e.g. usage errors detected after parsing.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Shorthand for returning an error with a specific exit code.
pub fn fail(code: Code, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        code,
        message: message.into(),
    })
}

/// Prints `tool: error: message` (the whole cause chain on one line) and picks the exit code.
pub fn report(tool: &str, err: &anyhow::Error) -> ExitCode {
    let code = err
        .chain()
        .find_map(|e| e.downcast_ref::<Failure>().map(|f| f.code))
        .unwrap_or(Code::Failure);
    eprintln!("{tool}: error: {err:#}");
    code.into()
}
