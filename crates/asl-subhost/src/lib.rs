//! Subhosts: light containers with an overlay root, compatible with overlay-boot's
//! configuration files and commands, built on direct system calls.
//!
//! Contract:
//! * [`config`] reads overlay-boot's format exactly (first flush-left `VAR=` wins, `!command`
//!   values run from BASE, repeatable `SHARE=`) plus optional cgroup limits and hardening; it
//!   changes nothing on the system.
//! * [`boot::boot`] brings a subhost up: netns `NAME` with lo up, veth cables by netlink (host
//!   `NAME<i>`, subhost `eth<i>`, MAC, bridge, VLAN), PREMOUNT, overlay/bind/pre-mounted root,
//!   POSTMOUNT, SHAREs, new mount/PID/IPC/UTS namespaces, pivot_root (the supervisor stays
//!   outside), hostname NAME, and a Rust PID 1 ([`init`]) that starts the services. It returns
//!   when the subhost is ready or has failed; a failed boot leaves nothing behind.
//! * [`control`] stops (graceful, then TERM, then KILL; then every link, the netns, cgroup and
//!   state are removed), enters (`go`) and lists running subhosts. Running subhosts are found
//!   through `/run/subhost/NAME.json` and pidfds ([`state`], [`process`]), never by name matching.
//! * Every privileged step of a boot whose order matters (netns creation, the clone of PID 1,
//!   root preparation, hardening, teardown) goes through the [`sys::Sys`] seam, so its order is
//!   unit-tested.
//!
//! Not a security boundary by default (as overlay-boot): root inside is root. DROP_CAPS,
//! NO_NEW_PRIVS and READONLY_SYS narrow it. Needs root, Linux ≥ 5.8 (pidfd setns, clone3).
//! The calling process must be single-threaded: boot forks without exec.

pub mod boot;
pub mod cable;
pub mod caps;
pub mod cgroup;
pub mod config;
pub mod control;
pub mod error;
pub mod init;
pub mod log;
pub mod netlink;
pub mod netns;
pub mod process;
pub mod root;
pub mod state;
pub mod sys;
pub mod unit;

pub use boot::{BootOptions, Booted, boot};
pub use config::{Config, RawConfig};
pub use control::{Listed, Stopped, go, list, name_from_arg, stop};
pub use error::{ConfigError, Error};
