//! Store handles: what an `asl_store *` stands for, and the registry that makes a closed or
//! made-up handle an error instead of undefined behaviour.
//!
//! The pointer a caller holds is never dereferenced: it is a number that names an entry of
//! the registry. Numbers are never reused, so a handle used after `asl_store_close` finds no
//! entry and the call returns `ASL_E_HANDLE`.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ::asl_store::{Reader, Store, Writer};

use crate::status::{Error, Result, asl_status};

/// An open store. Opaque: C code only holds pointers to it.
#[allow(non_camel_case_types)]
pub struct asl_store {
    _opaque: [u8; 0],
}

self_cell::self_cell!(
    /// The committed state of a store and a reader of it. The reader keeps the block files it
    /// opened, so consecutive gets do not reopen them.
    pub struct View {
        owner: Store,
        #[covariant]
        dependent: Reader,
    }
);

impl View {
    fn open(dir: &Path) -> Result<View> {
        let store = Store::open(dir)?;
        Ok(View::new(store, |s| s.reader()))
    }

    pub fn store(&self) -> &Store {
        self.borrow_owner()
    }

    pub fn reader(&self) -> &Reader<'_> {
        self.borrow_dependent()
    }
}

/// What a handle holds. `view` is `None` when it is stale (after a commit through the
/// handle): the next read opens it again.
pub struct Inner {
    pub writer: Option<Writer>,
    view: Option<View>,
    closed: bool,
}

impl Inner {
    pub fn writer(&self) -> Result<&Writer> {
        self.writer.as_ref().ok_or_else(read_only)
    }

    pub fn writer_mut(&mut self) -> Result<&mut Writer> {
        self.writer.as_mut().ok_or_else(read_only)
    }

    /// Marks the view stale: what was just committed becomes visible to the next read.
    pub fn invalidate(&mut self) {
        self.view = None;
    }
}

fn read_only() -> Error {
    Error::new(
        asl_status::ASL_E_READ_ONLY,
        "the store handle was opened read-only; open it with ASL_OPEN_WRITE to write",
    )
}

pub struct StoreHandle {
    id: usize,
    pub dir: PathBuf,
    inner: RwLock<Inner>,
}

static HANDLES: LazyLock<RwLock<HashMap<usize, Arc<StoreHandle>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// The handle whose callback (progress, stream read or write) this thread is running, if
    /// any: a call back into the library with that handle could wait for itself.
    static IN_CALLBACK: Cell<usize> = const { Cell::new(0) };
}

fn poisoned() -> Error {
    Error::new(
        asl_status::ASL_E_INTERNAL,
        "the store handle was left unusable by an earlier internal error; close it",
    )
}

impl StoreHandle {
    /// Registers a newly opened store and returns the caller's pointer for it.
    pub fn register(dir: PathBuf, writer: Option<Writer>) -> Result<*mut asl_store> {
        let view = match &writer {
            // A writer has just read the log: the view is opened on the first read.
            Some(_) => None,
            None => Some(View::open(&dir)?),
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(StoreHandle {
            id,
            dir,
            inner: RwLock::new(Inner {
                writer,
                view,
                closed: false,
            }),
        });
        HANDLES.write().map_err(|_| poisoned())?.insert(id, handle);
        Ok(std::ptr::without_provenance_mut(id))
    }

    /// The handle a caller's pointer names.
    pub fn get(p: *const asl_store) -> Result<Arc<StoreHandle>> {
        let id = checked_id(p)?;
        HANDLES
            .read()
            .map_err(|_| poisoned())?
            .get(&id)
            .cloned()
            .ok_or_else(closed)
    }

    /// Removes the handle from the registry and releases what it holds (the writer lock
    /// first of all), after every call running on it has returned.
    pub fn close(p: *const asl_store) -> Result<()> {
        let id = checked_id(p)?;
        let handle = HANDLES
            .write()
            .map_err(|_| poisoned())?
            .remove(&id)
            .ok_or_else(closed)?;
        // A poisoned lock still holds the writer: release it all the same.
        let mut inner = handle.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.closed = true;
        inner.view = None;
        inner.writer = None;
        Ok(())
    }

    pub fn read(&self) -> Result<RwLockReadGuard<'_, Inner>> {
        let g = self.inner.read().map_err(|_| poisoned())?;
        if g.closed {
            return Err(closed());
        }
        Ok(g)
    }

    pub fn write(&self) -> Result<RwLockWriteGuard<'_, Inner>> {
        let g = self.inner.write().map_err(|_| poisoned())?;
        if g.closed {
            return Err(closed());
        }
        Ok(g)
    }

    /// Runs `f` on the committed state, opening the view first when it is stale.
    pub fn with_view<R>(&self, f: impl FnOnce(&View) -> Result<R>) -> Result<R> {
        loop {
            {
                let g = self.read()?;
                if let Some(v) = &g.view {
                    return f(v);
                }
            }
            let mut g = self.write()?;
            if g.view.is_none() {
                g.view = Some(View::open(&self.dir)?);
            }
        }
    }

    /// Reopens the view: a read-only handle then sees what writers committed since.
    pub fn refresh(&self) -> Result<()> {
        let view = View::open(&self.dir)?;
        self.write()?.view = Some(view);
        Ok(())
    }

    /// Runs `f` with this thread marked as inside a callback of this handle.
    pub fn in_callback<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Reset(usize);
        impl Drop for Reset {
            fn drop(&mut self) {
                IN_CALLBACK.with(|c| c.set(self.0));
            }
        }
        let _reset = Reset(IN_CALLBACK.with(|c| c.replace(self.id)));
        f()
    }
}

/// The registry key of a caller's pointer, refusing NULL and a call from inside one of the
/// handle's own callbacks (which would wait for the call it is part of).
fn checked_id(p: *const asl_store) -> Result<usize> {
    if p.is_null() {
        return Err(Error::null("store"));
    }
    let id = p.addr();
    if IN_CALLBACK.with(Cell::get) == id {
        return Err(Error::usage(
            "a callback called libasl with the store handle whose call it serves; use \
             another handle, or act after the call returns",
        ));
    }
    Ok(id)
}

fn closed() -> Error {
    Error::new(
        asl_status::ASL_E_HANDLE,
        "the store handle is closed or was never opened (asl_store_open returns valid handles)",
    )
}
