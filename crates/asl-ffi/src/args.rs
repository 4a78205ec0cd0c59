//! Reading the caller's arguments: NUL-terminated strings, arrays, references and output
//! pointers. NULL is checked here and turned into `ASL_E_NULL` naming the argument.

use std::ffi::{CStr, c_char};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use ::asl_store::{HashAlgo, Reference};

use crate::status::{Error, Result, asl_status};

/// An artifact reference: the hash algorithm's registered id (`ASL_HASH_SHA256` = 1,
/// `ASL_HASH_BLAKE3` = 2) and the 32-byte digest. Plain data; copy it freely.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct asl_ref {
    pub hash_id: u16,
    pub digest: [u8; 32],
}

impl From<Reference> for asl_ref {
    fn from(r: Reference) -> asl_ref {
        asl_ref {
            hash_id: r.algo().id(),
            digest: *r.digest(),
        }
    }
}

impl asl_ref {
    pub fn to_reference(self) -> Result<Reference> {
        let algo = HashAlgo::from_id(self.hash_id).ok_or_else(|| {
            Error::usage(format!(
                "reference has unknown hash id {:#06x} (expected 1 for sha256 or 2 for blake3)",
                self.hash_id
            ))
        })?;
        Ok(Reference::new(algo, self.digest))
    }
}

/// A NUL-terminated string argument that must not be NULL.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid for `'a`.
pub unsafe fn cstr<'a>(p: *const c_char, what: &str) -> Result<&'a CStr> {
    if p.is_null() {
        return Err(Error::null(what));
    }
    // SAFETY: not NULL, and NUL-terminated and valid by the caller's contract.
    Ok(unsafe { CStr::from_ptr(p) })
}

/// A text argument: must be UTF-8.
///
/// # Safety
/// As [`cstr`].
pub unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    // SAFETY: forwarded contract.
    let c = unsafe { cstr(p, what) }?;
    c.to_str().map_err(|e| {
        Error::new(
            asl_status::ASL_E_UTF8,
            format!(
                "{what} '{}' is not valid UTF-8 (invalid byte at offset {})",
                c.to_string_lossy(),
                e.valid_up_to()
            ),
        )
    })
}

/// An optional text argument (NULL: none).
///
/// # Safety
/// As [`cstr`].
pub unsafe fn opt_text<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { text(p, what) }.map(Some)
}

/// A path argument: any bytes but NUL, as Linux paths are.
///
/// # Safety
/// As [`cstr`].
pub unsafe fn path(p: *const c_char, what: &str) -> Result<PathBuf> {
    // SAFETY: forwarded contract.
    let c = unsafe { cstr(p, what) }?;
    if c.is_empty() {
        return Err(Error::usage(format!("{what} is an empty string")));
    }
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(c.to_bytes())))
}

/// An array of `len` NUL-terminated strings.
///
/// # Safety
/// `p` is NULL (then `len` must be 0) or points to `len` valid string pointers.
pub unsafe fn array<'a>(p: *const *const c_char, len: usize, what: &str) -> Result<Vec<&'a CStr>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(Error::null(what));
    }
    // SAFETY: `p` points to `len` pointers by the caller's contract.
    let ptrs = unsafe { std::slice::from_raw_parts(p, len) };
    ptrs.iter()
        .enumerate()
        // SAFETY: each element is NULL or a valid NUL-terminated string (contract).
        .map(|(i, &s)| unsafe { cstr(s, &format!("{what}[{i}]")) })
        .collect()
}

/// A reference argument that must not be NULL.
///
/// # Safety
/// `p` is NULL or points to a readable `asl_ref`.
pub unsafe fn reference(p: *const asl_ref, what: &str) -> Result<Reference> {
    if p.is_null() {
        return Err(Error::null(what));
    }
    // SAFETY: not NULL and readable by the contract; asl_ref is plain old data, so any bit
    // pattern is a valid value.
    unsafe { *p }.to_reference()
}

/// Checks an output pointer before any work is done, so that a NULL one changes nothing.
pub fn out<T>(p: *mut T, what: &str) -> Result<()> {
    if p.is_null() {
        return Err(Error::null(what));
    }
    Ok(())
}

/// Stores `value` through an output pointer checked by [`out`] (or NULL for an optional one,
/// which is skipped).
///
/// # Safety
/// `p` is NULL or valid for writing a `T`.
pub unsafe fn put<T>(p: *mut T, value: T) {
    if !p.is_null() {
        // SAFETY: valid for writes by the contract; `write` does not drop the old bytes,
        // which may be uninitialised.
        unsafe { p.write(value) };
    }
}
