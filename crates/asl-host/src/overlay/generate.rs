//! Writing a profile's overlay tree: the binary and its tool links, the configs and units, the
//! library where the profile carries it, root ownership and clamped times, built aside and
//! renamed into place.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::contract::{LIBASL, LIBASL_SONAME, dirs_of};
use super::*;

/// What goes into an overlay besides data: the binary and its tool names.
#[derive(Debug, Clone)]
pub struct OverlayInputs {
    /// The multicall executable, copied to `usr/local/bin/asl`.
    pub binary: PathBuf,
    /// Tool names linked to it (the profile's required tools are always added).
    pub tools: Vec<String>,
    /// When set, every mtime is clamped to this (`SOURCE_DATE_EPOCH`), for reproducible trees.
    pub mtime: Option<i64>,
    /// The C library (`libasl.so` as cargo builds it), copied to `usr/local/lib/libasl.so`
    /// where seed 000 puts it. Only the rescue profile carries it.
    pub libasl: Option<PathBuf>,
}

/// Refuses anything but an ELF shared object, so that a wrong path (the static archive, the
/// header, the binary) fails the build instead of shipping under the library's name.
fn check_shared_library(path: &Path) -> Result<(), OverlayError> {
    let not = |why: &str| OverlayError::NotASharedLibrary {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if !meta.is_file() {
        return Err(not("not a regular file"));
    }
    let mut head = [0u8; 18];
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    if f.read_exact(&mut head).is_err() || head[..4] != *b"\x7fELF" {
        return Err(not("no ELF header"));
    }
    // e_type at offset 16, in the byte order EI_DATA (offset 5) names: 1 little, 2 big.
    let e_type = match head[5] {
        1 => u16::from_le_bytes([head[16], head[17]]),
        2 => u16::from_be_bytes([head[16], head[17]]),
        _ => return Err(not("unknown ELF byte order")),
    };
    const ET_DYN: u16 = 3;
    if e_type != ET_DYN {
        return Err(not("an ELF file, but not a shared object"));
    }
    Ok(())
}

/// Writes the profile's overlay to `out` (which must not exist or be an empty directory). The
/// tree is built next to `out` under a temporary name and renamed into place, so a failure
/// never leaves a half-made overlay at `out`.
pub fn generate(profile: Profile, out: &Path, inputs: &OverlayInputs) -> Result<(), OverlayError> {
    match std::fs::symlink_metadata(out) {
        Ok(m) if m.is_dir() => {
            let mut rd = std::fs::read_dir(out).map_err(io(out))?;
            if rd.next().is_some() {
                return Err(OverlayError::OutExists(out.to_path_buf()));
            }
        }
        Ok(_) => return Err(OverlayError::OutExists(out.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(out)(e)),
    }
    let name = out
        .file_name()
        .ok_or_else(|| OverlayError::NotADirectory(out.to_path_buf()))?
        .to_string_lossy()
        .into_owned();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let tmp = parent.join(format!(".{name}.asl-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let built = build(profile, &tmp, inputs).and_then(|()| {
        if out.exists() {
            std::fs::remove_dir(out).map_err(io(out))?;
        }
        std::fs::rename(&tmp, out).map_err(io(out))
    });
    if built.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    built
}

fn mkdir(p: &Path) -> Result<(), OverlayError> {
    std::fs::create_dir_all(p).map_err(io(p))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).map_err(io(p))
}

fn write_file(p: &Path, content: &[u8], mode: u32) -> Result<(), OverlayError> {
    std::fs::write(p, content).map_err(io(p))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io(p))
}

fn build(profile: Profile, t: &Path, inputs: &OverlayInputs) -> Result<(), OverlayError> {
    mkdir(t)?;
    let library = match &inputs.libasl {
        Some(lib) => {
            if !profile.contract().iter().any(|e| e.kind == Kind::Library) {
                return Err(OverlayError::NoLibraryInProfile(profile));
            }
            check_shared_library(lib)?;
            Some(lib)
        }
        None => None,
    };
    // The library's directory only when the library goes in: an empty usr/local/lib says
    // nothing.
    let entries = profile
        .contract()
        .into_iter()
        .filter(|e| library.is_some() || !matches!(e.kind, Kind::Library | Kind::LibraryLink));
    for d in dirs_of(entries) {
        mkdir(&t.join(d))?;
    }
    // The client key slot holds a private key once the operator fills it: nobody else reads it.
    let key_slot = t.join("etc/asl/keys");
    if key_slot.is_dir() {
        std::fs::set_permissions(&key_slot, std::fs::Permissions::from_mode(0o700))
            .map_err(io(&key_slot))?;
    }
    let bin = t.join("usr/local/bin");
    let asl = bin.join("asl");
    std::fs::copy(&inputs.binary, &asl).map_err(io(&inputs.binary))?;
    std::fs::set_permissions(&asl, std::fs::Permissions::from_mode(0o755)).map_err(io(&asl))?;
    let mut tools: BTreeSet<String> = inputs.tools.iter().cloned().collect();
    tools.extend(profile.generated_tools());
    tools.remove("asl");
    for tool in tools {
        if tool.is_empty() || tool.contains('/') {
            continue;
        }
        let link = bin.join(&tool);
        // Hard links: one inode, so the image carries the binary once.
        std::fs::hard_link(&asl, &link).map_err(io(&link))?;
    }
    if let Some(lib) = library {
        let dest = t.join(LIBASL);
        std::fs::copy(lib, &dest).map_err(io(lib))?;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644))
            .map_err(io(&dest))?;
        // The file name the seed gives is the link-time name; programs linked with -lasl
        // record the soname and load that, so it goes in too, as install-libasl.sh does.
        let soname = t.join(LIBASL_SONAME);
        std::os::unix::fs::symlink("libasl.so", &soname).map_err(io(&soname))?;
    }
    for (path, content) in profile.configs() {
        write_file(&t.join(path), content.as_bytes(), 0o644)?;
    }
    let sys = t.join("etc/systemd/system");
    for (name, content) in units::all() {
        if profile.units().contains(&name) {
            write_file(&sys.join(name), content.as_bytes(), 0o644)?;
            // What `systemctl enable` does, without needing systemctl at build time.
            let link = sys.join("multi-user.target.wants").join(name);
            std::os::unix::fs::symlink(format!("../{name}"), &link).map_err(io(&link))?;
        }
    }
    // As root the files are already root's; chown anyway so a umask or setgid parent
    // directory cannot leak another group into the image.
    let is_root = builds_as_root();
    walk(t, &mut |p, _| {
        if is_root {
            std::os::unix::fs::lchown(p, Some(0), Some(0)).map_err(io(p))?;
        }
        if let Some(secs) = inputs.mtime {
            set_mtime(p, secs).map_err(io(p))?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Whether the image is built as root, as the C library answers: under fakeroot, whose
/// preloaded library answers `geteuid` with 0, it is, and that is how `asl-image` builds a
/// root-owned image without privileges (the chowns go through the C library too, and
/// fakeroot records them). rustix asks the kernel directly and would see through fakeroot,
/// so this one call stays on libc.
pub fn builds_as_root() -> bool {
    // SAFETY: geteuid takes no arguments, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() == 0 }
}

/// Sets `p`'s access and modification times to `secs` (a symlink its own, not its target's).
pub(crate) fn set_mtime(p: &Path, secs: i64) -> std::io::Result<()> {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    // SYMLINK_NOFOLLOW: symlinks get their own time, targets untouched.
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// Visits every entry under `dir` (not following symlinks), deepest first so that directory
/// times set by `f` are not disturbed by later changes inside them.
pub(super) fn walk(
    dir: &Path,
    f: &mut dyn FnMut(&Path, &std::fs::Metadata) -> Result<(), OverlayError>,
) -> Result<(), OverlayError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let m = std::fs::symlink_metadata(&p).map_err(io(&p))?;
        if m.is_dir() {
            walk(&p, f)?;
        }
        f(&p, &m)?;
    }
    let m = std::fs::symlink_metadata(dir).map_err(io(dir))?;
    f(dir, &m)
}
