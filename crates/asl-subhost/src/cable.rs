//! Virtual cables: the CABLES variable and the interface names it implies.
//!
//! `CABLES= spec spec ...`, each spec `[bridge]=[mac|.vlan]`. The spec at position i is a veth
//! pair with host end `NAME<i>` and subhost end `eth<i>` (the MAC, if given, goes on the subhost
//! end; a bridge, if given, gets the host end). A `.N` spec is VLAN N on the most recent veth
//! cable: `NAME<j>.N` on the host (enslaved to its bridge if one is given) and `eth<j>.N` inside.
//! Positions count every spec, as in overlay-boot, so `= =.10 =` gives NAME0, NAME0.10, NAME2.

use serde::{Deserialize, Serialize};

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CableSpec {
    Veth {
        index: usize,
        bridge: Option<String>,
        mac: Option<[u8; 6]>,
    },
    Vlan {
        /// Index of the veth cable this VLAN runs on.
        parent: usize,
        id: u16,
        bridge: Option<String>,
    },
}

/// The interfaces one cable spec creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CableNames {
    pub host: String,
    pub inside: String,
}

impl CableSpec {
    pub fn names(&self, name: &str) -> CableNames {
        match self {
            CableSpec::Veth { index, .. } => CableNames {
                host: format!("{name}{index}"),
                inside: format!("eth{index}"),
            },
            CableSpec::Vlan { parent, id, .. } => CableNames {
                host: format!("{name}{parent}.{id}"),
                inside: format!("eth{parent}.{id}"),
            },
        }
    }

    pub fn bridge(&self) -> Option<&str> {
        match self {
            CableSpec::Veth { bridge, .. } | CableSpec::Vlan { bridge, .. } => bridge.as_deref(),
        }
    }
}

/// Formats a MAC address the usual way.
pub fn mac_to_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        mac[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

/// Checks an interface name the way the kernel does (length, no `/`, `:` or blanks).
pub fn check_ifname(n: &str) -> Result<(), String> {
    if n.is_empty() || n.len() > IFNAME_MAX {
        return Err(format!(
            "interface name `{n}` must have 1 to {IFNAME_MAX} characters"
        ));
    }
    if n == "." || n == ".." || n.contains(['/', ':']) || n.chars().any(char::is_whitespace) {
        return Err(format!("`{n}` is not a valid interface name"));
    }
    Ok(())
}

/// Parses CABLES for subhost `name`. Errors say which spec is wrong and why.
pub fn parse_cables(name: &str, value: &str) -> Result<Vec<CableSpec>, String> {
    let mut out = Vec::new();
    let mut last_veth: Option<usize> = None;
    for (index, spec) in value.split_whitespace().enumerate() {
        let Some((bridge, right)) = spec.split_once('=') else {
            return Err(format!(
                "cable `{spec}` has no `=`; a cable is `[bridge]=[mac|.vlan]`, e.g. `br0=` or `=`"
            ));
        };
        let bridge = if bridge.is_empty() {
            None
        } else {
            check_ifname(bridge).map_err(|m| format!("cable `{spec}`: bridge {m}"))?;
            Some(bridge.to_string())
        };
        let cable = if let Some(vlan) = right.strip_prefix('.') {
            let id: u16 = vlan
                .parse()
                .ok()
                .filter(|v| (1..=4094).contains(v))
                .ok_or_else(|| format!("cable `{spec}`: VLAN id must be 1 to 4094"))?;
            let parent = last_veth.ok_or_else(|| {
                format!("cable `{spec}`: a VLAN needs an earlier plain cable to run on")
            })?;
            CableSpec::Vlan { parent, id, bridge }
        } else {
            let mac = if right.is_empty() {
                None
            } else {
                let mac = parse_mac(right).ok_or_else(|| {
                    format!("cable `{spec}`: `{right}` is not a MAC address like 02:00:00:00:00:01")
                })?;
                if mac[0] & 1 == 1 {
                    return Err(format!(
                        "cable `{spec}`: {right} is a multicast address; use a unicast one \
                         (first byte even, e.g. 02:...)"
                    ));
                }
                Some(mac)
            };
            last_veth = Some(index);
            CableSpec::Veth { index, bridge, mac }
        };
        let names = cable.names(name);
        check_ifname(&names.host).map_err(|m| format!("cable `{spec}`: host end {m}"))?;
        check_ifname(&names.inside).map_err(|m| format!("cable `{spec}`: subhost end {m}"))?;
        out.push(cable);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_cables_is_no_cable() {
        assert!(parse_cables("web", "").unwrap().is_empty());
    }

    #[test]
    fn plain_bridge_and_mac_specs() {
        let c = parse_cables("web", "= br0=02:00:00:00:0b:01").unwrap();
        assert_eq!(
            c[0],
            CableSpec::Veth {
                index: 0,
                bridge: None,
                mac: None
            }
        );
        assert_eq!(
            c[1],
            CableSpec::Veth {
                index: 1,
                bridge: Some("br0".into()),
                mac: Some([2, 0, 0, 0, 0x0b, 1])
            }
        );
        assert_eq!(c[1].names("web").host, "web1");
        assert_eq!(c[1].names("web").inside, "eth1");
    }

    #[test]
    fn vlan_runs_on_previous_veth_and_positions_count_every_spec() {
        let c = parse_cables("xmpl", "= =.302 br1=").unwrap();
        assert_eq!(c[1].names("xmpl").host, "xmpl0.302");
        assert_eq!(c[1].names("xmpl").inside, "eth0.302");
        assert_eq!(c[2].names("xmpl").host, "xmpl2");
    }

    #[test]
    fn bad_specs_are_rejected_naming_the_spec() {
        for (value, spec) in [
            ("= br0", "br0"),
            ("= =.0", "=.0"),
            ("= =.5000", "=.5000"),
            ("=.3", "=.3"),
            ("= =02:00", "=02:00"),
            ("= =01:00:00:00:00:01", "=01:00:00:00:00:01"),
        ] {
            let e = parse_cables("web", value).unwrap_err();
            assert!(e.contains(&format!("`{spec}`")), "{value}: {e}");
        }
    }

    #[test]
    fn vlan_host_name_longer_than_ifnamsiz_is_rejected() {
        let e = parse_cables("abcdefghijkl", "= =.4000").unwrap_err();
        assert!(e.contains("host end"), "{e}");
    }
}
