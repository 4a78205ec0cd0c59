//! # asl-remote — stores served over the network
//!
//! `asl-server` serves one or more stores (one per domain) over HTTPS, by a versioned API
//! (`docs/REMOTE.md` is its specification, [`api`] its types); clients prove themselves with
//! the ed25519 keys `asl-key` makes ([`auth`]), and `server.conf` gives each key its rights
//! per store ([`config`]). [`client`] is the other side: an [`asl_store::ArtifactWrite`] that
//! intake writes to and an [`asl_store::ArtifactRead`] that restore reads from.
//!
//! Contract: a remote intake gives the same references as a local one of the same tree; the
//! server accepts nothing it has not verified (every artifact is hashed on arrival, a commit
//! is refused until everything its root reaches is stored); what the server acknowledged is
//! durable; a commit retried with its key never makes a second snapshot.
//!
//! A store is served from a local directory or from an S3 bucket ([`s3`]: the store's
//! storage seam on any S3-compatible engine, with a writer lease between servers).
//!
//! Not yet: mTLS client certificates,
//! chunk-level deduplication on the wire for large files (a changed large file is sent
//! whole; the server still stores only its new chunks).

pub mod api;
pub mod auth;
pub mod client;
pub mod config;
pub mod prefetch;
pub mod s3;
pub mod server;

pub use client::{Remote, RemoteError, RemoteReader, RemoteWriter};
pub use config::ServerConf;
pub use prefetch::Prefetch;
pub use server::Server;
