//! # asl-prov — provenance for the ASL store
//!
//! Contract:
//! * [`capture::capture`] runs a command under observation (fanotify as root, ptrace +
//!   seccomp otherwise, or none), stores its declared inputs, outputs, stdout and stderr,
//!   writes an execution receipt (PER, [`receipt::Receipt`]) and one TGK edge
//!   ([`receipt::Edge`]: inputs → receipt → outputs), and commits all of it as a single
//!   snapshot whose root is the edge. A capture that fails before the commit leaves nothing
//!   visible. [`capture::capture_file`] does the same for a file import.
//! * Receipts and edges are canonical JSON ([`canon`]); the action digest covers only what
//!   defines the step (argv, cwd, allow-listed environment, input references).
//! * [`graph`] indexes edges both ways (derived, in memory) and answers "why" / "used by" and
//!   renders the DAG; [`sign`] signs receipts (ed25519 over the PER/SIGNATURE/1 payload);
//!   [`export`] produces in-toto/SLSA documents; [`replay`] re-runs a receipt.
//! * [`children`] lists the references of receipt and edge artifacts for GC and verify.
//!
//! Not here: policy (who may sign), remote transport.

pub mod canon;
pub mod capture;
mod child;
pub mod error;
pub mod export;
pub mod graph;
pub mod keyfmt;
pub mod launch;
pub mod receipt;
pub mod replay;
pub mod sign;
mod stored;
pub mod trace;
pub mod verify;

pub use error::{ProvError, Result};
pub use receipt::{Edge, Receipt, artifact_children, children};
pub use trace::TraceMode;
