//! Verifying a store, and capturing a file import (`asl-capture --file`).

use std::ffi::c_char;

use ::asl_store::verify::{VerifyOptions, verify};
use ::asl_store::{Reference, TypeTag};

use crate::args::{self, asl_ref};
use crate::handle::{StoreHandle, asl_store};
use crate::status::{Error, asl_status, guard};

/// Verify flag: also re-hash every byte of every block (`asl-admin verify --read-data`).
pub const ASL_VERIFY_READ_DATA: u32 = 1;

/// What a verification checked and found.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct asl_verify_result {
    pub log_records: u64,
    pub segments: u64,
    pub index_entries: u64,
    pub blocks: u64,
    pub snapshots: u64,
    pub bytes_read: u64,
    /// Damage found (the status is then `ASL_E_CORRUPT` and the message names it).
    pub problems: u64,
}

/// What a file capture stored.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct asl_capture_result {
    pub snapshot_id: u64,
    /// The execution receipt (PER) of the import.
    pub receipt: asl_ref,
    /// The TGK edge linking the file to the receipt: the snapshot's root.
    pub edge: asl_ref,
}

/// The children of typed artifacts, for verify: the same decoders the CLI names.
fn children(tag: TypeTag, bytes: &[u8]) -> Result<Vec<Reference>, String> {
    asl_prov::artifact_children(tag, bytes)
}

/// Verifies the store as the handle sees it, as `asl-admin verify` does: the log chain,
/// segments, index against blocks, and that every snapshot's tree is complete; with
/// `ASL_VERIFY_READ_DATA` every byte is re-hashed too. Damage gives `ASL_E_CORRUPT`, with
/// the first problems in the message and `result` (may be NULL) filled in.
///
/// # Safety
/// `result` is NULL or valid for writing an `asl_verify_result`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_verify(
    store: *mut asl_store,
    flags: u32,
    result: *mut asl_verify_result,
) -> asl_status {
    guard(|| {
        if flags & !ASL_VERIFY_READ_DATA != 0 {
            return Err(Error::usage(format!("unknown verify flags {flags:#x}")));
        }
        let read_data = flags & ASL_VERIFY_READ_DATA != 0;
        let h = StoreHandle::get(store)?;
        let rep =
            h.with_view(|v| Ok(verify(v.store(), &VerifyOptions { read_data }, &children)))?;
        let out = asl_verify_result {
            log_records: rep.log_records,
            segments: rep.segments as u64,
            index_entries: rep.index_entries as u64,
            blocks: rep.blocks as u64,
            snapshots: rep.snapshots as u64,
            bytes_read: rep.bytes_read,
            problems: rep.problems.len() as u64,
        };
        // SAFETY: NULL or valid for writes by the contract.
        unsafe { args::put(result, out) };
        if !rep.ok() {
            let shown: Vec<String> = rep
                .problems
                .iter()
                .take(3)
                .map(|p| format!("{}: {}", p.object, p.reason))
                .collect();
            return Err(Error::new(
                asl_status::ASL_E_CORRUPT,
                format!(
                    "store {} is damaged: {} problem(s): {}",
                    h.dir.display(),
                    rep.problems.len(),
                    shown.join("; ")
                ),
            ));
        }
        Ok(())
    })
}

/// Imports one file as `asl-capture --file` does: stores it, writes an execution receipt
/// (its identity, digests before and after storing, metadata) and a TGK edge, and commits
/// them as one snapshot. `label` and `key_path` (an ed25519 key file of `asl-key`, to sign
/// the receipt) may be NULL; `result` may be NULL.
///
/// The capture takes the store's writer lock itself, so the handle must be read-only
/// (`ASL_E_LOCKED` otherwise, as when another writer holds it). Afterwards the handle sees
/// the new snapshot.
///
/// # Safety
/// `path` is a NUL-terminated string, `label` and `key_path` are NULL or ones; `result` is
/// NULL or valid for writing an `asl_capture_result`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_capture_file(
    store: *mut asl_store,
    path: *const c_char,
    label: *const c_char,
    key_path: *const c_char,
    result: *mut asl_capture_result,
) -> asl_status {
    guard(|| {
        // SAFETY: the caller's contract for the strings.
        let path = unsafe { args::path(path, "path") }?;
        // SAFETY: as above.
        let label = unsafe { args::opt_text(label, "label") }?.map(str::to_string);
        let key = if key_path.is_null() {
            None
        } else {
            // SAFETY: as above.
            let kp = unsafe { args::path(key_path, "key_path") }?;
            Some(asl_prov::sign::Key::load(&kp)?)
        };
        let h = StoreHandle::get(store)?;
        let mut g = h.write()?;
        if g.writer.is_some() {
            return Err(Error::new(
                asl_status::ASL_E_LOCKED,
                format!(
                    "this handle holds the writer lock of {}; asl_capture_file takes the lock \
                     itself: call it with a handle opened without ASL_OPEN_WRITE",
                    h.dir.display()
                ),
            ));
        }
        let captured = asl_prov::capture::capture_file(&h.dir, &path, key, label)?;
        g.invalidate();
        let out = asl_capture_result {
            snapshot_id: captured.snapshot_id,
            receipt: asl_ref::from(captured.receipt_ref),
            edge: asl_ref::from(captured.edge_ref),
        };
        // SAFETY: NULL or valid for writes by the contract.
        unsafe { args::put(result, out) };
        Ok(())
    })
}
