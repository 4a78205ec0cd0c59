//! Starting the wrapped command under the mechanism chosen: resolve the program, prepare
//! it for the exec (`crate::child`) and hand it to the tracer, which owns its setup
//! between fork and exec and the wait.

use std::path::{Path, PathBuf};

use crate::child::Exec;
use crate::error::ProvError;
use crate::trace::{self, TraceMode};

pub use crate::trace::{RunOutcome, RunSpec};

/// Looks `name` up like execvp does: a name with a slash is taken as is (relative to `cwd`),
/// otherwise the first executable regular file in `$PATH`.
pub fn resolve_program(name: &str, cwd: &Path) -> Result<PathBuf, ProvError> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.is_empty() {
        return Err(ProvError::Usage("the command is empty".into()));
    }
    if name.contains('/') {
        let p = cwd.join(name);
        return if is_exec(&p) {
            Ok(p)
        } else {
            Err(ProvError::CommandNotFound(name.to_string()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let p = cwd.join(dir).join(name);
        if is_exec(&p) {
            return Ok(p);
        }
    }
    Err(ProvError::CommandNotFound(name.to_string()))
}

/// Runs the command under `mode` (never `Auto`: the caller decides) and waits for it.
pub fn run(spec: &RunSpec<'_>, mode: TraceMode) -> Result<RunOutcome, ProvError> {
    let exec = Exec::new(spec.program, spec.argv, spec.cwd, spec.stdout, spec.stderr)?;
    match mode {
        TraceMode::None | TraceMode::Auto => trace::none::run(&exec, spec),
        TraceMode::Fanotify => trace::fanotify::run(&exec, spec),
        TraceMode::Ptrace => trace::ptrace::run(&exec, spec),
    }
}
