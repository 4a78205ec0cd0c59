//! A small synchronous rtnetlink client: exactly the link operations cables need (veth pair with
//! the peer born in another netns, VLAN, bridge port, up, delete, lookup).
//!
//! Why not the rtnetlink crate: it is async (tokio), which would double the compile time of the
//! binary and add a runtime to a boot path whose whole budget is a few milliseconds. The messages
//! below are the stable kernel ABI of `linux/rtnetlink.h` and `linux/if_link.h`.

use std::io;
use std::os::fd::{OwnedFd, RawFd};

use rustix::io::Errno;
use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, recv, sendto, socket_with,
};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFLA_VLAN_ID: u16 = 1;

const IFF_UP: u32 = 1;
const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;

/// A message under construction: header, ifinfomsg, attributes (with nesting).
#[derive(Debug, Default)]
pub(crate) struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

impl Msg {
    fn new(kind: u16, flags: u16) -> Msg {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        Msg {
            buf,
            nests: Vec::new(),
        }
    }

    /// Appends a `struct ifinfomsg` (family AF_UNSPEC).
    fn ifinfo(&mut self, index: i32, flags: u32, change: u32) -> &mut Self {
        let mut m = [0u8; IFINFOMSG_LEN];
        m[4..8].copy_from_slice(&index.to_ne_bytes());
        m[8..12].copy_from_slice(&flags.to_ne_bytes());
        m[12..16].copy_from_slice(&change.to_ne_bytes());
        self.buf.extend_from_slice(&m);
        self
    }

    fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    fn attr_str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v)
    }

    fn attr_u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    fn begin(&mut self, kind: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.attr(kind | NLA_F_NESTED, &[])
    }

    fn end(&mut self) -> &mut Self {
        if let Some(start) = self.nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn finish(&mut self, seq: u32) -> &[u8] {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.buf
    }
}

/// A NETLINK_ROUTE socket. It stays bound to the network namespace it was created in, which is
/// how cables are configured inside a subhost's netns without moving the process.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        // NETLINK_ROUTE is protocol 0, which rustix spells `None`.
        let fd = socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None,
        )?;
        Ok(Netlink { fd, seq: 0 })
    }

    /// Sends one request and waits for its acknowledgement (or reply, for GETLINK).
    fn request(&mut self, msg: &mut Msg) -> io::Result<Vec<u8>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let data = msg.finish(seq);
        // Port 0 is the kernel.
        sendto(
            &self.fd,
            data,
            SendFlags::empty(),
            &SocketAddrNetlink::new(0, 0),
        )?;
        let mut reply = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match recv(&self.fd, &mut buf[..], RecvFlags::empty()) {
                Ok((n, _)) => n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            let mut off = 0usize;
            while off + NLMSG_HDRLEN <= n {
                let len =
                    u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or([0; 4])) as usize;
                let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                let rseq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap_or([0; 4]));
                if len < NLMSG_HDRLEN || off + len > n {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "malformed netlink reply",
                    ));
                }
                if rseq == seq {
                    if kind == NLMSG_ERROR {
                        let code = i32::from_ne_bytes(
                            buf[off + 16..off + 20].try_into().unwrap_or([0; 4]),
                        );
                        if code == 0 {
                            return Ok(reply);
                        }
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    reply.extend_from_slice(&buf[off..off + len]);
                }
                off += align4(len);
            }
        }
    }

    /// Creates veth pair `host` <-> `peer`, the peer created directly in the netns `peer_ns`
    /// (never visible on the host) with `peer_mac` if given.
    pub fn add_veth(
        &mut self,
        host: &str,
        peer: &str,
        peer_mac: Option<&[u8; 6]>,
        peer_ns: RawFd,
    ) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.ifinfo(0, 0, 0).attr_str(IFLA_IFNAME, host);
        m.begin(IFLA_LINKINFO).attr_str(IFLA_INFO_KIND, "veth");
        m.begin(IFLA_INFO_DATA).begin(VETH_INFO_PEER);
        // The peer's attributes follow its own ifinfomsg inside VETH_INFO_PEER.
        m.ifinfo(0, 0, 0).attr_str(IFLA_IFNAME, peer);
        if let Some(mac) = peer_mac {
            m.attr(IFLA_ADDRESS, mac);
        }
        m.attr_u32(IFLA_NET_NS_FD, peer_ns as u32);
        m.end().end().end();
        self.request(&mut m).map(drop)
    }

    /// Creates VLAN `name` with id `id` on the link with index `parent`.
    pub fn add_vlan(&mut self, name: &str, parent: i32, id: u16) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.ifinfo(0, 0, 0)
            .attr_str(IFLA_IFNAME, name)
            .attr_u32(IFLA_LINK, parent as u32);
        m.begin(IFLA_LINKINFO).attr_str(IFLA_INFO_KIND, "vlan");
        m.begin(IFLA_INFO_DATA)
            .attr(IFLA_VLAN_ID, &id.to_ne_bytes());
        m.end().end();
        self.request(&mut m).map(drop)
    }

    /// Creates a bridge (tests and benchmarks use it; subhosts only attach to bridges).
    pub fn add_bridge(&mut self, name: &str) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.ifinfo(0, 0, 0).attr_str(IFLA_IFNAME, name);
        m.begin(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "bridge")
            .end();
        self.request(&mut m).map(drop)
    }

    /// Brings link `index` up.
    pub fn set_up(&mut self, index: i32) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, 0);
        m.ifinfo(index, IFF_UP, IFF_UP);
        self.request(&mut m).map(drop)
    }

    /// Makes link `index` a port of the bridge with index `master`.
    pub fn set_master(&mut self, index: i32, master: i32) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, 0);
        m.ifinfo(index, 0, 0).attr_u32(IFLA_MASTER, master as u32);
        self.request(&mut m).map(drop)
    }

    /// Deletes link `name`. A missing link is `ErrorKind::NotFound` (ENODEV).
    pub fn delete(&mut self, name: &str) -> io::Result<()> {
        let mut m = Msg::new(RTM_DELLINK, 0);
        m.ifinfo(0, 0, 0).attr_str(IFLA_IFNAME, name);
        self.request(&mut m).map(drop).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENODEV) {
                io::Error::new(io::ErrorKind::NotFound, format!("no link named {name}"))
            } else {
                e
            }
        })
    }

    /// Index of link `name` in this socket's netns; None if it does not exist.
    pub fn index(&mut self, name: &str) -> io::Result<Option<i32>> {
        let mut m = Msg::new(RTM_GETLINK, 0);
        m.ifinfo(0, 0, 0).attr_str(IFLA_IFNAME, name);
        match self.request(&mut m) {
            Ok(reply) if reply.len() >= NLMSG_HDRLEN + IFINFOMSG_LEN => {
                let at = NLMSG_HDRLEN + 4;
                Ok(Some(i32::from_ne_bytes(
                    reply[at..at + 4].try_into().unwrap_or([0; 4]),
                )))
            }
            Ok(_) => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Like `index`, but a missing link is an error naming it.
    pub fn need_index(&mut self, name: &str) -> io::Result<i32> {
        self.index(name)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no link named {name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_carry_their_total_length() {
        let mut m = Msg::new(RTM_NEWLINK, 0);
        m.ifinfo(0, 0, 0);
        m.begin(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "veth")
            .end();
        let bytes = m.finish(7).to_vec();
        assert_eq!(
            u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize,
            bytes.len()
        );
        let nest = NLMSG_HDRLEN + IFINFOMSG_LEN;
        // nest header (4) + kind attr header (4) + "veth\0" padded to 8 = 16
        assert_eq!(u16::from_ne_bytes([bytes[nest], bytes[nest + 1]]), 16);
        assert_eq!(
            u16::from_ne_bytes([bytes[nest + 2], bytes[nest + 3]]),
            IFLA_LINKINFO | NLA_F_NESTED
        );
        assert_eq!(&bytes[nest + 8..nest + 13], b"veth\0");
    }

    #[test]
    fn request_flags_always_ask_for_an_ack() {
        let mut m = Msg::new(RTM_DELLINK, 0);
        let b = m.finish(1).to_vec();
        let flags = u16::from_ne_bytes([b[6], b[7]]);
        assert_eq!(
            flags & (NLM_F_REQUEST | NLM_F_ACK),
            NLM_F_REQUEST | NLM_F_ACK
        );
    }
}
