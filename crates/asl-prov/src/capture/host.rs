//! Facts about the host a capture runs on, recorded in every receipt's context: user, umask,
//! host name, kernel, architecture, distribution, and the environment (the values of the
//! allow-listed variables, a digest of every other one).

use std::collections::BTreeMap;

use asl_store::HashAlgo;

use crate::receipt::Context;

/// Environment variables whose values enter the receipt and the action digest: the ones
/// known to change what a build produces (Debian's .buildinfo list, trimmed).
pub const ENV_ALLOW: &[&str] = &[
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_COLLATE",
    "LC_MESSAGES",
    "TZ",
    "SOURCE_DATE_EPOCH",
    "CC",
    "CXX",
    "CPP",
    "CFLAGS",
    "CXXFLAGS",
    "CPPFLAGS",
    "LDFLAGS",
    "MAKEFLAGS",
    "DEB_BUILD_OPTIONS",
    "ARCH",
];

fn uname() -> (String, String) {
    let u = rustix::system::uname();
    let s = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
    (s(u.release()), s(u.machine()))
}

fn distro() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_default()
}

fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.get(2) == Some(&uid.to_string().as_str())).then(|| f[0].to_string())
            })
        })
        .unwrap_or_default()
}

/// Builds the context and the allow-listed environment.
pub(crate) fn context(
    algo: HashAlgo,
    extra_allow: &[String],
) -> (Context, BTreeMap<String, String>) {
    let mut names = Vec::new();
    let mut hashed = BTreeMap::new();
    let mut allowed = BTreeMap::new();
    for (k, v) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        names.push(k.clone());
        if ENV_ALLOW.contains(&k.as_str()) || extra_allow.contains(&k) {
            allowed.insert(k, v.to_string_lossy().into_owned());
        } else {
            hashed.insert(k, algo.digest(v.as_encoded_bytes()).to_string());
        }
    }
    names.sort();
    // umask is read by setting and restoring it; no other thread creates files now.
    let umask = {
        let m = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        rustix::process::umask(m);
        m.as_raw_mode()
    };
    let (uid, gid) = (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    let (kernel, arch) = uname();
    (
        Context {
            uid,
            gid,
            user: user_name(uid),
            umask,
            host: asl_store::snapshot::hostname(),
            kernel,
            arch,
            distro: distro(),
            env_names: names,
            env_hashed: hashed,
        },
        allowed,
    )
}
