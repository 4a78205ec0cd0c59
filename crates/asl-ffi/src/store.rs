//! Opening, creating and closing stores; putting and getting artifacts; committing.

use std::ffi::c_char;
use std::io::{Read, Write};

use ::asl_store::{
    ArtifactRead, ArtifactWrite, HashAlgo, InitOptions, SnapshotMeta, Store, TypeTag, Writer,
};

use crate::args::{self, asl_ref};
use crate::handle::{StoreHandle, asl_store};
use crate::status::{Error, asl_status, guard};

/// Open flag: take the store's writer lock (one writer per store, across processes).
pub const ASL_OPEN_WRITE: u32 = 1;
/// Open flag (with `ASL_OPEN_WRITE`): create the store with default options when the
/// directory does not exist or is empty.
pub const ASL_OPEN_CREATE: u32 = 2;
/// Hash ids of references.
pub const ASL_HASH_SHA256: u16 = 1;
pub const ASL_HASH_BLAKE3: u16 = 2;
/// Room for a reference's text form (`sha256:` + 64 hex digits + NUL).
pub const ASL_REF_STRING_MAX: usize = 72;

/// Options of a new store. Zero in a field means its default.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct asl_init_options {
    /// `ASL_HASH_BLAKE3` (default) or `ASL_HASH_SHA256`.
    pub hash_id: u16,
    /// The store's domain (default 1).
    pub domain_id: u32,
    /// FastCDC chunk sizes in bytes, powers of two (default 128 KiB, 512 KiB, 2 MiB); all
    /// three or none.
    pub chunk_min: u32,
    pub chunk_avg: u32,
    pub chunk_max: u32,
}

/// Reads up to `cap` bytes into `buf`; returns how many (0 at the end), or a negative value
/// on error (the put then fails with `ASL_E_CALLBACK` and stores nothing). It must not call
/// libasl with the same store handle (such a call returns `ASL_E_USAGE`).
#[allow(non_camel_case_types)]
pub type asl_read_fn =
    Option<unsafe extern "C" fn(ctx: *mut std::ffi::c_void, buf: *mut u8, cap: usize) -> isize>;

/// Takes `len` bytes of an artifact being read; returns 0 to go on, anything else to stop
/// (the get then fails with `ASL_E_CALLBACK`). It must not call libasl with the same store
/// handle (such a call returns `ASL_E_USAGE`).
#[allow(non_camel_case_types)]
pub type asl_write_fn =
    Option<unsafe extern "C" fn(ctx: *mut std::ffi::c_void, buf: *const u8, len: usize) -> i32>;

/// Creates a new, empty store in `dir` (which must not exist or be empty), as
/// `asl-init-store` does. `options` may be NULL for the defaults.
///
/// # Safety
/// `dir` is a NUL-terminated string; `options` is NULL or points to an `asl_init_options`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_store_init(
    dir: *const c_char,
    options: *const asl_init_options,
) -> asl_status {
    guard(|| {
        // SAFETY: the caller's contract for `dir`.
        let dir = unsafe { args::path(dir, "dir") }?;
        let o = if options.is_null() {
            asl_init_options::default()
        } else {
            // SAFETY: not NULL and readable (contract); plain data.
            unsafe { *options }
        };
        let opts = init_options(&o)?;
        Store::init(&dir, &opts)?;
        Ok(())
    })
}

fn init_options(o: &asl_init_options) -> Result<InitOptions, Error> {
    let hash = match o.hash_id {
        0 => HashAlgo::Blake3,
        id => HashAlgo::from_id(id).ok_or_else(|| {
            Error::usage(format!(
                "hash_id {id} is not a hash this store knows (1: sha256, 2: blake3)"
            ))
        })?,
    };
    let chunk_sizes = match (o.chunk_min, o.chunk_avg, o.chunk_max) {
        (0, 0, 0) => None,
        (min, avg, max) if min != 0 && avg != 0 && max != 0 => Some((min, avg, max)),
        _ => {
            return Err(Error::usage(
                "chunk_min, chunk_avg and chunk_max are given together or not at all",
            ));
        }
    };
    Ok(InitOptions {
        hash,
        domain_id: if o.domain_id == 0 { 1 } else { o.domain_id },
        chunk_sizes,
        block_target_size: None,
    })
}

/// Opens the store in `dir`. Without flags the handle is read-only and sees the store as it
/// was when opened (see `asl_store_refresh`); `ASL_OPEN_WRITE` takes the writer lock, and
/// `ASL_OPEN_CREATE` also creates the store if `dir` does not exist or is empty.
///
/// On success `*out` is the handle; close it with `asl_store_close`. A handle may be used
/// from several threads at once (see docs/libasl.md, "Threads").
///
/// # Safety
/// `dir` is a NUL-terminated string; `out` is valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_store_open(
    dir: *const c_char,
    flags: u32,
    out: *mut *mut asl_store,
) -> asl_status {
    guard(|| {
        args::out(out, "out")?;
        // SAFETY: the caller's contract for `dir`.
        let dir = unsafe { args::path(dir, "dir") }?;
        if flags & !(ASL_OPEN_WRITE | ASL_OPEN_CREATE) != 0 {
            return Err(Error::usage(format!("unknown open flags {flags:#x}")));
        }
        if flags & ASL_OPEN_CREATE != 0 && flags & ASL_OPEN_WRITE == 0 {
            return Err(Error::usage("ASL_OPEN_CREATE needs ASL_OPEN_WRITE"));
        }
        let writer = if flags & ASL_OPEN_WRITE == 0 {
            None
        } else if flags & ASL_OPEN_CREATE != 0 {
            Some(Writer::open_or_init(&dir, &InitOptions::default())?)
        } else {
            Some(Writer::open(&dir)?)
        };
        let handle = StoreHandle::register(dir, writer)?;
        // SAFETY: checked not NULL above; valid for writes by the contract.
        unsafe { args::put(out, handle) };
        Ok(())
    })
}

/// Closes a handle: waits for calls running on it in other threads, releases the writer
/// lock, and makes the handle invalid (a later call with it returns `ASL_E_HANDLE`).
/// Artifacts put since the last commit are dropped: they were never visible.
///
/// # Safety
/// None beyond the signature: any pointer value is accepted.
#[unsafe(no_mangle)]
pub extern "C" fn asl_store_close(store: *mut asl_store) -> asl_status {
    guard(|| StoreHandle::close(store))
}

/// Makes a read-only handle see what writers committed since it was opened (or last
/// refreshed). On a write handle it changes nothing visible: its own commits are seen anyway.
#[unsafe(no_mangle)]
pub extern "C" fn asl_store_refresh(store: *mut asl_store) -> asl_status {
    guard(|| StoreHandle::get(store)?.refresh())
}

/// Stores `len` bytes as one artifact and writes its reference to `*out`. Needs a write
/// handle; the artifact becomes visible (to gets, to other processes) at the next commit.
/// Thread-safe: puts on one handle from several threads run in parallel.
///
/// # Safety
/// `data` is valid for reading `len` bytes (or may be NULL when `len` is 0); `out` is valid
/// for writing an `asl_ref`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_put(
    store: *mut asl_store,
    data: *const u8,
    len: usize,
    out: *mut asl_ref,
) -> asl_status {
    guard(|| {
        args::out(out, "out")?;
        let bytes: &[u8] = if len == 0 {
            &[]
        } else if data.is_null() {
            return Err(Error::null("data"));
        } else {
            // SAFETY: `data` is valid for `len` bytes by the contract.
            unsafe { std::slice::from_raw_parts(data, len) }
        };
        let h = StoreHandle::get(store)?;
        let put = h.read()?.writer()?.put_bytes(bytes, TypeTag::BYTES)?;
        // SAFETY: checked not NULL; valid for writes by the contract.
        unsafe { args::put(out, asl_ref::from(put.reference)) };
        Ok(())
    })
}

struct CallbackReader<'h> {
    handle: &'h StoreHandle,
    read: unsafe extern "C" fn(*mut std::ffi::c_void, *mut u8, usize) -> isize,
    ctx: *mut std::ffi::c_void,
}

impl Read for CallbackReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let (read, ctx) = (self.read, self.ctx);
        let n = self.handle.in_callback(|| {
            // SAFETY: the callback and its context are the caller's, valid for the call by
            // the contract of asl_put_stream; `buf` is valid for `buf.len()` bytes.
            unsafe { read(ctx, buf.as_mut_ptr(), buf.len()) }
        });
        if n < 0 {
            return Err(std::io::Error::other(format!(
                "the read callback returned {n}"
            )));
        }
        let n = n as usize;
        if n > buf.len() {
            return Err(std::io::Error::other(format!(
                "the read callback returned {n}, more than the {} bytes asked for",
                buf.len()
            )));
        }
        Ok(n)
    }
}

/// Stores everything `read` yields (until it returns 0) as one artifact, streaming: memory
/// stays bounded whatever the size. Otherwise as `asl_put`. `read` is called on the calling
/// thread.
///
/// # Safety
/// `read` is a function that behaves as `asl_read_fn` says, for the given `ctx`; `out` is
/// valid for writing an `asl_ref`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_put_stream(
    store: *mut asl_store,
    read: asl_read_fn,
    ctx: *mut std::ffi::c_void,
    out: *mut asl_ref,
) -> asl_status {
    guard(|| {
        args::out(out, "out")?;
        let read = read.ok_or_else(|| Error::null("read"))?;
        let h = StoreHandle::get(store)?;
        let mut source = CallbackReader {
            handle: &h,
            read,
            ctx,
        };
        let put = h
            .read()?
            .writer()?
            .put_reader(&mut source, TypeTag::BYTES)?;
        // SAFETY: checked not NULL; valid for writes by the contract.
        unsafe { args::put(out, asl_ref::from(put.reference)) };
        Ok(())
    })
}

/// The length of a committed artifact, in `*len`; `ASL_E_NOT_FOUND` when the store does not
/// hold it.
///
/// # Safety
/// `reference` points to an `asl_ref`; `len` is valid for writing a `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_artifact_len(
    store: *mut asl_store,
    reference: *const asl_ref,
    len: *mut u64,
) -> asl_status {
    guard(|| {
        args::out(len, "len")?;
        // SAFETY: the caller's contract.
        let r = unsafe { args::reference(reference, "reference") }?;
        let h = StoreHandle::get(store)?;
        let n = h.with_view(|v| {
            v.reader()
                .artifact_len(&r)
                .ok_or_else(|| Error::from(::asl_store::AccessError::NotFound(r)))
        })?;
        // SAFETY: checked not NULL; valid for writes by the contract.
        unsafe { args::put(len, n) };
        Ok(())
    })
}

/// Copies a committed artifact into `buf` (capacity `cap`) and its length into `*len`.
/// When `cap` is too small, `*len` is the length needed and the status is `ASL_E_BUFFER`.
/// Every byte is checked against the reference. On any failure the buffer's contents are
/// unspecified.
///
/// # Safety
/// `reference` points to an `asl_ref`; `buf` is valid for writing `cap` bytes (or NULL when
/// `cap` is 0); `len` is valid for writing a `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_get(
    store: *mut asl_store,
    reference: *const asl_ref,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> asl_status {
    guard(|| {
        args::out(len, "len")?;
        if cap > 0 && buf.is_null() {
            return Err(Error::null("buf"));
        }
        // SAFETY: the caller's contract.
        let r = unsafe { args::reference(reference, "reference") }?;
        let h = StoreHandle::get(store)?;
        h.with_view(|v| {
            let reader = v.reader();
            let dest: &mut [u8] = if cap == 0 {
                &mut []
            } else {
                // SAFETY: `buf` is valid for writing `cap` bytes by the contract and not NULL
                // (checked above).
                unsafe { std::slice::from_raw_parts_mut(buf, cap) }
            };
            // One index lookup on the way that succeeds: the read itself. A buffer that
            // turns out too small fails the read as a full sink; only then is the length
            // looked up, to tell the caller what is needed.
            let mut sink = &mut dest[..];
            match reader.read_to(&r, &mut sink) {
                Ok(n) => {
                    // SAFETY: checked not NULL; valid for writes by the contract.
                    unsafe { args::put(len, n as usize) };
                    Ok(())
                }
                Err(::asl_store::AccessError::Sink(_)) => {
                    let need = reader.artifact_len(&r).unwrap_or(0);
                    // SAFETY: as above.
                    unsafe { args::put(len, usize::try_from(need).unwrap_or(usize::MAX)) };
                    Err(Error::new(
                        asl_status::ASL_E_BUFFER,
                        format!("artifact {r} has {need} bytes; the buffer holds {cap}"),
                    ))
                }
                Err(e) => Err(e.into()),
            }
        })
    })
}

struct CallbackWriter<'h> {
    handle: &'h StoreHandle,
    write: unsafe extern "C" fn(*mut std::ffi::c_void, *const u8, usize) -> i32,
    ctx: *mut std::ffi::c_void,
}

impl Write for CallbackWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (write, ctx) = (self.write, self.ctx);
        let rc = self.handle.in_callback(|| {
            // SAFETY: the callback and its context are the caller's, valid for the call by
            // the contract of asl_get_stream; `buf` is valid for reads of its length.
            unsafe { write(ctx, buf.as_ptr(), buf.len()) }
        });
        if rc != 0 {
            return Err(std::io::Error::other(format!(
                "the write callback returned {rc}"
            )));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Streams a committed artifact to `write`, in pieces of at most one chunk, on the calling
/// thread; its length goes to `*len` (may be NULL). The hash is checked as the bytes
/// stream: on `ASL_E_CORRUPT` the bytes already passed must be discarded.
///
/// # Safety
/// `reference` points to an `asl_ref`; `write` behaves as `asl_write_fn` says for `ctx`;
/// `len` is NULL or valid for writing a `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_get_stream(
    store: *mut asl_store,
    reference: *const asl_ref,
    write: asl_write_fn,
    ctx: *mut std::ffi::c_void,
    len: *mut u64,
) -> asl_status {
    guard(|| {
        let write = write.ok_or_else(|| Error::null("write"))?;
        // SAFETY: the caller's contract.
        let r = unsafe { args::reference(reference, "reference") }?;
        let h = StoreHandle::get(store)?;
        let n = h.with_view(|v| {
            let mut sink = CallbackWriter {
                handle: &h,
                write,
                ctx,
            };
            Ok(v.reader().read_to(&r, &mut sink)?)
        })?;
        // SAFETY: NULL or valid for writes by the contract.
        unsafe { args::put(len, n) };
        Ok(())
    })
}

/// Commits what was put since the last commit as a new snapshot, as one durable step, and
/// writes its id to `*snapshot_id` (may be NULL). `root` (may be NULL) is the artifact the
/// snapshot is about; `kind` (NULL: `"put"`) and `label` (may be NULL) are its metadata.
/// Needs a write handle; waits for puts running on it in other threads.
///
/// # Safety
/// `root` is NULL or points to an `asl_ref`; `kind` and `label` are NULL or NUL-terminated
/// strings; `snapshot_id` is NULL or valid for writing a `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_commit(
    store: *mut asl_store,
    root: *const asl_ref,
    kind: *const c_char,
    label: *const c_char,
    snapshot_id: *mut u64,
) -> asl_status {
    guard(|| {
        let root = if root.is_null() {
            None
        } else {
            // SAFETY: the caller's contract.
            Some(unsafe { args::reference(root, "root") }?)
        };
        // SAFETY: the caller's contract for both strings.
        let kind = unsafe { args::opt_text(kind, "kind") }?.unwrap_or("put");
        // SAFETY: as above.
        let label = unsafe { args::opt_text(label, "label") }?;
        let h = StoreHandle::get(store)?;
        let mut g = h.write()?;
        let mut meta = SnapshotMeta::now(kind);
        meta.label = label.map(str::to_string);
        let commit = g.writer_mut()?.commit(root, meta)?;
        g.invalidate();
        // SAFETY: NULL or valid for writes by the contract.
        unsafe { args::put(snapshot_id, commit.snapshot.id) };
        Ok(())
    })
}

/// Writes the text form of a reference (`b3:<hex>` or `sha256:<hex>`, NUL-terminated) to
/// `buf`, which holds `cap` bytes; `ASL_REF_STRING_MAX` is always enough.
///
/// # Safety
/// `reference` points to an `asl_ref`; `buf` is valid for writing `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_ref_to_string(
    reference: *const asl_ref,
    buf: *mut c_char,
    cap: usize,
) -> asl_status {
    guard(|| {
        if buf.is_null() {
            return Err(Error::null("buf"));
        }
        // SAFETY: the caller's contract.
        let r = unsafe { args::reference(reference, "reference") }?;
        let text = r.to_string();
        if text.len() + 1 > cap {
            return Err(Error::new(
                asl_status::ASL_E_BUFFER,
                format!(
                    "the reference needs {} bytes; the buffer holds {cap}",
                    text.len() + 1
                ),
            ));
        }
        // SAFETY: `buf` is valid for `cap > text.len()` bytes by the contract; the regions
        // cannot overlap (one is a fresh String).
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
            buf.add(text.len()).write(0);
        }
        Ok(())
    })
}

/// Parses the text form of a reference (`b3:<hex>`, `blake3:<hex>` or `sha256:<hex>`).
///
/// # Safety
/// `text` is a NUL-terminated string; `out` is valid for writing an `asl_ref`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn asl_ref_parse(text: *const c_char, out: *mut asl_ref) -> asl_status {
    guard(|| {
        args::out(out, "out")?;
        // SAFETY: the caller's contract.
        let t = unsafe { args::text(text, "reference") }?;
        let r: ::asl_store::Reference = t
            .parse()
            .map_err(|e: ::asl_store::ParseReferenceError| Error::usage(e.to_string()))?;
        // SAFETY: checked not NULL; valid for writes by the contract.
        unsafe { args::put(out, asl_ref::from(r)) };
        Ok(())
    })
}
