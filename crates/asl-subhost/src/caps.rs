//! Capability names (for DROP_CAPS), dropping them from the bounding set, and the hardening of
//! a process as the configuration asks (DROP_CAPS, NO_NEW_PRIVS).

use rustix::io::Errno;
use rustix::thread::{CapabilitySet, remove_capability_from_bounding_set};

use crate::config::Hardening;
use crate::error::{Error, Result};
use crate::sys::Sys;

/// Linux capability names in number order (capability.h); index = capability number.
const NAMES: &[&str] = &[
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// Capability number for `cap_sys_admin`, `CAP_SYS_ADMIN` or `sys_admin`.
pub fn by_name(name: &str) -> Option<u32> {
    let lower = name.to_ascii_lowercase();
    let bare = lower.strip_prefix("cap_").unwrap_or(&lower);
    NAMES.iter().position(|n| *n == bare).map(|i| i as u32)
}

/// Removes capabilities from the calling process's bounding set, so nothing it executes later
/// can hold them. Capabilities unknown to the running kernel are skipped.
pub fn drop_bounding(caps: &[u32]) -> std::io::Result<()> {
    for &c in caps {
        // A number beyond the set is unknown to every kernel, like EINVAL below.
        let Some(bit) = 1u64.checked_shl(c) else {
            continue;
        };
        match remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(bit)) {
            Ok(()) | Err(Errno::INVAL) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Narrows the calling process's privileges: DROP_CAPS leave the bounding set, then
/// NO_NEW_PRIVS is set. A failed drop is an error, since the subhost must not run with
/// capabilities it was meant to lose.
pub fn harden(sys: &mut dyn Sys, hardening: &Hardening) -> Result<()> {
    sys.drop_bounding_caps(&hardening.drop_caps)
        .map_err(|e| Error::Other(format!("cannot drop capabilities: {e}")))?;
    if hardening.no_new_privs {
        let _ = sys.set_no_new_privs();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_map_to_kernel_numbers() {
        assert_eq!(super::by_name("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(super::by_name("net_admin"), Some(12));
        assert_eq!(super::by_name("cap_bpf"), Some(39));
        assert_eq!(super::by_name("cap_nope"), None);
    }
}
