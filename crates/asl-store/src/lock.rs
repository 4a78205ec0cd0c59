//! The single-writer lock: `locks/writer.lock`, taken through the store's storage (flock(2)
//! on the local file system).
//!
//! The lock ends with its holder, so a lock left by a killed writer is never obeyed: the next
//! writer simply gets it. What the holder writes of itself (pid and host) is only there to
//! name it in the error message.

use crate::error::{Result, StoreError};
use crate::layout::Layout;
use crate::storage::{LockError, LockGuard};

/// Held while a writer is open; dropping it releases the lock.
#[derive(Debug)]
pub struct WriterLock {
    _guard: Box<dyn LockGuard>,
}

impl WriterLock {
    pub fn acquire(layout: &Layout) -> Result<WriterLock> {
        let lock_path = layout.lock();
        let me = format!("{} {}\n", std::process::id(), crate::snapshot::hostname());
        match layout.storage().try_lock(&lock_path, &me) {
            Ok(guard) => Ok(WriterLock { _guard: guard }),
            Err(LockError::Held(holder)) => {
                let mut parts = holder.split_whitespace();
                let pid = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                let host = parts.next().unwrap_or("?").to_string();
                Err(StoreError::Locked {
                    path: layout.root.clone(),
                    pid,
                    host,
                })
            }
            Err(LockError::Io(err)) => Err(StoreError::io(&lock_path, err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_names_its_holder_and_dropping_it_releases_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("locks")).unwrap();
        let layout = Layout::on(std::sync::Arc::new(crate::storage::Local), dir.path());
        let lock = WriterLock::acquire(&layout).unwrap();
        match WriterLock::acquire(&layout) {
            Err(StoreError::Locked { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("{other:?}"),
        }
        drop(lock);
        let again = WriterLock::acquire(&layout);
        assert!(again.is_ok(), "{again:?}");
    }
}
