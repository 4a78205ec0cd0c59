//! The host runtime of the ASL toolkit: what runs on a rescue or authority host around the store.
//!
//! * [`config`] — strict parsers for `/etc/asl/asl.conf`, `federation.conf` and `logging.conf`
//!   (`key = value`, `#` comments). An unknown key or a bad value is an error naming
//!   `file:line`; [`config::check`] validates all three files of a root at once.
//! * [`preflight`] — detects network, ZFS, the local mount and the remote endpoint, maps the
//!   configured `mode` to a decision (`local | remote | operator`) by a documented table and
//!   writes it atomically to `/run/asl/mode`. It never imports a pool, mounts, or writes
//!   anything else.
//! * [`modefile`] — the format of `/run/asl/mode` (decision, `key=value` facts, reason).
//! * [`service`] — the intake service state machine behind `asl-intake --service`: reads the
//!   mode file, hands local intake to a caller-supplied [`service::IntakeBackend`], refuses
//!   remote intake (not available yet), and in operator mode waits, reports its status to
//!   systemd (`sd_notify`) and re-reads the mode file when it changes.
//! * [`units`] — the systemd units `asl-preflight.service` and `asl-intake.service`.
//! * [`overlay`] — the overlay profiles `rescue` (seed 000) and `auth-host` (seed 001):
//!   generation of the canonical tree and the lint that enforces the overlay contract, with
//!   seed 000's rules for units and mounts in [`overlay::rules`].
//!
//! Every entry point takes a root directory ([`Root`]): `/` on a real host, any directory for
//! tests and image building. Absolute paths from configuration files are resolved under it.
//!
//! * [`image`] — building the bootable ISOs of both profiles (`asl-image build`), every step
//!   under `asl-capture`, and comparing two builds (`asl-image diff-builds`).
//!
//! Not here: the store itself (`asl-store`), file-tree intake (`asl-fs`), remote intake.

pub mod config;
pub mod image;
pub mod modefile;
pub mod overlay;
pub mod preflight;
mod root;
pub mod service;
pub mod units;

pub use root::Root;
