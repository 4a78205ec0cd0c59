//! Standard output of every tool, and what happens when its reader goes away.
//!
//! `println!` panics when a write to stdout fails, so `asl-admin snapshots | head -1` used to
//! end in a backtrace (exit 101). Every tool therefore writes through [`stdout`] (or the
//! [`out!`](crate::out) and [`outln!`](crate::outln) macros), whose errors the tool returns
//! with `?`. A write that fails because the reader closed the pipe (EPIPE) is also recorded
//! here, whatever error the tool's code later turns it into (`asl-admin cat` wraps it in a
//! store error, for instance): the dispatcher asks [`reader_gone`] once the tool has returned
//! and then ends the process with [`end_by_sigpipe`], quietly, as coreutils do.
//!
//! Why not restore SIGPIPE's default action at the start of `main`, as C programs have it:
//! the tools write to other pipes and sockets they rely on. `asl-capture --echo` copies the
//! command's output to our stdout from a thread that ignores failures, so that a closed
//! terminal pipe does not lose the receipt; with SIGPIPE's default action the first copied
//! byte after `| head` had gone would kill the capture before it recorded anything, with its
//! command still running; and the commands it forks and execs would inherit that action
//! instead of the one they get today. A failed write to any other pipe or socket stays an
//! error the tool reports. Only a failed write to our own stdout ends a tool, and only once
//! the tool's code has returned (its locks and temporary files are released by then).

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout failed with EPIPE: nobody reads what the tool prints.
static READER_GONE: AtomicBool = AtomicBool::new(false);

/// The process's stdout, locked, returning write errors instead of panicking.
pub struct Stdout(io::StdoutLock<'static>);

/// Locks stdout for writing. Hold it for the whole of a long output (`cat`), so that other
/// threads' writes cannot interleave.
pub fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

/// Passes a write's result on, remembering an EPIPE.
fn note<T>(r: io::Result<T>) -> io::Result<T> {
    if let Err(e) = &r
        && e.kind() == io::ErrorKind::BrokenPipe
    {
        READER_GONE.store(true, Ordering::Relaxed);
    }
    r
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        note(self.0.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        note(self.0.flush())
    }
}

/// Writes formatted text to stdout; what [`out!`](crate::out) expands to.
pub fn write_fmt(args: fmt::Arguments<'_>) -> io::Result<()> {
    let mut o = stdout();
    // stdout is line-buffered: text without its newline yet would otherwise wait for the
    // next write, and its failure would be reported there or nowhere.
    o.write_fmt(args)
        .and_then(|()| o.flush())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write to stdout: {e}")))
}

/// Whether a write to stdout failed because its reader had closed the pipe.
pub fn reader_gone() -> bool {
    READER_GONE.load(Ordering::Relaxed)
}

/// Ends the process as coreutils end when their reader goes away: killed by SIGPIPE (a shell
/// reports status 141), with nothing printed. Under `set -o pipefail` a script sees that the
/// output was cut short, as it would with `cat`.
pub fn end_by_sigpipe() -> ExitCode {
    // SAFETY: SIG_DFL installs no handler code, so no Rust code runs in signal context; the
    // Rust runtime ignores SIGPIPE, so its default action has to be put back before the
    // signal can end the process. rustix offers sigaction only in its runtime module.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // SAFETY: the signal set is a local that sigemptyset initialises before it is read;
    // unblocking SIGPIPE in this thread (a caller may have started us with it blocked) and
    // raising it here touch no memory of ours.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(libc::SIGPIPE);
    }
    // Not reached unless the signal could not be delivered: the status a shell would show.
    ExitCode::from(128 + libc::SIGPIPE as u8)
}

/// Prints to stdout like `print!`, returning `std::io::Result<()>` instead of panicking.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_fmt(format_args!($($arg)*))
    };
}

/// Prints a line to stdout like `println!`, returning `std::io::Result<()>` instead of
/// panicking.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::write_fmt(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}
