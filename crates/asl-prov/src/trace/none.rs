//! No observation: the command runs as it would outside a capture, and only its exit status
//! and resource usage are recorded.

use super::{ProcessRecord, RunOutcome, RunSpec, TraceMode};
use crate::child::{self, ChildSetup, Exec};
use crate::error::ProvError;

/// Runs `exec` unobserved and waits for it.
pub(crate) fn run(exec: &Exec<'_>, spec: &RunSpec<'_>) -> Result<RunOutcome, ProvError> {
    let (pid, err_r) = child::start(exec, &ChildSetup::None)?;
    child::check_exec(&err_r, pid, spec.program)?;
    let (status, rusage) = child::wait_top(pid)?;
    Ok(RunOutcome {
        status,
        rusage,
        mode: TraceMode::None,
        processes: vec![ProcessRecord::top(pid, spec.argv, spec.program, status)],
        accesses: Vec::new(),
        gaps: Vec::new(),
    })
}
