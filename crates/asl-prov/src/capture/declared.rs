//! Storing a declared input or output: a directory as a tree (through `asl-fs` intake), a
//! file as its content, with a stat cache so an unchanged file is not read again.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use asl_store::{ArtifactWrite, TypeTag, Writer};

use crate::receipt::FileRef;

/// Stores a declared input or output: a directory as a tree, anything else as its content.
pub(crate) fn put_path(
    writer: &Writer,
    cache_dir: &Path,
    path: &Path,
) -> Result<FileRef, std::io::Error> {
    let meta = std::fs::metadata(path)?;
    let shown = path.to_string_lossy().into_owned();
    if meta.is_dir() {
        let key = blake3::hash(path.as_os_str().as_encoded_bytes()).to_hex();
        let opts = asl_fs::IntakeOptions {
            stat_cache: Some(cache_dir.join(format!("capture-tree-{}.statcache", &key[..16]))),
            ..Default::default()
        };
        let s = asl_fs::intake(
            writer,
            &[path.to_path_buf()],
            &opts,
            &asl_fs::Progress::new(),
        )
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        if let Some(e) = s.errors.first() {
            return Err(std::io::Error::other(format!(
                "{} inside it could not be read: {}",
                e.path.display(),
                e.message
            )));
        }
        return Ok(FileRef {
            path: shown,
            kind: "tree".into(),
            reference: s.root.to_string(),
            size: s.bytes_total,
            mode: 0,
        });
    }
    // A plain file: reuse the reference from the stat cache when the file is unchanged and
    // the store still holds it (lazy hashing), otherwise read it.
    let cache_path = cache_dir.join("capture-files.statcache");
    let mut f = std::fs::File::open(path)?;
    let st = f.metadata()?;
    let id = asl_fs::statcache::FileIdentity {
        dev: st.dev(),
        ino: st.ino(),
        size: st.size(),
        mtime: (st.mtime(), st.mtime_nsec() as u32),
        ctime: (st.ctime(), st.ctime_nsec() as u32),
    };
    let mut cache = asl_fs::statcache::StatCache::load(&cache_path);
    if let Some(hit) = cache.get(&id)
        && writer.contains(&hit.content)
    {
        return Ok(FileRef {
            path: shown,
            kind: "file".into(),
            reference: hit.content.to_string(),
            size: st.size(),
            mode: st.mode() & 0o7777,
        });
    }
    let put = writer
        .put_reader(&mut f, TypeTag::BYTES)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    cache.insert(asl_fs::statcache::CachedContent {
        identity: id,
        content: put.reference,
        holes: Vec::new(),
    });
    // The cache is derived: failing to save it only costs a re-read next time.
    let _ = std::fs::create_dir_all(cache_dir).and_then(|_| cache.save(&cache_path));
    Ok(FileRef {
        path: shown,
        kind: "file".into(),
        reference: put.reference.to_string(),
        size: put.len,
        mode: st.mode() & 0o7777,
    })
}
