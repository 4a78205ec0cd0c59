//! Building the subhost's root inside its new mount namespace, in overlay-boot's order:
//! join the netns, make every mount private, PREMOUNT, the root (overlay, bind or pre-mounted),
//! POSTMOUNT (a minimal /dev, devpts, /sys, a /run tmpfs), SHAREs, hostname, pivot_root into LIVE,
//! detach the old root, mount /proc.
//!
//! Runs in the process that becomes PID 1, after clone and before anything of the subhost runs.
//! The mounts live only in that mount namespace: the host never sees them, and they vanish with
//! the subhost's last process.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use crate::cable::CableSpec;
use crate::config::{Config, Hook, RootKind, Share};
use crate::error::{Error, Result};
use crate::sys::{Sys, flags};

/// Everything root preparation needs, taken from the configuration.
#[derive(Debug, Clone)]
pub struct RootPlan {
    pub name: String,
    pub conf: PathBuf,
    pub base: PathBuf,
    pub kind: RootKind,
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub live: PathBuf,
    pub premount: Hook,
    pub postmount: Hook,
    pub ram_size: Option<String>,
    pub shares: Vec<Share>,
    pub overlay_options: Vec<String>,
    pub readonly_sys: bool,
    /// Subhost-side interface names of the veth cables (for the default interfaces file).
    pub veth_inside: Vec<String>,
}

impl RootPlan {
    pub fn from_config(c: &Config) -> RootPlan {
        RootPlan {
            name: c.name.clone(),
            conf: c.conf.clone(),
            base: c.base.clone(),
            kind: c.root_kind(),
            lower: c.lower.clone(),
            upper: c.upper.clone(),
            work: c.work.clone(),
            live: c.live.clone(),
            premount: c.premount.clone(),
            postmount: c.postmount.clone(),
            ram_size: c.ram_size.clone(),
            shares: c.shares.clone(),
            overlay_options: c.overlay_options.clone(),
            readonly_sys: c.hardening.readonly_sys,
            veth_inside: c
                .cables
                .iter()
                .filter(|k| matches!(k, CableSpec::Veth { .. }))
                .map(|k| k.names(&c.name).inside)
                .collect(),
        }
    }

    fn in_live(&self, p: &str) -> PathBuf {
        self.live.join(p.trim_start_matches('/'))
    }
}

/// The built-in PREMOUNT: give the subhost its own `/etc/network/interfaces` (loopback plus a
/// manual stanza per cable) unless UPPER already has one, so that it does not bring up the host's
/// interfaces configuration. (overlay-boot meant to write the cable stanzas but never did.)
fn builtin_premount(sys: &mut dyn Sys, plan: &RootPlan) -> Result<()> {
    let mut text = String::from(
        "# Written by overlay-boot (asl) because this subhost had no interfaces file.\n\
         auto lo\niface lo inet loopback\n",
    );
    for eth in &plan.veth_inside {
        text.push_str(&format!("\niface {eth} inet manual\n"));
    }
    sys.write_new(&plan.upper.join("etc/network/interfaces"), &text)?;
    Ok(())
}

/// The built-in POSTMOUNT: a small /dev of safe nodes, a private devpts, sysfs, /run tmpfs.
fn builtin_postmount(sys: &mut dyn Sys, plan: &RootPlan) -> Result<()> {
    let nosuid_nodev = flags::NOSUID | flags::NODEV;
    let dev = plan.in_live("dev");
    sys.mkdir_p(&dev, 0o755)?;
    sys.mount(
        Some("dev"),
        &dev,
        Some("tmpfs"),
        flags::NOSUID,
        Some("mode=755,size=1M"),
    )?;
    for (node, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
        ("console", 5, 1),
    ] {
        sys.mknod_char(&dev.join(node), 0o666, major, minor)?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        sys.symlink(target, &dev.join(link))?;
    }
    sys.mkdir_p(&dev.join("shm"), 0o1777)?;
    sys.mkdir_p(&dev.join("pts"), 0o755)?;
    // A new devpts instance: the subhost's ptys are its own, not the host's.
    sys.mount(
        Some("devpts"),
        &dev.join("pts"),
        Some("devpts"),
        flags::NOSUID | flags::NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )?;
    let sysdir = plan.in_live("sys");
    sys.mkdir_p(&sysdir, 0o555)?;
    let ro = if plan.readonly_sys { flags::RDONLY } else { 0 };
    sys.mount(
        Some("sysfs"),
        &sysdir,
        Some("sysfs"),
        nosuid_nodev | flags::NOEXEC | ro,
        None,
    )?;
    if let Some(size) = &plan.ram_size {
        let run = plan.in_live("run");
        sys.mkdir_p(&run, 0o755)?;
        sys.mount(
            Some("run"),
            &run,
            Some("tmpfs"),
            nosuid_nodev,
            Some(&format!("mode=755,size={size}")),
        )?;
        sys.mkdir_p(&run.join("lock"), 0o1777)?;
    }
    Ok(())
}

fn mount_root(sys: &mut dyn Sys, plan: &RootPlan) -> Result<()> {
    match plan.kind {
        RootKind::Overlay => {
            let lower: Vec<String> = plan.lower.iter().map(|p| p.display().to_string()).collect();
            let mut data = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.join(":"),
                plan.upper.display(),
                plan.work.display()
            );
            for o in &plan.overlay_options {
                data.push(',');
                data.push_str(o);
            }
            if plan.overlay_options.iter().any(|o| o == "volatile") {
                // A volatile overlay leaves this marker and refuses to mount again while it
                // exists; asking for `volatile` means accepting that a host crash may lose
                // recent writes, so the marker of the previous run is cleared.
                sys.remove_dir_all(&plan.work.join("work/incompat/volatile"))?;
            }
            // The source is NAME, as in overlay-boot, so mount listings say which subhost it is.
            sys.mount(
                Some(&plan.name),
                &plan.live,
                Some("overlay"),
                0,
                Some(&data),
            )
        }
        RootKind::Bind => {
            let up = plan.upper.display().to_string();
            sys.mount(Some(&up), &plan.live, None, flags::BIND | flags::REC, None)
        }
        RootKind::Premounted => {
            // pivot_root needs a mount point; binding LIVE onto itself makes one if it is not.
            let live = plan.live.display().to_string();
            sys.mount(
                Some(&live),
                &plan.live,
                None,
                flags::BIND | flags::REC,
                None,
            )
        }
    }
}

fn apply_shares(sys: &mut dyn Sys, plan: &RootPlan) -> Result<()> {
    for s in &plan.shares {
        let canon = s.host.canonicalize().unwrap_or_else(|_| s.host.clone());
        if plan.lower.iter().any(|l| l == &canon) {
            // overlay-boot skips a SHARE of LOWER itself: it is already the root.
            continue;
        }
        let target = plan.in_live(&s.inside.display().to_string());
        match sys.is_dir(&s.host) {
            Some(true) => sys.mkdir_p(&target, 0o755)?,
            _ => {
                if let Some(parent) = target.parent() {
                    sys.mkdir_p(parent, 0o755)?;
                }
                sys.touch(&target)?
            }
        }
        let host = s.host.display().to_string();
        sys.mount(Some(&host), &target, None, flags::BIND | flags::REC, None)?;
    }
    Ok(())
}

/// Prepares the root and switches into it. `netns` is the subhost's network namespace; it is
/// joined first so that sysfs shows the subhost's interfaces.
pub fn prepare(sys: &mut dyn Sys, plan: &RootPlan, netns: Option<BorrowedFd<'_>>) -> Result<()> {
    if let Some(fd) = netns {
        sys.setns(
            fd,
            rustix::thread::LinkNameSpaceType::Network,
            &format!("network namespace {}", plan.name),
        )?;
    }
    // Nothing mounted from here on may propagate back to the host.
    sys.mount(
        None,
        Path::new("/"),
        None,
        flags::REC | flags::PRIVATE,
        None,
    )?;
    if plan.kind != RootKind::Premounted {
        match &plan.premount {
            Hook::Builtin => builtin_premount(sys, plan)?,
            Hook::Nothing => {}
            Hook::Command(argv) => {
                let mut argv = argv.clone();
                argv.push(plan.upper.display().to_string());
                sys.run_hook(&argv, &plan.conf, &plan.base)
                    .map_err(|e| Error::Other(format!("PREMOUNT: {e}")))?;
            }
        }
    }
    mount_root(sys, plan)?;
    match &plan.postmount {
        Hook::Builtin => builtin_postmount(sys, plan)?,
        Hook::Nothing => {}
        Hook::Command(argv) => {
            let mut argv = argv.clone();
            argv.push(plan.live.display().to_string());
            sys.run_hook(&argv, &plan.conf, &plan.base)
                .map_err(|e| Error::Other(format!("POSTMOUNT: {e}")))?;
        }
    }
    apply_shares(sys, plan)?;
    sys.sethostname(&plan.name)?;
    // pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then drops
    // it, so no directory for the old root is needed inside the subhost.
    sys.chdir(&plan.live)?;
    sys.pivot_root(Path::new("."), Path::new("."))?;
    sys.detach(Path::new("."))?;
    sys.chdir(Path::new("/"))?;
    sys.mkdir_p(Path::new("/proc"), 0o555)?;
    sys.mount(
        Some("proc"),
        Path::new("/proc"),
        Some("proc"),
        flags::NOSUID | flags::NODEV | flags::NOEXEC,
        None,
    )?;
    if plan.readonly_sys {
        let ps = Path::new("/proc/sys");
        sys.mount(Some("/proc/sys"), ps, None, flags::BIND, None)?;
        sys.mount(
            None,
            ps,
            None,
            flags::BIND | flags::REMOUNT | flags::RDONLY,
            None,
        )?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sys::recorder::Recorder;
    use std::os::fd::AsFd;

    pub(crate) fn plan(kind: RootKind) -> RootPlan {
        RootPlan {
            name: "web".into(),
            conf: "/s/web.conf".into(),
            base: "/s".into(),
            kind,
            lower: vec!["/".into()],
            upper: "/s/root".into(),
            work: "/s/work".into(),
            live: "/s/live".into(),
            premount: Hook::Builtin,
            postmount: Hook::Builtin,
            ram_size: Some("50M".into()),
            overlay_options: Vec::new(),
            shares: vec![Share {
                host: "/srv/data".into(),
                inside: "/data".into(),
                line: 3,
            }],
            readonly_sys: false,
            veth_inside: vec!["eth0".into()],
        }
    }

    #[test]
    fn boot_steps_run_in_overlay_boot_order() {
        let mut r = Recorder::default();
        let netns = std::fs::File::open("/dev/null").unwrap();
        prepare(&mut r, &plan(RootKind::Overlay), Some(netns.as_fd())).unwrap();
        let order = [
            "setns network namespace web",
            "mount - - / 0x44000",
            "write /s/root/etc/network/interfaces",
            "mount overlay web /s/live 0x0 lowerdir=/,upperdir=/s/root,workdir=/s/work",
            "mount tmpfs dev /s/live/dev",
            "mount devpts",
            "mount sysfs",
            "mount tmpfs run /s/live/run",
            "mount - /srv/data /s/live/data",
            "hostname web",
            "chdir /s/live",
            "pivot_root . .",
            "detach .",
            "mount proc proc /proc",
        ];
        r.assert_order(&order);
    }

    #[test]
    fn bind_variant_binds_upper_and_premounted_runs_no_premount() {
        let mut r = Recorder::default();
        prepare(&mut r, &plan(RootKind::Bind), None).unwrap();
        r.index("mount - /s/root /s/live 0x5000");
        assert!(!r.has("setns"));
        let mut r = Recorder::default();
        prepare(&mut r, &plan(RootKind::Premounted), None).unwrap();
        assert!(!r.has("write"));
        r.index("mount - /s/live /s/live 0x5000");
    }

    #[test]
    fn hooks_get_upper_and_live_as_their_argument() {
        let mut p = plan(RootKind::Overlay);
        p.premount = Hook::Command(vec!["/bin/pre".into()]);
        p.postmount = Hook::Command(vec!["/bin/post".into(), "-x".into()]);
        let mut r = Recorder::default();
        prepare(&mut r, &p, None).unwrap();
        let pre = r.index("hook /bin/pre /s/root");
        let ov = r.index("mount overlay");
        let post = r.index("hook /bin/post -x /s/live");
        assert!(pre < ov && ov < post);
        // A custom POSTMOUNT replaces the built-in one, as overlay-boot's default script did.
        assert!(!r.has("mount devpts"));
    }

    #[test]
    fn ram_size_none_mounts_no_run_tmpfs_and_readonly_sys_is_read_only() {
        let mut p = plan(RootKind::Overlay);
        p.ram_size = None;
        p.readonly_sys = true;
        let mut r = Recorder::default();
        prepare(&mut r, &p, None).unwrap();
        assert!(!r.calls.iter().any(|c| c.contains("tmpfs run")));
        let sysfs = &r.calls[r.index("mount sysfs")];
        assert!(sysfs.contains(" 0xf "), "{sysfs}");
        r.index("mount - - /proc/sys 0x1021");
    }

    #[test]
    fn volatile_overlay_clears_the_previous_marker_before_mounting() {
        let mut p = plan(RootKind::Overlay);
        p.overlay_options = vec!["volatile".into()];
        let mut r = Recorder::default();
        prepare(&mut r, &p, None).unwrap();
        let rm = r.index("rm -r /s/work/work/incompat/volatile");
        let ov = r.index(
            "mount overlay web /s/live 0x0 lowerdir=/,upperdir=/s/root,workdir=/s/work,volatile",
        );
        assert!(rm < ov);
    }

    #[test]
    fn a_failing_step_stops_before_pivot_root() {
        let mut r = Recorder::failing_on("mount overlay");
        assert!(prepare(&mut r, &plan(RootKind::Overlay), None).is_err());
        assert!(!r.has("pivot_root"));
        assert!(!r.has("hostname"));
    }
}
