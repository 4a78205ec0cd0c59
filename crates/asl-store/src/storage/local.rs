//! [`Local`]: the store's storage on the local file system.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::{Entry, LockError, LockGuard, ReadFile, Storage, WriteFile};

/// The local file system; every operation is the system call its name says.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl WriteFile for File {
    fn sync(&mut self) -> io::Result<()> {
        self.sync_all()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

impl ReadFile for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

/// A flock(2) held on an open file. flock is released by the kernel when the holder dies,
/// so a lock left by a killed process is never obeyed.
#[derive(Debug)]
struct Flock(File);

impl LockGuard for Flock {}

impl Drop for Flock {
    /// Unlocks explicitly: a process forked meanwhile (a capture's command before its exec, a
    /// helper that closes descriptors late) shares the locked open file, and closing our own
    /// descriptor would leave the lock held until that copy is closed too.
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Storage for Local {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        Ok(Box::new(File::create(path)?))
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        Ok(Box::new(
            OpenOptions::new().write(true).create_new(true).open(path)?,
        ))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        Ok(Box::new(OpenOptions::new().append(true).open(path)?))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>> {
        Ok(Arc::new(File::open(path)?))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let kind = e.file_type()?;
            out.push(Entry {
                name: e.file_name().to_string_lossy().into_owned(),
                is_dir: kind.is_dir(),
                is_file: kind.is_file(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(dir)
    }
    fn try_lock(&self, path: &Path, holder: &str) -> Result<Box<dyn LockGuard>, LockError> {
        Ok(Box::new(try_flock(path, holder)?))
    }
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn LockGuard>> {
        std::fs::create_dir_all(dir)?;
        let file = File::open(dir)?;
        file.lock()?;
        Ok(Box::new(Flock(file)))
    }
}

/// Takes the flock of `path` without waiting and writes `holder` into the file.
fn try_flock(path: &Path, holder: &str) -> Result<Flock, LockError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(LockError::Io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut who = String::new();
            let _ = file.read_to_string(&mut who);
            return Err(LockError::Held(who));
        }
        Err(TryLockError::Error(err)) => return Err(LockError::Io(err)),
    }
    // The guard unlocks from here on, whatever fails next.
    let mut guard = Flock(file);
    let note = |f: &mut File| -> io::Result<()> {
        f.set_len(0)?;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(holder.as_bytes())
    };
    note(&mut guard.0).map_err(LockError::Io)?;
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_a_lock_releases_it_even_while_a_copy_of_its_file_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("writer.lock");
        let lock = try_flock(&path, "1 here").unwrap();
        assert!(
            matches!(Local.try_lock(&path, "2 here"), Err(LockError::Held(h)) if h == "1 here")
        );
        // What a forked child that has not closed its descriptors yet holds: the same open
        // file description.
        let copy = lock.0.try_clone().unwrap();
        drop(lock);
        let again = Local.try_lock(&path, "3 here");
        assert!(again.is_ok(), "{again:?}");
        drop(copy);
    }
}
