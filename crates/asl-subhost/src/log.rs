//! The subhost log: one timestamped line per event, `2026-11-23T17:44:25.123Z NAME: message`.
//!
//! Lines go to standard error. The supervisor and PID 1 run with standard output and error on
//! the LOG file (services started inside inherit it, so their output lands there too, as in
//! overlay-boot); a foreground supervisor keeps its terminal or journal on standard error and
//! also copies its lines into LOG (see [`tee`]).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static TEE: Mutex<Option<File>> = Mutex::new(None);
static ECHO: AtomicBool = AtomicBool::new(true);

/// Whether lines go to standard error (off for the detached boot command: its stderr is the
/// user's terminal, which gets only the result).
pub fn echo(on: bool) {
    ECHO.store(on, Ordering::Relaxed);
}

/// Stops copying lines into the tee file.
pub fn untee() {
    if let Ok(mut t) = TEE.lock() {
        *t = None;
    }
}

/// Also writes every following line into `file`.
pub fn tee(file: File) {
    if let Ok(mut t) = TEE.lock() {
        *t = Some(file);
    }
}

/// Formats a UNIX time in milliseconds as RFC 3339 UTC, `2026-11-23T17:44:25.123Z`
/// (`@MILLISECONDS` past the year 9999).
pub fn rfc3339_ms(ms: u64) -> String {
    match i64::try_from(ms).map(jiff::Timestamp::from_millisecond) {
        Ok(Ok(t)) => format!("{t:.3}"),
        _ => format!("@{ms}"),
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes one log line for subhost `name`.
pub fn line(name: &str, message: &str) {
    let text = format!("{} {name}: {message}\n", rfc3339_ms(now_ms()));
    if ECHO.load(Ordering::Relaxed) {
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
    if let Ok(mut t) = TEE.lock()
        && let Some(f) = t.as_mut()
    {
        let _ = f.write_all(text.as_bytes());
    }
}

/// Opens LOG for appending (creating its directory, mode 0750), close-on-exec.
pub fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent()
        && !dir.is_dir()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_utc_rfc3339() {
        assert_eq!(super::rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339_ms(1_795_455_865_123),
            "2026-11-23T17:44:25.123Z"
        );
        assert_eq!(
            super::rfc3339_ms(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
