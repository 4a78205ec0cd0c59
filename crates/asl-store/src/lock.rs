//! The single-writer lock: `locks/writer.lock`, held with flock(2) (what
//! [`File::try_lock`] takes on Linux).
//!
//! flock is released by the kernel when the holder dies, so a lock left by a killed writer
//! is never obeyed: the next writer simply gets it. The file's content (pid and host) is
//! only there to name the holder in the error message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{IoContext, Result, StoreError};

/// Held while a writer is open; dropping it releases the lock.
#[derive(Debug)]
pub struct WriterLock {
    file: File,
}

impl Drop for WriterLock {
    /// Unlocks explicitly: a process forked meanwhile (a capture's command before its exec, a
    /// helper that closes descriptors late) shares the locked open file, and closing our own
    /// descriptor would leave the lock held until that copy is closed too.
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

impl WriterLock {
    pub fn acquire(store_dir: &Path, lock_path: &Path) -> Result<WriterLock> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_path)
            .at(lock_path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let mut parts = holder.split_whitespace();
                let pid = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                let host = parts.next().unwrap_or("?").to_string();
                return Err(StoreError::Locked {
                    path: store_dir.to_path_buf(),
                    pid,
                    host,
                });
            }
            Err(TryLockError::Error(err)) => return Err(StoreError::io(lock_path, err)),
        }
        let me = format!("{} {}\n", std::process::id(), crate::snapshot::hostname());
        file.set_len(0).at(lock_path)?;
        file.seek(SeekFrom::Start(0)).at(lock_path)?;
        file.write_all(me.as_bytes()).at(lock_path)?;
        Ok(WriterLock { file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_lock_releases_it_even_while_a_copy_of_its_file_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("writer.lock");
        let lock = WriterLock::acquire(dir.path(), &path).unwrap();
        assert!(matches!(
            WriterLock::acquire(dir.path(), &path),
            Err(StoreError::Locked { .. })
        ));
        // What a forked child that has not closed its descriptors yet holds.
        let copy = lock.file.try_clone().unwrap();
        drop(lock);
        let again = WriterLock::acquire(dir.path(), &path);
        assert!(again.is_ok(), "{again:?}");
        drop(copy);
    }
}
