//! The systemd template unit `overlay-boot@.service`: `systemctl enable --now overlay-boot@web`
//! keeps the subhost of `/etc/subhost/web.conf` running, with the supervisor in the foreground
//! (`Type=notify`, READY once the services are up) and `overlay-stop` on stop.

use std::path::{Path, PathBuf};

use crate::error::{Result, sys};

/// The unit file as shipped, for binaries installed in /usr/local/bin.
pub const TEMPLATE: &str = include_str!("../units/overlay-boot@.service");

/// File name of the template unit.
pub const UNIT_NAME: &str = "overlay-boot@.service";

/// The unit text with the tools' directory replaced by `bindir`.
pub fn render(bindir: &Path) -> String {
    TEMPLATE.replace("/usr/local/bin/", &format!("{}/", bindir.display()))
}

/// Writes the template unit into `unit_dir` (normally /etc/systemd/system) for tools installed in
/// `bindir`; returns the path written. Run `systemctl daemon-reload` afterwards.
pub fn install(unit_dir: &Path, bindir: &Path) -> Result<PathBuf> {
    let path = unit_dir.join(UNIT_NAME);
    std::fs::create_dir_all(unit_dir).map_err(sys(format!("create {}", unit_dir.display())))?;
    std::fs::write(&path, render(bindir)).map_err(sys(format!("write {}", path.display())))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_unit_runs_the_foreground_supervisor_from_bindir() {
        let text = render(Path::new("/opt/asl/bin"));
        assert!(
            text.contains("ExecStart=/opt/asl/bin/overlay-boot --foreground /etc/subhost/%i.conf")
        );
        assert!(text.contains("ExecStop=/opt/asl/bin/overlay-stop /etc/subhost/%i.conf"));
        assert!(text.contains("Type=notify"));
        assert!(!text.contains("/usr/local/bin"));
    }

    /// systemd's own checker accepts the unit. systemd-analyze comes with the `systemd` package
    /// of scripts/deps/subhost.apt, so its absence is a failure, not a reason to skip.
    #[test]
    fn systemd_analyze_accepts_the_unit() {
        let out = std::process::Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .expect("systemd-analyze (package systemd, scripts/deps/subhost.apt) is installed");
        assert!(out.status.success());
        let dir = tempfile::tempdir().unwrap();
        let bindir = dir.path().join("bin");
        std::fs::create_dir(&bindir).unwrap();
        for tool in ["overlay-boot", "overlay-stop"] {
            std::os::unix::fs::symlink("/bin/true", bindir.join(tool)).unwrap();
        }
        let unit = install(dir.path(), &bindir).unwrap();
        let inst = dir.path().join("overlay-boot@web.service");
        std::fs::copy(&unit, &inst).unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&inst)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // Only complaints about this unit count; the host may lack systemd as PID 1.
        let ours: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("overlay-boot@"))
            .collect();
        assert!(ours.is_empty(), "{err}");
    }
}
