//! [`PageCache`]: recently read pages of immutable objects (sealed blocks), so that many small
//! reads of one block cost one ranged GET per page instead of one per read; and their
//! lengths, so that opening one again (a reader per request, on a server) needs no HEAD.
//!
//! Why: a store reads a block record by record. On a disk each read is a cheap `pread`; on
//! S3 each one was a GET, and a commit's closure walk (every tree of the snapshot) or a
//! restore (every file) made tens of thousands of them, most into the same few blocks. Pages
//! are 1 MiB, aligned to the object's start, which is also Garage's default block size: a
//! page is one engine block read.
//!
//! Contract: only objects that never change under their key may be cached (a sealed block's
//! name is the hash of its bytes); at most [`PAGES`] pages are held, the least recently used
//! dropped first. Concurrent misses of one page may both fetch it; either copy is the same.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Bytes per page.
pub const PAGE: u64 = 1 << 20;
/// Pages held: 64 MiB, about eight sealed blocks of the default size.
pub const PAGES: usize = 64;

#[derive(Default)]
pub struct PageCache {
    inner: Mutex<Pages>,
    /// Object key → length. A few dozen bytes per block of the store; dropped with the block.
    sizes: Mutex<HashMap<String, u64>>,
}

/// An object key and a page number in it.
type PageId = (String, u64);

#[derive(Default)]
struct Pages {
    /// (object key, page number) → (bytes, last use).
    map: HashMap<PageId, (Arc<Vec<u8>>, u64)>,
    tick: u64,
}

impl PageCache {
    /// Copies `buf.len()` bytes at `offset` of the object `key` (of length `size`) into `buf`,
    /// fetching missing pages with `fetch(page_offset, page_len)`, which must return exactly
    /// `page_len` bytes. A read past `size`, or a fetch answering fewer bytes, is `short()`.
    pub fn read<E>(
        &self,
        key: &str,
        size: u64,
        offset: u64,
        buf: &mut [u8],
        mut fetch: impl FnMut(u64, u64) -> Result<Vec<u8>, E>,
        short: impl Fn() -> E,
    ) -> Result<(), E> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > size)
        {
            return Err(short());
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let page_no = at / PAGE;
            let page_start = page_no * PAGE;
            let page = match self.get(key, page_no) {
                Some(p) => p,
                None => {
                    let want = PAGE.min(size - page_start);
                    let p = fetch(page_start, want)?;
                    if p.len() as u64 != want {
                        return Err(short());
                    }
                    let p = Arc::new(p);
                    self.put(key, page_no, p.clone());
                    p
                }
            };
            let from = (at - page_start) as usize;
            let n = (buf.len() - done).min(page.len() - from);
            buf[done..done + n].copy_from_slice(&page[from..from + n]);
            done += n;
        }
        Ok(())
    }

    /// The length of `key` recorded by [`PageCache::set_size`].
    pub fn size(&self, key: &str) -> Option<u64> {
        self.sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
    }

    pub fn set_size(&self, key: &str, size: u64) {
        self.sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), size);
    }

    /// Drops what is held of `key` (it was deleted), or of every key when `None`.
    pub fn forget(&self, key: Option<&str>) {
        let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        let mut pages = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match key {
            Some(k) => {
                sizes.remove(k);
                pages.map.retain(|(pk, _), _| pk != k);
            }
            None => {
                sizes.clear();
                pages.map.clear();
            }
        }
    }

    fn get(&self, key: &str, page_no: u64) -> Option<Arc<Vec<u8>>> {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        p.tick += 1;
        let tick = p.tick;
        let hit = p.map.get_mut(&(key.to_string(), page_no))?;
        hit.1 = tick;
        Some(hit.0.clone())
    }

    fn put(&self, key: &str, page_no: u64, page: Arc<Vec<u8>>) {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if p.map.len() >= PAGES {
            let oldest = p
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                p.map.remove(&k);
            }
        }
        p.tick += 1;
        let tick = p.tick;
        p.map.insert((key.to_string(), page_no), (page, tick));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn reads_across_pages_fetch_each_page_once() {
        let obj = object(3 * PAGE as usize + 100);
        let cache = PageCache::default();
        let mut fetched = Vec::new();
        let read = |offset: u64, len: usize, fetched: &mut Vec<u64>| {
            let mut buf = vec![0u8; len];
            cache
                .read::<()>(
                    "k",
                    obj.len() as u64,
                    offset,
                    &mut buf,
                    |at, n| {
                        fetched.push(at);
                        Ok(obj[at as usize..(at + n) as usize].to_vec())
                    },
                    || (),
                )
                .unwrap();
            assert_eq!(buf, obj[offset as usize..offset as usize + len]);
        };
        read(PAGE - 10, 20, &mut fetched);
        read(5, 7, &mut fetched);
        read(3 * PAGE + 50, 50, &mut fetched);
        read(0, obj.len(), &mut fetched);
        assert_eq!(fetched, vec![0, PAGE, 3 * PAGE, 2 * PAGE]);
    }

    #[test]
    fn the_least_recently_used_page_goes_first() {
        let cache = PageCache::default();
        let page = |_: u64, _: u64| Ok::<_, ()>(vec![7u8; 16]);
        let mut buf = [0u8; 1];
        for k in 0..PAGES {
            cache
                .read(&format!("k{k}"), 16, 0, &mut buf, page, || ())
                .unwrap();
        }
        // k0 used again: k1 is now the oldest and is the one dropped for a new page.
        cache.read("k0", 16, 0, &mut buf, page, || ()).unwrap();
        cache.read("new", 16, 0, &mut buf, page, || ()).unwrap();
        let mut again = Vec::new();
        for k in ["k0", "k1"] {
            cache
                .read::<()>(
                    k,
                    16,
                    0,
                    &mut buf,
                    |_, _| {
                        again.push(k);
                        Ok(vec![7u8; 16])
                    },
                    || (),
                )
                .unwrap();
        }
        assert_eq!(again, vec!["k1"]);
    }

    #[test]
    fn a_failed_fetch_is_returned_and_not_cached() {
        let cache = PageCache::default();
        let mut buf = [0u8; 4];
        let down = cache.read("k", 16, 0, &mut buf, |_, _| Err("down"), || "short");
        assert_eq!(down, Err("down"));
        let cut = cache.read("k", 16, 0, &mut buf, |_, _| Ok(vec![1u8; 8]), || "short");
        assert_eq!(cut, Err("short"));
        let past = cache.read("k", 16, 14, &mut buf, |_, _| Ok(vec![1u8; 16]), || "short");
        assert_eq!(past, Err("short"));
        cache
            .read("k", 16, 0, &mut buf, |_, _| Ok(vec![1u8; 16]), || "short")
            .unwrap();
        assert_eq!(buf, [1u8; 4]);
    }
}
