//! Where `asl-admin`'s reading commands read from: a local store, or a remote one
//! (`--remote URL`) through `asl-server`. Both give the snapshot list and a reader per
//! snapshot; what the commands do with them is the same.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use asl_store::{ArtifactRead, Snapshot, Store};
use clap::Args;

use super::common::store_error;
use crate::exit::{Code, fail};

/// How to reach a remote store.
#[derive(Args, Debug, Clone, Default)]
pub struct RemoteArgs {
    /// Work on the store an asl-server serves at URL (https://HOST:PORT/STORE; http:// only
    /// on a loopback host) instead of a local one.
    #[arg(long, value_name = "URL", env = "ASL_REMOTE", global = true)]
    pub remote: Option<String>,
    /// The asl-key file requests to the server are signed with.
    #[arg(long, value_name = "FILE", env = "ASL_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// PEM file of the CA certificates to trust for the server [default: the Mozilla roots].
    #[arg(long, value_name = "FILE", env = "ASL_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// How long to keep retrying a request the server could not answer (connection refused,
    /// 5xx), with backoff, before giving up.
    #[arg(
        long,
        value_name = "SECONDS",
        env = "ASL_REMOTE_RETRY",
        default_value_t = 60,
        global = true
    )]
    pub retry_for: u64,
}

impl RemoteArgs {
    /// Connects when `--remote` was given.
    pub fn connect(&self) -> anyhow::Result<Option<asl_remote::Remote>> {
        let Some(url) = &self.remote else {
            return Ok(None);
        };
        let key = match &self.key {
            Some(k) => Some(asl_remote::client::load_key(k).map_err(remote_error)?),
            None => None,
        };
        let opts = asl_remote::client::Options {
            key,
            ca: self.ca.clone(),
            retry_for: std::time::Duration::from_secs(self.retry_for),
        };
        asl_remote::Remote::connect(url, opts)
            .map(Some)
            .map_err(remote_error)
    }
}

/// A remote failure with its exit code: 3 when the server reports damage, else 1.
pub fn remote_error(e: asl_remote::RemoteError) -> anyhow::Error {
    let code = if e.is_integrity() {
        Code::Integrity
    } else {
        Code::Failure
    };
    fail(code, e.to_string())
}

/// A store to read from.
pub enum Source {
    Local(Box<Store>),
    Remote {
        remote: Box<asl_remote::Remote>,
        snapshots: BTreeMap<u64, Snapshot>,
    },
}

impl Source {
    pub fn remote(remote: asl_remote::Remote) -> anyhow::Result<Source> {
        let snapshots = remote
            .snapshots()
            .map_err(remote_error)?
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        Ok(Source::Remote {
            remote: Box::new(remote),
            snapshots,
        })
    }

    /// The retained snapshots, in id order.
    pub fn snapshots(&self) -> Vec<&Snapshot> {
        match self {
            Source::Local(s) => s.snapshots(),
            Source::Remote { snapshots, .. } => snapshots.values().collect(),
        }
    }

    /// The snapshot a user's name means (an id, `latest`, a label).
    pub fn resolve(&self, name: &str) -> anyhow::Result<&Snapshot> {
        match self {
            Source::Local(store) => super::common::resolve(store, name),
            Source::Remote { remote, snapshots } => asl_store::snapshot::resolve(snapshots, name)
                .map_err(store_error)
                .with_context(|| format!("in remote store {}", remote.info().store)),
        }
    }

    /// A reader of what `snap` saw; `None`: of the current state.
    pub fn reader(&self, snap: Option<&Snapshot>) -> Box<dyn ArtifactRead + '_> {
        match (self, snap) {
            (Source::Local(store), Some(s)) => Box::new(store.reader_at(s)),
            (Source::Local(store), None) => Box::new(store.reader()),
            (Source::Remote { remote, .. }, s) => Box::new(asl_remote::RemoteReader {
                remote,
                snapshot: s.map(|s| s.id),
            }),
        }
    }
}
