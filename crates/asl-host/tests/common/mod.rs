//! Generated fake roots for preflight and service tests: /proc/net, /sys/class/net,
//! /sys/module, /proc/self/mountinfo, /etc/asl and a PATH directory with or without `zpool`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub struct FakeRoot {
    pub dir: tempfile::TempDir,
    /// Holds the fake tools; outside the root, as PATH is the process's, not the root's.
    pub bin: tempfile::TempDir,
    /// Where the fake zpool appends its argument lists (outside the root).
    pub zpool_log: PathBuf,
}

impl FakeRoot {
    pub fn new() -> FakeRoot {
        let dir = tempfile::tempdir().unwrap();
        let bin = tempfile::tempdir().unwrap();
        let zpool_log = bin.path().join("zpool.calls");
        let r = FakeRoot {
            dir,
            bin,
            zpool_log,
        };
        for d in [
            "etc/asl",
            "proc/net",
            "proc/self",
            "sys/class/net/lo",
            "sys/module/ext4",
            "run/asl",
            "mnt/asl/local",
        ] {
            std::fs::create_dir_all(r.path().join(d)).unwrap();
        }
        r.write("sys/class/net/lo/operstate", "unknown\n");
        r.write("sys/class/net/lo/type", "772\n");
        r.write("sys/class/net/lo/carrier", "1\n");
        r.write(
            "proc/net/route",
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n",
        );
        r.write(
            "proc/self/mountinfo",
            "22 1 0:21 / / rw,relatime - ext4 /dev/vda rw\n",
        );
        r
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn root(&self) -> asl_host::Root {
        asl_host::Root::new(self.path())
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn conf(&self, text: &str) {
        self.write("etc/asl/asl.conf", text);
    }

    /// eth0 with the given operstate, an IPv4 subnet route, and optionally a default route.
    pub fn link(&self, operstate: &str, default_route: bool) {
        self.write("sys/class/net/eth0/operstate", &format!("{operstate}\n"));
        self.write("sys/class/net/eth0/type", "1\n");
        self.write("sys/class/net/eth0/carrier", "1\n");
        let mut route = String::from(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n",
        );
        if default_route {
            route.push_str("eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n");
        }
        route.push_str("eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");
        self.write("proc/net/route", &route);
    }

    pub fn zfs_module(&self) {
        std::fs::create_dir_all(self.path().join("sys/module/zfs")).unwrap();
    }

    /// A fake `zpool` on PATH that lists `importable` for `zpool import`, `imported` for
    /// `zpool list -H -o name`, and logs every argument list.
    pub fn zpool(&self, importable: &[&str], imported: &[&str]) {
        let mut import_out = String::new();
        for p in importable {
            import_out.push_str(&format!(
                "   pool: {p}\n     id: 1234\n  state: ONLINE\n action: The pool can be imported.\n config:\n\n\t{p} ONLINE\n\n"
            ));
        }
        let import_branch = if importable.is_empty() {
            "echo 'no pools available to import' >&2; exit 1".to_string()
        } else {
            format!("cat <<'EOF'\n{import_out}EOF\nexit 0")
        };
        let script = format!(
            "#!/bin/sh\necho \"$*\" >> '{log}'\n\
             if [ \"$*\" = import ]; then\n{import_branch}\nfi\n\
             if [ \"$*\" = 'list -H -o name' ]; then\nprintf '{list}'\nexit 0\nfi\n\
             echo \"unexpected zpool call: $*\" >&2; exit 2\n",
            log = self.zpool_log.display(),
            list = imported
                .iter()
                .map(|p| format!("{p}\\n"))
                .collect::<String>(),
        );
        let p = self.bin.path().join("zpool");
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The PATH preflight sees: only the fake bin directory.
    pub fn env(&self) -> asl_host::preflight::Env {
        asl_host::preflight::Env {
            path: Some(self.bin.path().as_os_str().to_owned()),
        }
    }

    /// A mountinfo entry for `mount` (in-root path).
    pub fn mounted(&self, mount: &str, fstype: &str, source: &str, opts: &str) {
        let mut t = std::fs::read_to_string(self.path().join("proc/self/mountinfo")).unwrap();
        t.push_str(&format!(
            "90 22 0:50 / {mount} {opts},relatime shared:40 - {fstype} {source} {opts}\n"
        ));
        self.write("proc/self/mountinfo", &t);
    }

    pub fn zpool_calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.zpool_log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Every entry under the root with mode, size, owner and, for files, mtime and content,
    /// for "nothing else changed" comparisons. (A directory's own mtime is left out: adding
    /// the mode file changes it, and any other change inside shows up as an entry anyway.)
    pub fn listing(&self, skip: &[&str]) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        list_into(self.path(), self.path(), skip, &mut out);
        out
    }
}

fn list_into(root: &Path, dir: &Path, skip: &[&str], out: &mut BTreeMap<PathBuf, String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        if skip.iter().any(|s| rel == Path::new(s)) {
            continue;
        }
        let m = std::fs::symlink_metadata(&p).unwrap();
        let content = if m.is_file() {
            String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned()
        } else {
            String::new()
        };
        out.insert(
            rel,
            format!(
                "{:o} {} {}:{} {} {}",
                m.mode(),
                if m.is_dir() { 0 } else { m.len() },
                m.uid(),
                m.gid(),
                if m.is_dir() {
                    String::new()
                } else {
                    format!("{}.{}", m.mtime(), m.mtime_nsec())
                },
                content
            ),
        );
        if m.is_dir() {
            list_into(root, &p, skip, out);
        }
    }
}
