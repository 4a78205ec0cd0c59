//! Tree artifacts: the canonical, deterministic encoding of one directory's entries.
//!
//! A tree artifact lists the entries of one directory, sorted by raw name bytes, with all the
//! metadata intake records (DESIGN §4). It does not describe the directory itself: that is
//! the parent's entry (the root directory of an intake therefore has no recorded metadata).
//! The byte layout is specified in `docs/FORMAT-tree.md`; [`encode_tree`] writes it and
//! [`decode_tree`] reads it. The decoder accepts exactly the byte strings the encoder can
//! produce (it rejects every non-canonical form), so `encode(decode(b)) == b` for every `b`
//! that decodes, and it never panics on arbitrary input.

use asl_store::{DIGEST_LEN, HashAlgo, Reference};

/// The 7 magic bytes every tree artifact starts with, followed by the version byte.
pub const TREE_MAGIC: &[u8; 7] = b"ASLTREE";
/// The encoding version this crate writes and reads.
pub const TREE_VERSION: u8 = 1;
/// Longest entry name accepted (Linux NAME_MAX).
pub const MAX_NAME_LEN: usize = 255;

const FLAG_CHANGED: u8 = 0x01;
const FLAG_ERROR: u8 = 0x02;
const FLAG_REF: u8 = 0x04;
const FLAGS_KNOWN: u8 = FLAG_CHANGED | FLAG_ERROR | FLAG_REF;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The entry's type could not be determined (its `lstat` failed); always carries an error.
    Unknown,
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl Kind {
    pub fn code(self) -> u8 {
        match self {
            Kind::Unknown => 0,
            Kind::File => 1,
            Kind::Dir => 2,
            Kind::Symlink => 3,
            Kind::Fifo => 4,
            Kind::Socket => 5,
            Kind::CharDevice => 6,
            Kind::BlockDevice => 7,
        }
    }

    pub fn from_code(c: u8) -> Option<Kind> {
        Some(match c {
            0 => Kind::Unknown,
            1 => Kind::File,
            2 => Kind::Dir,
            3 => Kind::Symlink,
            4 => Kind::Fifo,
            5 => Kind::Socket,
            6 => Kind::CharDevice,
            7 => Kind::BlockDevice,
            _ => return None,
        })
    }

    /// One letter, as `ls -l` shows it (`?` for unknown).
    pub fn letter(self) -> char {
        match self {
            Kind::Unknown => '?',
            Kind::File => '-',
            Kind::Dir => 'd',
            Kind::Symlink => 'l',
            Kind::Fifo => 'p',
            Kind::Socket => 's',
            Kind::CharDevice => 'c',
            Kind::BlockDevice => 'b',
        }
    }

    /// Whether the entry carries device numbers.
    pub fn is_device(self) -> bool {
        matches!(self, Kind::CharDevice | Kind::BlockDevice)
    }
}

/// The operation that failed for an entry during intake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    Lstat,
    Opendir,
    Readdir,
    Open,
    Read,
    Readlink,
    Xattr,
    /// Storing the bytes failed for a reason other than the source (recorded, not fatal).
    Store,
}

impl Operation {
    pub fn code(self) -> u8 {
        match self {
            Operation::Lstat => 1,
            Operation::Opendir => 2,
            Operation::Readdir => 3,
            Operation::Open => 4,
            Operation::Read => 5,
            Operation::Readlink => 6,
            Operation::Xattr => 7,
            Operation::Store => 8,
        }
    }

    pub fn from_code(c: u8) -> Option<Operation> {
        Some(match c {
            1 => Operation::Lstat,
            2 => Operation::Opendir,
            3 => Operation::Readdir,
            4 => Operation::Open,
            5 => Operation::Read,
            6 => Operation::Readlink,
            7 => Operation::Xattr,
            8 => Operation::Store,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Operation::Lstat => "lstat",
            Operation::Opendir => "opendir",
            Operation::Readdir => "readdir",
            Operation::Open => "open",
            Operation::Read => "read",
            Operation::Readlink => "readlink",
            Operation::Xattr => "xattr",
            Operation::Store => "store",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why part of an entry could not be taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct EntryError {
    pub op: Operation,
    /// The `errno` value (0 when the failure had none).
    pub errno: i32,
}

/// A run of a sparse file that reads as zeros and has no storage allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Hole {
    pub offset: u64,
    pub len: u64,
}

/// One directory entry with its metadata.
///
/// Fields that do not apply to an entry's kind must hold their empty value (`None`, empty,
/// 0): the encoder rejects an entry that violates this, the decoder never produces one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Entry {
    /// Raw name bytes: 1..=255 bytes, no `/`, no NUL, not `.` or `..`.
    #[serde(serialize_with = "ser_bytes_lossy")]
    pub name: Vec<u8>,
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_sec: i64,
    /// Nanoseconds, < 1_000_000_000.
    pub mtime_nsec: u32,
    /// Files: logical length of the content (holes included). Symlinks: target length.
    /// Others: 0.
    pub size: u64,
    /// Hardlink group within the intake (1, 2, ...; 0 = not hardlinked). Never on directories.
    pub hardlink_group: u64,
    /// Extended attributes, sorted by name, names unique and non-empty.
    #[serde(skip)]
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Files: the content artifact (BYTES); directories: the child tree artifact (TREE).
    /// `None` when it could not be read (then `error` says why).
    pub content: Option<Reference>,
    /// Files: the holes, sorted, non-overlapping, non-adjacent, within `size`.
    pub holes: Vec<Hole>,
    /// Symlinks: the target bytes (non-empty, no NUL).
    #[serde(serialize_with = "ser_bytes_lossy")]
    pub link_target: Vec<u8>,
    /// Devices: major and minor numbers.
    pub rdev_major: u32,
    pub rdev_minor: u32,
    /// The file changed while it was read: its content is what was read, not a consistent
    /// state of the file.
    pub changed_during_read: bool,
    pub error: Option<EntryError>,
}

fn ser_bytes_lossy<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(b))
}

impl Entry {
    /// A blank entry of a kind, every field empty.
    pub fn new(name: Vec<u8>, kind: Kind) -> Entry {
        Entry {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime_sec: 0,
            mtime_nsec: 0,
            size: 0,
            hardlink_group: 0,
            xattrs: Vec::new(),
            content: None,
            holes: Vec::new(),
            link_target: Vec::new(),
            rdev_major: 0,
            rdev_minor: 0,
            changed_during_read: false,
            error: None,
        }
    }

    /// The modification time in nanoseconds since the epoch.
    pub fn mtime_ns(&self) -> i128 {
        i128::from(self.mtime_sec) * 1_000_000_000 + i128::from(self.mtime_nsec)
    }

    /// The name for display (lossy UTF-8).
    pub fn display_name(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }

    /// Whether everything but content/tree references and the name is equal.
    pub fn same_metadata(&self, other: &Entry) -> bool {
        self.kind == other.kind
            && self.mode == other.mode
            && self.uid == other.uid
            && self.gid == other.gid
            && self.mtime_sec == other.mtime_sec
            && self.mtime_nsec == other.mtime_nsec
            && self.size == other.size
            && self.hardlink_group == other.hardlink_group
            && self.xattrs == other.xattrs
            && self.holes == other.holes
            && self.link_target == other.link_target
            && self.rdev_major == other.rdev_major
            && self.rdev_minor == other.rdev_minor
            && self.changed_during_read == other.changed_during_read
            && self.error == other.error
    }
}

/// The decoded content of one tree artifact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Tree {
    /// Sorted by name bytes, names unique.
    pub entries: Vec<Entry>,
}

impl Tree {
    /// Finds an entry by name (binary search: entries are sorted).
    pub fn get(&self, name: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }
}

/// Why a tree could not be encoded or decoded. Offsets are byte positions in the artifact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("not a tree artifact (bad magic)")]
    BadMagic,
    #[error(
        "tree artifact has format version {0}; this build reads version {TREE_VERSION} (upgrade asl)"
    )]
    UnsupportedVersion(u8),
    #[error("tree artifact of {len} bytes ends at byte {at}, inside a field of {needed} bytes")]
    Truncated {
        at: usize,
        needed: usize,
        len: usize,
    },
    #[error("tree artifact has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("entry {index} is invalid: {reason}")]
    InvalidEntry { index: usize, reason: &'static str },
    #[error("entry name {name:?} is invalid: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("entries are not strictly sorted by name at entry {0}")]
    Unsorted(usize),
}

/// Checks that a name is acceptable as one path component inside a tree.
pub fn validate_name(name: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("name longer than 255 bytes");
    }
    if name == b"." || name == b".." {
        return Err("'.' and '..' are not entry names");
    }
    if name.contains(&b'/') {
        return Err("name contains '/'");
    }
    if name.contains(&0) {
        return Err("name contains NUL");
    }
    Ok(())
}

fn check_entry(index: usize, e: &Entry) -> Result<(), TreeError> {
    let bad = |reason| Err(TreeError::InvalidEntry { index, reason });
    if let Err(reason) = validate_name(&e.name) {
        return Err(TreeError::InvalidName {
            name: String::from_utf8_lossy(&e.name).into_owned(),
            reason,
        });
    }
    if e.mode & !0o7777 != 0 {
        return bad("mode has bits outside 0o7777");
    }
    if e.mtime_nsec >= 1_000_000_000 {
        return bad("mtime nanoseconds >= 1e9");
    }
    if e.kind == Kind::Unknown && e.error.is_none() {
        return bad("an entry of unknown type must carry an error");
    }
    if e.content.is_some() && !matches!(e.kind, Kind::File | Kind::Dir) {
        return bad("only files and directories carry a reference");
    }
    if e.kind == Kind::Dir && e.hardlink_group != 0 {
        return bad("directories cannot be hardlinked");
    }
    if e.kind != Kind::File && (!e.holes.is_empty() || e.changed_during_read) {
        return bad("holes and the changed flag are for files only");
    }
    if e.kind != Kind::Symlink && !e.link_target.is_empty() {
        return bad("only symlinks carry a target");
    }
    if e.kind == Kind::Symlink && e.link_target.contains(&0) {
        return bad("symlink target contains NUL");
    }
    if e.kind == Kind::Symlink && e.link_target.is_empty() && e.error.is_none() {
        return bad("symlink without a target and without an error");
    }
    if !matches!(e.kind, Kind::File | Kind::Symlink) && e.size != 0 {
        return bad("only files and symlinks have a size");
    }
    if !e.kind.is_device() && (e.rdev_major != 0 || e.rdev_minor != 0) {
        return bad("only devices carry device numbers");
    }
    if let Some(err) = &e.error
        && err.errno < 0
    {
        return bad("negative errno");
    }
    let mut end = 0u64;
    for (i, h) in e.holes.iter().enumerate() {
        if h.len == 0 {
            return bad("empty hole");
        }
        if i > 0 && h.offset <= end {
            return bad("holes overlap, touch or are unsorted");
        }
        end = match h.offset.checked_add(h.len) {
            Some(x) if x <= e.size => x,
            _ => return bad("hole extends past the file size"),
        };
    }
    for (i, (name, _)) in e.xattrs.iter().enumerate() {
        if name.is_empty() || name.len() > u16::MAX as usize || name.contains(&0) {
            return bad("xattr name empty, too long or containing NUL");
        }
        if i > 0 && e.xattrs[i - 1].0 >= *name {
            return bad("xattrs not strictly sorted by name");
        }
    }
    Ok(())
}

/// Encodes a tree canonically. Fails when the tree violates an invariant of the format
/// (unsorted or duplicate names, invalid names, fields that do not apply to a kind, ...).
pub fn encode_tree(tree: &Tree) -> Result<Vec<u8>, TreeError> {
    encode_entries(tree.entries.iter(), tree.entries.len())
}

/// Encodes `count` entries given in name order (the same bytes as [`encode_tree`] of a
/// tree holding them), without collecting them into a [`Tree`] first.
pub fn encode_entries<'a>(
    entries: impl Iterator<Item = &'a Entry>,
    count: usize,
) -> Result<Vec<u8>, TreeError> {
    let mut out = Vec::with_capacity(12 + count * 96);
    out.extend_from_slice(TREE_MAGIC);
    out.push(TREE_VERSION);
    let n = u32::try_from(count).map_err(|_| TreeError::InvalidEntry {
        index: u32::MAX as usize,
        reason: "more than 2^32-1 entries",
    })?;
    out.extend_from_slice(&n.to_le_bytes());
    let mut prev: Option<&Entry> = None;
    let mut seen = 0usize;
    for (i, e) in entries.enumerate() {
        check_entry(i, e)?;
        if let Some(p) = prev
            && p.name >= e.name
        {
            return Err(TreeError::Unsorted(i));
        }
        encode_entry(&mut out, e).map_err(|reason| TreeError::InvalidEntry { index: i, reason })?;
        prev = Some(e);
        seen += 1;
    }
    if seen != count {
        return Err(TreeError::InvalidEntry {
            index: seen,
            reason: "entry count does not match the entries given",
        });
    }
    Ok(out)
}

fn encode_entry(out: &mut Vec<u8>, e: &Entry) -> Result<(), &'static str> {
    out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
    out.extend_from_slice(&e.name);
    out.push(e.kind.code());
    let mut flags = 0u8;
    if e.changed_during_read {
        flags |= FLAG_CHANGED;
    }
    if e.error.is_some() {
        flags |= FLAG_ERROR;
    }
    if e.content.is_some() {
        flags |= FLAG_REF;
    }
    out.push(flags);
    out.extend_from_slice(&e.mode.to_le_bytes());
    out.extend_from_slice(&e.uid.to_le_bytes());
    out.extend_from_slice(&e.gid.to_le_bytes());
    out.extend_from_slice(&e.mtime_sec.to_le_bytes());
    out.extend_from_slice(&e.mtime_nsec.to_le_bytes());
    out.extend_from_slice(&e.size.to_le_bytes());
    out.extend_from_slice(&e.hardlink_group.to_le_bytes());
    let nx = u32::try_from(e.xattrs.len()).map_err(|_| "too many xattrs")?;
    out.extend_from_slice(&nx.to_le_bytes());
    for (name, value) in &e.xattrs {
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        let vl = u32::try_from(value.len()).map_err(|_| "xattr value longer than 4 GiB")?;
        out.extend_from_slice(&vl.to_le_bytes());
        out.extend_from_slice(value);
    }
    if let Some(r) = &e.content {
        out.extend_from_slice(&r.to_bytes());
    }
    match e.kind {
        Kind::File => {
            let nh = u32::try_from(e.holes.len()).map_err(|_| "too many holes")?;
            out.extend_from_slice(&nh.to_le_bytes());
            for h in &e.holes {
                out.extend_from_slice(&h.offset.to_le_bytes());
                out.extend_from_slice(&h.len.to_le_bytes());
            }
        }
        Kind::Symlink => {
            let tl = u32::try_from(e.link_target.len()).map_err(|_| "symlink target too long")?;
            out.extend_from_slice(&tl.to_le_bytes());
            out.extend_from_slice(&e.link_target);
        }
        Kind::CharDevice | Kind::BlockDevice => {
            out.extend_from_slice(&e.rdev_major.to_le_bytes());
            out.extend_from_slice(&e.rdev_minor.to_le_bytes());
        }
        Kind::Unknown | Kind::Dir | Kind::Fifo | Kind::Socket => {}
    }
    if let Some(err) = &e.error {
        out.push(err.op.code());
        out.extend_from_slice(&(err.errno as u32).to_le_bytes());
    }
    Ok(())
}

/// A bounds-checked reader over the artifact bytes.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TreeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or(TreeError::Truncated {
                at: self.pos,
                needed: n,
                len: self.b.len(),
            })?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], TreeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, TreeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, TreeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, TreeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, TreeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, TreeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }
}

/// Decodes a tree artifact. Never panics; accepts only canonical encodings.
pub fn decode_tree(bytes: &[u8]) -> Result<Tree, TreeError> {
    let mut c = Cursor { b: bytes, pos: 0 };
    let count = read_header(&mut c)?;
    // Every entry takes at least 47 bytes: never trust the count for preallocation.
    let mut entries: Vec<Entry> = Vec::with_capacity((count as usize).min(c.remaining() / 47));
    for index in 0..count as usize {
        let e = decode_entry(&mut c, index)?;
        check_entry(index, &e)?;
        if let Some(prev) = entries.last()
            && prev.name >= e.name
        {
            return Err(TreeError::Unsorted(index));
        }
        entries.push(e);
    }
    if c.remaining() != 0 {
        return Err(TreeError::TrailingBytes(c.remaining()));
    }
    Ok(Tree { entries })
}

fn read_header(c: &mut Cursor<'_>) -> Result<u32, TreeError> {
    let magic = c.take(7).map_err(|_| TreeError::BadMagic)?;
    if magic != TREE_MAGIC {
        return Err(TreeError::BadMagic);
    }
    let version = c.u8()?;
    if version != TREE_VERSION {
        return Err(TreeError::UnsupportedVersion(version));
    }
    c.u32()
}

fn read_reference(c: &mut Cursor<'_>, index: usize) -> Result<Reference, TreeError> {
    let raw = c.take(2 + DIGEST_LEN)?;
    let r = Reference::from_bytes(raw).map_err(|_| TreeError::InvalidEntry {
        index,
        reason: "reference with an unknown hash id",
    })?;
    Ok(r)
}

fn decode_entry(c: &mut Cursor<'_>, index: usize) -> Result<Entry, TreeError> {
    let bad = |reason| TreeError::InvalidEntry { index, reason };
    let name_len = c.u16()? as usize;
    let name = c.take(name_len)?.to_vec();
    let kind = Kind::from_code(c.u8()?).ok_or(bad("unknown entry type"))?;
    let flags = c.u8()?;
    if flags & !FLAGS_KNOWN != 0 {
        return Err(bad("unknown flag bits"));
    }
    let mut e = Entry::new(name, kind);
    e.changed_during_read = flags & FLAG_CHANGED != 0;
    e.mode = c.u32()?;
    e.uid = c.u32()?;
    e.gid = c.u32()?;
    e.mtime_sec = c.i64()?;
    e.mtime_nsec = c.u32()?;
    e.size = c.u64()?;
    e.hardlink_group = c.u64()?;
    let nx = c.u32()? as usize;
    e.xattrs = Vec::with_capacity(nx.min(c.remaining() / 7));
    for _ in 0..nx {
        let nl = c.u16()? as usize;
        let n = c.take(nl)?.to_vec();
        let vl = c.u32()? as usize;
        let v = c.take(vl)?.to_vec();
        e.xattrs.push((n, v));
    }
    if flags & FLAG_REF != 0 {
        e.content = Some(read_reference(c, index)?);
    }
    match kind {
        Kind::File => {
            let nh = c.u32()? as usize;
            e.holes = Vec::with_capacity(nh.min(c.remaining() / 16));
            for _ in 0..nh {
                let offset = c.u64()?;
                let len = c.u64()?;
                e.holes.push(Hole { offset, len });
            }
        }
        Kind::Symlink => {
            let tl = c.u32()? as usize;
            e.link_target = c.take(tl)?.to_vec();
        }
        Kind::CharDevice | Kind::BlockDevice => {
            e.rdev_major = c.u32()?;
            e.rdev_minor = c.u32()?;
        }
        Kind::Unknown | Kind::Dir | Kind::Fifo | Kind::Socket => {}
    }
    if flags & FLAG_ERROR != 0 {
        let op = Operation::from_code(c.u8()?).ok_or(bad("unknown failed operation"))?;
        let errno = c.u32()?;
        let errno = i32::try_from(errno).map_err(|_| bad("errno out of range"))?;
        e.error = Some(EntryError { op, errno });
    }
    Ok(e)
}

/// Every reference a tree artifact holds (file contents and child trees), in entry order,
/// with the type tag garbage collection should follow it with.
pub fn tree_children(bytes: &[u8]) -> Result<Vec<Reference>, TreeError> {
    Ok(decode_tree(bytes)?
        .entries
        .into_iter()
        .filter_map(|e| e.content)
        .collect())
}

/// Like [`tree_children`], but tells child trees (to be decoded in turn) from file contents.
pub fn tree_children_typed(bytes: &[u8]) -> Result<Vec<(Reference, bool)>, TreeError> {
    Ok(decode_tree(bytes)?
        .entries
        .into_iter()
        .filter_map(|e| e.content.map(|r| (r, e.kind == Kind::Dir)))
        .collect())
}

/// The encoding of an empty tree (also the root of an intake of an empty directory).
pub fn empty_tree_bytes() -> Vec<u8> {
    let mut v = TREE_MAGIC.to_vec();
    v.push(TREE_VERSION);
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

/// The reference of the empty tree under `algo`.
pub fn empty_tree_reference(algo: HashAlgo) -> Reference {
    algo.digest(&empty_tree_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_ref() -> impl Strategy<Value = Reference> {
        (any::<bool>(), any::<[u8; 32]>()).prop_map(|(s, d)| {
            Reference::new(
                if s {
                    HashAlgo::Sha256
                } else {
                    HashAlgo::Blake3
                },
                d,
            )
        })
    }

    fn arb_name() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(1u8..=255, 1..20)
            .prop_filter("valid name", |n| validate_name(n).is_ok())
    }

    fn arb_entry() -> impl Strategy<Value = Entry> {
        (
            arb_name(),
            0u8..8,
            (0u32..0o10000, any::<u32>(), any::<u32>()),
            (any::<i64>(), 0u32..1_000_000_000, any::<u64>()),
            (any::<u64>(), any::<bool>(), proptest::option::of(arb_ref())),
            proptest::collection::btree_map(
                proptest::collection::vec(1u8..=255, 1..8),
                proptest::collection::vec(any::<u8>(), 0..16),
                0..3,
            ),
            (
                proptest::collection::vec(1u8..=255, 1..30),
                any::<u32>(),
                any::<u32>(),
            ),
            proptest::option::of((1u8..=8, 0i32..200)),
            proptest::collection::vec((1u64..100, 1u64..100), 0..4),
        )
            .prop_map(
                |(
                    name,
                    k,
                    (mode, uid, gid),
                    (ms, mn, size),
                    (hl, ch, r),
                    x,
                    (t, ma, mi),
                    err,
                    hs,
                )| {
                    let kind = Kind::from_code(k).unwrap_or(Kind::File);
                    let mut e = Entry::new(name, kind);
                    e.mode = mode;
                    e.uid = uid;
                    e.gid = gid;
                    e.mtime_sec = ms;
                    e.mtime_nsec = mn;
                    e.xattrs = x.into_iter().collect();
                    e.error = err.map(|(op, errno)| EntryError {
                        op: Operation::from_code(op).unwrap_or(Operation::Read),
                        errno,
                    });
                    if kind == Kind::Unknown && e.error.is_none() {
                        e.error = Some(EntryError {
                            op: Operation::Lstat,
                            errno: 2,
                        });
                    }
                    if kind != Kind::Dir {
                        e.hardlink_group = hl;
                    }
                    match kind {
                        Kind::File => {
                            e.changed_during_read = ch;
                            e.content = r;
                            let mut off = 0u64;
                            for (gap, len) in hs {
                                off += gap;
                                e.holes.push(Hole { offset: off, len });
                                off += len;
                            }
                            e.size = off + size % 1000;
                        }
                        Kind::Dir => e.content = r,
                        Kind::Symlink => {
                            e.size = t.len() as u64;
                            e.link_target = t;
                        }
                        Kind::CharDevice | Kind::BlockDevice => {
                            e.rdev_major = ma;
                            e.rdev_minor = mi;
                        }
                        _ => {}
                    }
                    e
                },
            )
    }

    fn arb_tree() -> impl Strategy<Value = Tree> {
        proptest::collection::vec(arb_entry(), 0..12).prop_map(|mut es| {
            es.sort_by(|a, b| a.name.cmp(&b.name));
            es.dedup_by(|a, b| a.name == b.name);
            Tree { entries: es }
        })
    }

    #[test]
    fn a_truncated_tree_says_where_it_ends() {
        let bytes = empty_tree_bytes();
        assert_eq!(
            decode_tree(&bytes[..10]),
            Err(TreeError::Truncated {
                at: 8,
                needed: 4,
                len: 10
            })
        );
    }

    proptest! {
        #[test]
        fn encode_decode_encode_is_identical(t in arb_tree()) {
            let b = encode_tree(&t).unwrap();
            let d = decode_tree(&b).unwrap();
            prop_assert_eq!(&d, &t);
            prop_assert_eq!(encode_tree(&d).unwrap(), b);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_tree(&b);
            let mut framed = empty_tree_bytes();
            framed.truncate(8);
            framed.extend_from_slice(&b);
            if let Ok(t) = decode_tree(&framed) {
                // Whatever decodes is canonical: it re-encodes to the same bytes.
                prop_assert_eq!(encode_tree(&t).unwrap(), framed);
            }
        }

        #[test]
        fn mutated_valid_trees_decode_canonically_or_fail(
            t in arb_tree(), pos in any::<usize>(), val in any::<u8>()
        ) {
            let mut b = encode_tree(&t).unwrap();
            let i = pos % b.len();
            b[i] = val;
            if let Ok(d) = decode_tree(&b) {
                prop_assert_eq!(encode_tree(&d).unwrap(), b);
            }
        }
    }

    #[test]
    fn unsorted_or_duplicate_names_are_rejected_by_the_encoder() {
        let t = Tree {
            entries: vec![
                Entry::new(b"b".to_vec(), Kind::Fifo),
                Entry::new(b"a".to_vec(), Kind::Fifo),
            ],
        };
        assert_eq!(encode_tree(&t), Err(TreeError::Unsorted(1)));
        let t = Tree {
            entries: vec![
                Entry::new(b"a".to_vec(), Kind::Fifo),
                Entry::new(b"a".to_vec(), Kind::Fifo),
            ],
        };
        assert_eq!(encode_tree(&t), Err(TreeError::Unsorted(1)));
    }

    #[test]
    fn dot_dotdot_slash_and_nul_names_are_rejected() {
        for n in [&b"."[..], b"..", b"a/b", b"a\0", b""] {
            let t = Tree {
                entries: vec![Entry::new(n.to_vec(), Kind::Fifo)],
            };
            assert!(
                matches!(encode_tree(&t), Err(TreeError::InvalidName { .. })),
                "{n:?}"
            );
        }
    }

    #[test]
    fn a_newer_version_is_refused_naming_the_version() {
        let mut b = empty_tree_bytes();
        b[7] = 2;
        assert_eq!(decode_tree(&b), Err(TreeError::UnsupportedVersion(2)));
        assert_eq!(decode_tree(b"NOTATREE\0\0\0\0"), Err(TreeError::BadMagic));
    }

    #[test]
    fn empty_tree_has_the_documented_twelve_bytes() {
        assert_eq!(empty_tree_bytes(), b"ASLTREE\x01\0\0\0\0");
        assert_eq!(encode_tree(&Tree::default()).unwrap(), empty_tree_bytes());
    }

    #[test]
    fn tree_children_lists_file_contents_and_subtrees() {
        let r1 = HashAlgo::Blake3.digest(b"1");
        let r2 = HashAlgo::Blake3.digest(b"2");
        let mut a = Entry::new(b"a".to_vec(), Kind::File);
        a.content = Some(r1);
        let mut d = Entry::new(b"d".to_vec(), Kind::Dir);
        d.content = Some(r2);
        let l = {
            let mut l = Entry::new(b"l".to_vec(), Kind::Symlink);
            l.link_target = b"a".to_vec();
            l.size = 1;
            l
        };
        let t = Tree {
            entries: vec![a, d, l],
        };
        let b = encode_tree(&t).unwrap();
        assert_eq!(tree_children(&b).unwrap(), vec![r1, r2]);
        assert_eq!(
            tree_children_typed(&b).unwrap(),
            vec![(r1, false), (r2, true)]
        );
    }
}
