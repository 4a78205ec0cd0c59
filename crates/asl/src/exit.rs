//! Exit codes shared by every tool (DESIGN §9) and the one place errors are printed.

use std::process::ExitCode;

/// The documented exit codes. Scripts depend on them; never renumber. A tool whose stdout
/// reader has gone exits with none of them: it is ended by SIGPIPE, as coreutils are
/// (`crate::output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Ok = 0,
    Failure = 1,
    Usage = 2,
    /// An integrity problem was found: data the store holds is missing or fails its check
    /// (verify, restore, cat, ls, diff; docs/EXIT-CODES.md). Never a bug in asl: that is
    /// `Failure`.
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

/// Prints `tool: error: message` (the whole cause chain on one line) on stderr and picks the
/// exit code. When the command was given `--json`, the same error also goes to stdout as
/// `{"error": {"code": N, "message": "..."}}`: a script reading stdout as JSON gets an object
/// to parse instead of nothing (README, "Using it").
pub fn report(tool: &str, err: &anyhow::Error, json: bool) -> ExitCode {
    let code = err
        .chain()
        .find_map(|e| e.downcast_ref::<Failure>().map(|f| f.code))
        .unwrap_or(Code::Failure);
    let message = format!("{err:#}");
    eprintln!("{tool}: error: {message}");
    if json {
        print_json_error(code, &message);
    }
    code.into()
}

/// Reports an error clap found in the arguments (exit 2): clap's own message on stderr and,
/// when the arguments contain `--json`, the same message without the usage lines that follow
/// it as the JSON error object on stdout.
pub fn report_usage(err: &clap::Error, json: bool) -> ExitCode {
    let _ = err.print();
    if json {
        // The message is the first paragraph; it can span lines ("not provided:\n  <PATH>").
        let rendered = err.render().to_string();
        let message = rendered
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        let message = message.strip_prefix("error: ").unwrap_or(&message);
        print_json_error(Code::Usage, message);
    }
    Code::Usage.into()
}

/// Whether parsed arguments ask for JSON output: a `--json` flag on the tool or on any of
/// its subcommands (tools define it globally or per subcommand).
pub fn json_requested(m: &clap::ArgMatches) -> bool {
    let mut level = Some(m);
    while let Some(m) = level {
        if let Ok(Some(true)) = m.try_get_one::<bool>("json") {
            return true;
        }
        level = m.subcommand().map(|(_, sub)| sub);
    }
    false
}

/// Whether arguments clap could not parse contain `--json` among the tool's own options
/// (before a `--`, after which arguments belong to a command the tool runs).
pub fn json_in_argv(argv: &[std::ffi::OsString]) -> bool {
    argv.iter()
        .skip(1)
        .take_while(|a| a.as_os_str() != "--")
        .any(|a| a.as_os_str() == "--json")
}

fn print_json_error(code: Code, message: &str) {
    let v = serde_json::json!({ "error": { "code": code as u8, "message": message } });
    match serde_json::to_string_pretty(&v) {
        // The error is already on stderr; a stdout nobody can write to has nothing to add.
        Ok(s) => {
            let _ = crate::outln!("{s}");
        }
        Err(e) => eprintln!("cannot encode the JSON error object: {e}"),
    }
}
