//! The tool registry and the multicall dispatcher.
//!
//! Each module owns the tools of one library crate and exports `TOOLS`. A tool is a clap
//! command plus a function that runs it on the parsed matches. Adding a tool means adding an
//! entry to its module's `TOOLS`; the dispatcher, `asl install-links` and `asl man` pick it up.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use crate::exit::{self, Code};
use crate::outln;
use crate::output;

mod admin;
mod auth;
mod common;
mod debug;
mod host;
mod meta;
mod prov;
mod remote;
mod service;
mod source;
mod store;
mod subhost;
mod usroverlay;

/// One tool of the multicall binary.
pub struct Tool {
    /// The installed name, e.g. `asl-intake`. `asl intake` reaches it as well.
    pub name: &'static str,
    /// The clap command: arguments and `--help` (man pages are generated from it).
    pub command: fn() -> clap::Command,
    /// Runs the tool on parsed arguments and returns its exit code.
    pub run: fn(&clap::ArgMatches) -> anyhow::Result<ExitCode>,
}

/// Every tool, in the order `asl --help` lists them.
pub fn all() -> Vec<&'static Tool> {
    let groups: [&'static [Tool]; 8] = [
        store::TOOLS,
        remote::TOOLS,
        prov::TOOLS,
        auth::TOOLS,
        host::TOOLS,
        subhost::TOOLS,
        usroverlay::TOOLS,
        meta::TOOLS,
    ];
    groups.iter().flat_map(|g| g.iter()).collect()
}

/// Looks a tool up by installed name (`asl-intake`) or short name (`intake`).
pub fn find(name: &str) -> Option<&'static Tool> {
    all()
        .into_iter()
        .find(|t| t.name == name || t.name.strip_prefix("asl-") == Some(name))
}

/// Runs the tool named by argv[0] (or by argv[1] when started as `asl`).
pub fn dispatch(mut argv: Vec<OsString>) -> ExitCode {
    let invoked = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "asl".into());
    if invoked != "asl"
        && let Some(tool) = find(&invoked)
    {
        return run_tool(tool, argv);
    }
    // Started as `asl` (or under an unknown name): the first argument names the tool.
    let sub = argv.get(1).map(|a| a.to_string_lossy().into_owned());
    match sub.as_deref() {
        None | Some("-h") | Some("--help") | Some("help") => {
            let code = if sub.is_none() { Code::Usage } else { Code::Ok };
            printed(crate::out!("{}", overview()), code)
        }
        Some("-V") | Some("--version") => {
            printed(outln!("asl {}", env!("CARGO_PKG_VERSION")), Code::Ok)
        }
        Some(name) => match find(name) {
            Some(tool) => {
                argv.remove(0);
                argv[0] = tool.name.into();
                run_tool(tool, argv)
            }
            None => {
                eprintln!("asl: error: no tool named '{name}'; `asl --help` lists them");
                Code::Usage.into()
            }
        },
    }
}

/// The exit of `asl` itself after printing its overview or version.
fn printed(written: std::io::Result<()>, code: Code) -> ExitCode {
    match written {
        Ok(()) => code.into(),
        Err(_) if output::reader_gone() => output::end_by_sigpipe(),
        Err(e) => {
            eprintln!("asl: error: {e}");
            Code::Failure.into()
        }
    }
}

fn run_tool(tool: &Tool, argv: Vec<OsString>) -> ExitCode {
    let json = exit::json_in_argv(&argv);
    let matches = match (tool.command)()
        .name(tool.name)
        .version(env!("CARGO_PKG_VERSION"))
        .try_get_matches_from(argv)
    {
        Ok(m) => m,
        // clap prints help/version to stdout with exit 0 and usage errors with exit 2.
        Err(e) if e.use_stderr() => return exit::report_usage(&e, json),
        Err(e) => {
            let _ = e.print();
            return Code::Ok.into();
        }
    };
    let result = (tool.run)(&matches);
    // The one place a closed stdout is handled: whatever the tool made of the failed write
    // (an io::Error, a store error wrapping it, or nothing), it ends quietly, as coreutils
    // do (README, "A closed pipe ends a tool quietly").
    if output::reader_gone() {
        return output::end_by_sigpipe();
    }
    match result {
        Ok(code) => code,
        Err(err) => exit::report(tool.name, &err, exit::json_requested(&matches)),
    }
}

fn overview() -> String {
    let mut s = String::from(
        "asl — offline-first artifact host: content-addressed store, intake, provenance, subhosts\n\n\
         Usage: asl <TOOL> [ARGS]...   or run a tool by its installed name (asl-intake ...)\n\nTools:\n",
    );
    for t in all() {
        let about = (t.command)()
            .get_about()
            .map(|a| a.to_string())
            .unwrap_or_default();
        s.push_str(&format!("  {:<16} {}\n", t.name, about));
    }
    s.push_str("\n`asl <TOOL> --help` explains each tool.\n");
    s
}

/// Parses typed arguments out of the matches; every tool's `run` starts with this.
pub fn args<A: clap::FromArgMatches>(m: &clap::ArgMatches) -> anyhow::Result<A> {
    A::from_arg_matches(m).map_err(|e| exit::fail(Code::Usage, e.to_string()))
}
