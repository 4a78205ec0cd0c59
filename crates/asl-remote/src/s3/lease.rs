//! The writer lease: how one writer at a time holds a store in a bucket.
//!
//! The lease is an object (`locks/writer.lock`) holding JSON: the holder (`PID HOST`), a
//! random nonce, a *fencing token* one higher than the previous holder's, and the time it
//! expires (Unix milliseconds). A writer takes it when it is absent or expired, renews it
//! every third of its period, and deletes it when done; a killed writer's lease simply
//! expires.
//!
//! Two writers must never both write. How that is made sure depends on the engine:
//! * where PUT honours `If-None-Match` and `If-Match` (AWS S3, MinIO, Ceph RGW, s3s-fs), the
//!   lease is taken and renewed with a conditional PUT on the version that was read, and
//!   every log part is PUT with `If-None-Match: *`: of two writers racing for a lease or
//!   for a log position, exactly one wins, whatever the timing;
//! * where PUT ignores them (Garage 2.x), the last write of the lease object wins. A taker
//!   therefore waits `settle` after its PUT and reads the lease back; only if its own nonce
//!   is there does it hold the lease. And the holder stops writing a third of a period
//!   before its lease expires ([`Fence::check`], also the deadline of every request's
//!   retries). This is safe as long as clocks of the servers differ by less than that third,
//!   a lease PUT lands within `settle`, and no write request takes longer than the third:
//!   timing assumptions, stated in `docs/asl-server.md`.
//!
//! Each log part records the fencing token of the writer that wrote it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use asl_store::storage::{LockError, LockGuard};

use super::client::{Cond, S3Error};
use super::storage::Inner;

/// How long a lease lasts and how long a taker waits before reading it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseParams {
    pub ttl: Duration,
    pub settle: Duration,
}

impl Default for LeaseParams {
    fn default() -> LeaseParams {
        LeaseParams {
            ttl: Duration::from_secs(60),
            settle: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct LeaseRecord {
    holder: String,
    nonce: String,
    token: u64,
    expires_unix_ms: u64,
}

/// A random nonce naming one taking of a lease.
pub fn nonce() -> String {
    let mut b = [0u8; 16];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    hex::encode(b)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What every write of the holder checks.
#[derive(Debug)]
pub struct Fence {
    pub token: u64,
    lease: PathBuf,
    valid_until: Mutex<Instant>,
    revoked: AtomicBool,
}

impl Fence {
    /// Ok (with the instant no request may start after) while the lease is held with a
    /// third of its period to spare.
    pub fn check(&self, path: &Path) -> io::Result<Instant> {
        let until = *self
            .valid_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.revoked.load(Ordering::SeqCst) || Instant::now() >= until {
            return Err(io::Error::other(format!(
                "{}: not written: this writer's lease {} (fencing token {}) is lost or \
                 expired; another server may hold the store",
                path.display(),
                self.lease.display(),
                self.token
            )));
        }
        Ok(until)
    }
}

/// A held lease; dropping it stops the renewals and deletes the lease object.
pub struct LeaseGuard {
    inner: Arc<Inner>,
    key: String,
    nonce: String,
    fence: Option<Arc<Fence>>,
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseGuard")
            .field("key", &self.key)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl LockGuard for LeaseGuard {}

fn read(inner: &Inner, key: &str) -> Result<Option<(LeaseRecord, Option<String>)>, LockError> {
    let Some((bytes, etag)) = inner.client.get(key).map_err(|e| LockError::Io(e.into()))? else {
        return Ok(None);
    };
    let rec: LeaseRecord = serde_json::from_slice(&bytes).map_err(|e| {
        LockError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("lease {key} is not a lease record: {e}"),
        ))
    })?;
    Ok(Some((rec, etag)))
}

/// Takes the lease at `key` (naming `path` in errors) for `holder`, without waiting.
/// `fence`: every write of this storage checks the lease from now on.
pub(crate) fn acquire(
    inner: &Arc<Inner>,
    path: &Path,
    key: &str,
    holder: &str,
    fence: bool,
) -> Result<LeaseGuard, LockError> {
    let params = inner.lease.clone();
    let (token, cond_etag) = match read(inner, key)? {
        Some((rec, _)) if rec.expires_unix_ms > now_ms() => {
            return Err(LockError::Held(rec.holder));
        }
        Some((rec, etag)) => (rec.token + 1, etag),
        None => (1, None),
    };
    let nonce = nonce();
    let record = LeaseRecord {
        holder: holder.to_string(),
        nonce: nonce.clone(),
        token,
        expires_unix_ms: now_ms() + params.ttl.as_millis() as u64,
    };
    let started = Instant::now();
    let body = serde_json::to_vec(&record).map_err(|e| LockError::Io(io::Error::other(e)))?;
    let cond = match &cond_etag {
        Some(e) => Cond::Matches(e),
        None => Cond::Absent,
    };
    match inner.client.put(key, &body, cond) {
        Ok(_) => {}
        Err(S3Error::PreconditionFailed { .. }) => {
            let who = read(inner, key)?.map_or_else(|| "?".to_string(), |(r, _)| r.holder);
            return Err(LockError::Held(who));
        }
        Err(e) => return Err(LockError::Io(e.into())),
    }
    if !inner.conditional {
        // Last write wins on this engine: only the taker whose record is read back after
        // every racing PUT has landed holds the lease.
        std::thread::sleep(params.settle);
        match read(inner, key)? {
            Some((rec, _)) if rec.nonce == nonce => {}
            Some((rec, _)) => return Err(LockError::Held(rec.holder)),
            None => return Err(LockError::Held("?".into())),
        }
    }
    let fence_state = Arc::new(Fence {
        token,
        lease: path.to_path_buf(),
        valid_until: Mutex::new(started + params.ttl - params.ttl / 3),
        revoked: AtomicBool::new(false),
    });
    if fence {
        *inner
            .fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fence_state.clone());
    }
    let (stop, stopped) = mpsc::channel::<()>();
    let renewer = {
        let inner = inner.clone();
        let key = key.to_string();
        let fence = fence_state.clone();
        let mut record = record;
        std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(params.ttl / 3) {
                if !renew(&inner, &key, &mut record, &fence, &params) {
                    return;
                }
            }
        })
    };
    Ok(LeaseGuard {
        inner: inner.clone(),
        key: key.to_string(),
        nonce,
        fence: fence.then_some(fence_state),
        stop: Some(stop),
        renewer: Some(renewer),
    })
}

/// Extends the lease once; false when it is no longer ours (the fence is then revoked).
fn renew(
    inner: &Inner,
    key: &str,
    record: &mut LeaseRecord,
    fence: &Fence,
    params: &LeaseParams,
) -> bool {
    let started = Instant::now();
    let etag = match read(inner, key) {
        Ok(Some((rec, etag))) if rec.nonce == record.nonce => etag,
        Ok(_) => {
            fence.revoked.store(true, Ordering::SeqCst);
            return false;
        }
        // A transient failure: try again at the next period; the fence ends the writes if
        // the lease cannot be renewed in time.
        Err(_) => return true,
    };
    record.expires_unix_ms = now_ms() + params.ttl.as_millis() as u64;
    let Ok(body) = serde_json::to_vec(record) else {
        return true;
    };
    let cond = match &etag {
        Some(e) => Cond::Matches(e),
        None => Cond::None,
    };
    match inner.client.put(key, &body, cond) {
        Ok(_) => {
            *fence
                .valid_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                started + params.ttl - params.ttl / 3;
            true
        }
        Err(S3Error::PreconditionFailed { .. }) => {
            fence.revoked.store(true, Ordering::SeqCst);
            false
        }
        Err(_) => true,
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        if let Some(f) = &self.fence {
            let mut slot = self
                .inner
                .fence
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, f)) {
                *slot = None;
            }
        }
        // Give the lease back only if it is still ours; a lease taken over is not ours to
        // delete.
        if let Ok(Some((rec, _))) = read(&self.inner, &self.key)
            && rec.nonce == self.nonce
        {
            let _ = self.inner.client.delete(&self.key);
        }
    }
}
