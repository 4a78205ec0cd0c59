//! The offline check: the authority host refuses to act while a network interface other
//! than loopback is up (ASL/AUTH-HOST/1: "the host stays offline during authority
//! operations"), unless the operator overrides it explicitly.
//!
//! The interfaces are those of the caller's network namespace: their names come from
//! `/proc/self/net/dev` and their flags from the kernel (`SIOCGIFFLAGS`). `/sys/class/net`
//! would not do: it shows the namespace of whoever mounted `/sys`.

use std::os::fd::AsRawFd;

use crate::error::{AuthError, Result};

const PROC_NET_DEV: &str = "/proc/self/net/dev";

/// The interface names of a `/proc/net/dev` text (two header lines, then `name: counters`).
pub fn parse_proc_net_dev(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
        .filter(|n| !n.is_empty())
        .collect()
}

/// Whether interface flags say "up and not loopback".
pub fn up_and_not_loopback(flags: u32) -> bool {
    let up = libc::IFF_UP as u32;
    let lo = libc::IFF_LOOPBACK as u32;
    flags & up != 0 && flags & lo == 0
}

/// The flags of interface `name`, from the kernel.
fn flags(sock: &std::os::fd::OwnedFd, name: &str) -> Result<u32> {
    let bad = |e: std::io::Error| AuthError::io(format!("network interface {name}"), e);
    if name.len() >= libc::IFNAMSIZ {
        return Err(bad(std::io::Error::from(std::io::ErrorKind::InvalidInput)));
    }
    // SAFETY: ifreq is a plain C struct for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name (the name is shorter than
    // IFNAMSIZ and the rest is zero) and writes only ifr_ifru.ifru_flags of the ifreq we own;
    // the socket fd is open for the duration of the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    if rc != 0 {
        return Err(bad(std::io::Error::last_os_error()));
    }
    // SAFETY: after a successful SIOCGIFFLAGS the kernel has written ifru_flags.
    let f = unsafe { req.ifr_ifru.ifru_flags };
    Ok(u32::from(f as u16))
}

/// The non-loopback interfaces that are up in the caller's network namespace.
pub fn interfaces_up() -> Result<Vec<String>> {
    let text = std::fs::read_to_string(PROC_NET_DEV).map_err(|e| AuthError::io(PROC_NET_DEV, e))?;
    let sock = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )
    .map_err(|e| AuthError::io("an AF_INET socket for SIOCGIFFLAGS", e.into()))?;
    let mut up = Vec::new();
    for name in parse_proc_net_dev(&text) {
        match flags(&sock, &name) {
            Ok(f) if up_and_not_loopback(f) => up.push(name),
            Ok(_) => {}
            // Gone between the listing and the question: not up.
            Err(AuthError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => {}
            Err(e) => return Err(e),
        }
    }
    up.sort();
    Ok(up)
}

/// Refuses (rule `offline.network`) when an interface is up and `allow_network` is false.
pub fn require_offline(allow_network: bool) -> Result<()> {
    if allow_network {
        return Ok(());
    }
    let up = interfaces_up()?;
    if !up.is_empty() {
        return Err(AuthError::refused(
            "offline.network",
            format!(
                "network interface(s) {} are up; the authority host acts only offline: take \
                 them down (ip link set DEV down), or pass --allow-network to override",
                up.join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_dev_names_and_up_flags_are_read() {
        let text = "Inter-|   Receive\n face |bytes\n    lo: 1 2 3\n  eth0: 4 5 6\nveth-a@x: 7\n";
        assert_eq!(parse_proc_net_dev(text), ["lo", "eth0", "veth-a@x"]);
        assert!(up_and_not_loopback(0x1003));
        assert!(!up_and_not_loopback(0x9));
        assert!(!up_and_not_loopback(0x1002));
    }
}
