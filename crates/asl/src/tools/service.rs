//! `asl-intake --service`: the boot-time service, wiring asl-host's state machine to the store.

use std::path::Path;
use std::process::ExitCode;

use asl_host::service::{
    self, BackendError, IntakeBackend, Notifier, RemoteTarget, ServiceOptions,
};
use asl_store::{InitOptions, Store};

use super::common::{OutputArgs, StoreArg};
use crate::exit::{Code, fail};

/// The local backend: makes sure a usable store is at `local.mount` — opening it read-only,
/// or creating it when the configuration allows — and reports it ready. It never touches a
/// store's unsealed files (a crashed writer's leftovers are the next writer's to clean).
struct LocalStore {
    out: OutputArgs,
    /// `--store` given on the command line overrides local.mount.
    store_override: Option<std::path::PathBuf>,
}

impl IntakeBackend for LocalStore {
    fn run_local(&mut self, store_dir: &Path, create_allowed: bool) -> Result<(), BackendError> {
        let dir = self.store_override.as_deref().unwrap_or(store_dir);
        if !dir.join("config").exists() {
            if !create_allowed {
                return Err(format!(
                    "{} holds no ASL store and asl.conf does not allow creating one (local.create = false)",
                    dir.display()
                )
                .into());
            }
            Store::init(dir, &InitOptions::default())?;
        }
        let store = Store::open(dir)?;
        #[derive(serde::Serialize)]
        struct Ready<'a> {
            store: &'a Path,
            snapshots: usize,
            damage: usize,
        }
        let ready = Ready {
            store: dir,
            snapshots: store.snapshots().len(),
            damage: store.damage_count(),
        };
        self.out.emit(&ready, || {
            format!(
                "local store {} is ready ({} snapshots); take data in with: asl-intake --store {} PATH...\n",
                dir.display(),
                ready.snapshots,
                dir.display()
            )
        })?;
        Ok(())
    }

    /// Reaches the remote store with the client key of the key slot, and reports it ready
    /// with the command that takes data in.
    fn run_remote(&mut self, remote: &RemoteTarget) -> Result<(), BackendError> {
        if !remote.key.exists() {
            return Err(format!(
                "the client key slot {} is empty: put the key this rescue host signs with there \
                 (asl-key generate), and its public key into the server's server.conf",
                remote.key.display()
            )
            .into());
        }
        let key = asl_remote::client::load_key(&remote.key)?;
        let opts = asl_remote::client::Options {
            key: Some(key),
            ca: remote.ca.clone(),
            ..Default::default()
        };
        let r = asl_remote::Remote::connect(&remote.url, opts)?;
        let snapshots = r.snapshots()?.len();
        let writable = r.info().rights.iter().any(|x| x == "write");
        if !writable {
            return Err(format!(
                "the server lets this key read {} but not write it; grant it write in server.conf",
                remote.url
            )
            .into());
        }
        #[derive(serde::Serialize)]
        struct Ready<'a> {
            remote: &'a str,
            snapshots: usize,
        }
        let ready = Ready {
            remote: &remote.url,
            snapshots,
        };
        let key_arg = remote.key.display();
        let ca_arg = remote
            .ca
            .as_ref()
            .map(|c| format!(" --ca {}", c.display()))
            .unwrap_or_default();
        self.out.emit(&ready, || {
            format!(
                "remote store {} is ready ({snapshots} snapshots); take data in with: \
                 asl-intake --remote {} --key {key_arg}{ca_arg} PATH...\n",
                remote.url, remote.url
            )
        })?;
        Ok(())
    }
}

pub fn run_intake_service(
    root: Option<&Path>,
    store: &StoreArg,
    out: OutputArgs,
) -> anyhow::Result<ExitCode> {
    let root = asl_host::Root::new(root.unwrap_or(Path::new("/")));
    let mut backend = LocalStore {
        out,
        store_override: store.store.clone(),
    };
    let notifier = Notifier::from_env();
    let quiet = out.quiet;
    let end = service::run(
        &root,
        &mut backend,
        &notifier,
        &ServiceOptions::default(),
        &mut |status| {
            if !quiet {
                eprintln!("asl-intake: {status}");
            }
        },
    );
    match end {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(fail(Code::Failure, e.to_string())),
    }
}
