//! # asl-auth — the offline authority of ASL domains, and the rescue operation
//!
//! Contract:
//! * [`config`] parses the authority host's `config.yaml` (ASL/AUTH-HOST-CONFIG/1) with
//!   errors that name `file:line` and warnings for unknown fields.
//! * [`policy`] is the DomainPolicy and its canonical hash (ASL/POLICY-HASH/1).
//! * [`sealed`] holds keys as artifacts: a public key, and a private key sealed under a
//!   passphrase (Argon2id + ChaCha20-Poly1305). Signing is asl-prov's ed25519 [`asl_prov::sign`].
//! * [`authority`] is the offline root set, `domain_root` certificates and the DAM, and the
//!   validation of that chain; [`admission`] the DAP request, record and decision.
//! * [`host::AuthHost`] runs the authority: genesis, admission, countersigning, key rotation,
//!   audit. [`per`] validates receipts against a DAM. [`rescue`] is the rescue node's side.
//! * Every operation is recorded in the store it acts on as a receipt ([`ops`]); every
//!   refusal names its rule ([`AuthError::rule`]) and changes nothing.
//!
//! Not here: argument parsing and printing (the `asl` binary), the store's internals (only
//! `asl_store`'s `Store`/`Writer`/`Reader`), networking of any kind. The file formats and
//! the decisions taken where the specifications are silent are in `docs/AUTHORITY.md`.

pub mod admission;
pub mod authority;
pub mod config;
pub mod entropy;
pub mod error;
pub mod host;
pub mod offline;
pub mod ops;
pub mod per;
pub mod policy;
pub mod rescue;
pub mod sealed;

pub use entropy::Entropy;
pub use error::{AuthError, Result};
pub use host::AuthHost;
