//! Listing, showing and resolving snapshots.

use std::ffi::{CString, c_char};

use ::asl_store::Snapshot;

use crate::args::{self, asl_ref};
use crate::handle::{StoreHandle, asl_store};
use crate::status::{Error, asl_status, guard, no_panic};

/// One snapshot, as `asl_snapshot_list_get` fills it in. The strings belong to the list and
/// stay valid until `asl_snapshot_list_free`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct asl_snapshot {
    pub id: u64,
    /// The log position the snapshot sees up to.
    pub log_position: u64,
    /// Whether `root` holds the artifact the snapshot is about (an intake's tree ...).
    pub has_root: bool,
    pub root: asl_ref,
    /// What made it: `"intake"`, `"capture"`, `"put"` ...
    pub kind: *const c_char,
    /// NULL when the snapshot has no label.
    pub label: *const c_char,
    pub host: *const c_char,
    /// UTC, RFC 3339.
    pub time: *const c_char,
    /// The whole snapshot as JSON, as `asl-admin show --json` prints it (with its paths and
    /// summary figures).
    pub json: *const c_char,
}

struct Strings {
    kind: CString,
    label: Option<CString>,
    host: CString,
    time: CString,
    json: CString,
}

/// Snapshots returned by `asl_snapshots` or `asl_snapshot_show`: a value of its own, not
/// tied to the store handle. Free it with `asl_snapshot_list_free`. Read-only, so it may
/// be read from several threads at once.
#[allow(non_camel_case_types)]
pub struct asl_snapshot_list {
    items: Vec<(Snapshot, Strings)>,
}

fn c(s: &str) -> CString {
    // Metadata written by the toolkit holds no NUL; should another writer's, it is shown
    // as an escape.
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

fn entry(s: &Snapshot) -> (Snapshot, Strings) {
    let json = serde_json::to_string(s).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    let strings = Strings {
        kind: c(&s.meta.kind),
        label: s.meta.label.as_deref().map(c),
        host: c(&s.meta.host),
        time: c(&s.meta.time),
        json: c(&json),
    };
    (s.clone(), strings)
}

fn hand_over(list: asl_snapshot_list, out: *mut *mut asl_snapshot_list) {
    let p = Box::into_raw(Box::new(list));
    // SAFETY: `out` was checked not NULL by the caller of this function and is valid for
    // writes by the exported function's contract.
    unsafe { args::put(out, p) };
}

/// Lists the store's retained snapshots, oldest first, into a new list in `*out`.
///
/// # Safety
/// `out` is valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_snapshots(
    store: *mut asl_store,
    out: *mut *mut asl_snapshot_list,
) -> asl_status {
    guard(|| {
        args::out(out, "out")?;
        let h = StoreHandle::get(store)?;
        let items = h.with_view(|v| Ok(v.store().snapshots().into_iter().map(entry).collect()))?;
        hand_over(asl_snapshot_list { items }, out);
        Ok(())
    })
}

/// Finds the snapshot `name` names (an id, a label, or `"latest"`, as the CLI accepts) and
/// returns a list holding just it in `*out`.
///
/// # Safety
/// `name` is a NUL-terminated string; `out` is valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_snapshot_show(
    store: *mut asl_store,
    name: *const c_char,
    out: *mut *mut asl_snapshot_list,
) -> asl_status {
    guard(|| {
        args::out(out, "out")?;
        // SAFETY: the caller's contract.
        let name = unsafe { args::text(name, "snapshot name") }?;
        let h = StoreHandle::get(store)?;
        let item = h.with_view(|v| Ok(entry(v.store().resolve_snapshot(name)?)))?;
        hand_over(asl_snapshot_list { items: vec![item] }, out);
        Ok(())
    })
}

/// Resolves a snapshot name (an id, a label, or `"latest"`) to its id.
///
/// # Safety
/// `name` is a NUL-terminated string; `id` is valid for writing a `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_snapshot_resolve(
    store: *mut asl_store,
    name: *const c_char,
    id: *mut u64,
) -> asl_status {
    guard(|| {
        args::out(id, "id")?;
        // SAFETY: the caller's contract.
        let name = unsafe { args::text(name, "snapshot name") }?;
        let h = StoreHandle::get(store)?;
        let found = h.with_view(|v| Ok(v.store().resolve_snapshot(name)?.id))?;
        // SAFETY: checked not NULL; valid for writes by the contract.
        unsafe { args::put(id, found) };
        Ok(())
    })
}

/// The number of snapshots in a list (0 for NULL).
///
/// # Safety
/// `list` is NULL or a list returned by this library and not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_snapshot_list_len(list: *const asl_snapshot_list) -> usize {
    no_panic(0, || {
        if list.is_null() {
            return 0;
        }
        // SAFETY: a live list by the contract.
        unsafe { &*list }.items.len()
    })
}

/// Fills `*out` with the list's snapshot number `index` (from 0).
///
/// # Safety
/// `list` is NULL or a live list of this library; `out` is valid for writing an
/// `asl_snapshot`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_snapshot_list_get(
    list: *const asl_snapshot_list,
    index: usize,
    out: *mut asl_snapshot,
) -> asl_status {
    guard(|| {
        args::out(out, "out")?;
        if list.is_null() {
            return Err(Error::null("list"));
        }
        // SAFETY: a live list by the contract.
        let list = unsafe { &*list };
        let (s, st) = list.items.get(index).ok_or_else(|| {
            Error::usage(format!(
                "index {index} is past the end of a list of {} snapshots",
                list.items.len()
            ))
        })?;
        let snap = asl_snapshot {
            id: s.id,
            log_position: s.logseq,
            has_root: s.root.is_some(),
            root: s.root.map(asl_ref::from).unwrap_or(asl_ref {
                hash_id: 0,
                digest: [0; 32],
            }),
            kind: st.kind.as_ptr(),
            label: st.label.as_ref().map_or(std::ptr::null(), |l| l.as_ptr()),
            host: st.host.as_ptr(),
            time: st.time.as_ptr(),
            json: st.json.as_ptr(),
        };
        // SAFETY: checked not NULL; valid for writes by the contract.
        unsafe { args::put(out, snap) };
        Ok(())
    })
}

/// Frees a list (NULL is ignored). Its strings become invalid.
///
/// # Safety
/// `list` is NULL or a list returned by this library that was not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_snapshot_list_free(list: *mut asl_snapshot_list) {
    no_panic((), || {
        if !list.is_null() {
            // SAFETY: made by Box::into_raw in hand_over and not freed before (contract).
            drop(unsafe { Box::from_raw(list) });
        }
    })
}
