//! Authority tools: `asl-auth-host` (genesis, admission, countersigning, maintenance),
//! `init-asl-host` (genesis under the seed's script name) and `asl-rescue` (the rescue
//! operation). Thin: parsing and printing here, everything else in `asl_auth`.

use std::path::PathBuf;
use std::process::ExitCode;

use asl_auth::{AuthError, AuthHost, Entropy};
use clap::{Args, CommandFactory, Parser, Subcommand};

use super::Tool;
use super::common::OutputArgs;
use crate::exit::{Code, fail};

pub const TOOLS: &[Tool] = &[
    Tool {
        name: "asl-auth-host",
        command: AuthHostCmd::command,
        run: auth_host,
    },
    Tool {
        name: "init-asl-host",
        command: InitHost::command,
        run: init_host,
    },
    Tool {
        name: "asl-rescue",
        command: Rescue::command,
        run: rescue,
    },
];

/// Maps a library error to the documented exit code: usage 2, integrity 3, else 1.
fn aerr(e: AuthError) -> anyhow::Error {
    let code = match &e {
        AuthError::Usage(_) | AuthError::Config { .. } => Code::Usage,
        AuthError::Store(s) if s.is_integrity() => Code::Integrity,
        _ => Code::Failure,
    };
    fail(code, e.to_string())
}

/// What every authority command shares.
#[derive(Args, Debug, Clone)]
struct HostArgs {
    /// The host's root directory: every path of config.yaml is taken under it [default: /].
    #[arg(long, value_name = "DIR", default_value = "/", global = true)]
    root: PathBuf,
    /// config.yaml [default: ROOT/etc/asl-auth-host/config.yaml].
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// File whose first line is the passphrase that seals (genesis) or opens the private keys.
    #[arg(long, value_name = "FILE", global = true)]
    passphrase_file: Option<PathBuf>,
    /// Act even though a network interface other than loopback is up.
    #[arg(long, global = true)]
    allow_network: bool,
    /// TEST VECTORS ONLY: derive every key, salt and nonce from this 64-hex-digit seed and
    /// stop the clock at the epoch, so that runs are byte-identical. Never for real keys.
    #[arg(long, value_name = "HEX", global = true)]
    fixed_entropy: Option<String>,
}

fn entropy(fixed: &Option<String>) -> anyhow::Result<Entropy> {
    match fixed {
        None => Ok(Entropy::Os),
        Some(h) => {
            let seed: [u8; 32] = hex::decode(h)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| fail(Code::Usage, "--fixed-entropy needs 64 hex digits"))?;
            Ok(Entropy::fixed(seed))
        }
    }
}

fn passphrase(file: &Option<PathBuf>) -> anyhow::Result<Vec<u8>> {
    let Some(f) = file else {
        return Err(fail(
            Code::Usage,
            "this operation needs the passphrase of the private keys: --passphrase-file FILE",
        ));
    };
    let text = std::fs::read(f).map_err(|e| {
        fail(
            Code::Failure,
            format!("cannot read passphrase file {}: {e}", f.display()),
        )
    })?;
    let line = text
        .split(|b| *b == b'\n')
        .next()
        .unwrap_or_default()
        .to_vec();
    if line.is_empty() {
        return Err(fail(
            Code::Usage,
            format!("the passphrase file {} is empty", f.display()),
        ));
    }
    Ok(line)
}

impl HostArgs {
    fn open(&self, out: &OutputArgs) -> anyhow::Result<AuthHost> {
        asl_auth::offline::require_offline(self.allow_network).map_err(aerr)?;
        let config = self.config.clone().unwrap_or_else(|| {
            asl_auth::config::under(&self.root, asl_auth::config::DEFAULT_CONFIG)
        });
        let host = AuthHost::open(&self.root, &config).map_err(aerr)?;
        if !out.quiet {
            for w in &host.config.warnings {
                eprintln!("warning: {w}");
            }
        }
        Ok(host)
    }
}

/// The offline authority host.
#[derive(Parser, Debug)]
#[command(
    name = "asl-auth-host",
    about = "The offline authority host: genesis, admission, countersigning, key rotation, audit",
    long_about = "The offline authority host (ASL/AUTH-HOST/1). It keeps its state as artifacts \
in the store of the config's authority domain, and records every operation there as a \
signed receipt. It refuses to act while a network interface other than loopback is up \
(--allow-network overrides), and every refusal names the rule that failed and changes \
nothing.\n\n\
genesis makes the domain layout (the stores of config.yaml's domains and var/lib/asl/pools), \
the offline root key (a public-key artifact and a passphrase-sealed private-key artifact: \
Argon2id + ChaCha20-Poly1305), each domain's root and signing keys, domain_root \
certificates and DAM, and policy.hash; it runs once. admit decides the admission request on \
a directory standing for removable media (asl-admission/request.json) and writes the signed \
decision back (asl-admission/decision.json). countersign signs the receipts brought on the \
media (asl-receipts/*.json) whose signer the admitted DAM lists with role execute.\n\n\
File formats and rules: docs/AUTHORITY.md.",
    after_help = "Exit codes: 0 done; 1 refused (the message names the rule) or failed; 2 usage or a \
config.yaml error (file:line); 3 audit found a problem.\n\n\
Examples:\n  asl-auth-host --passphrase-file /run/pass genesis\n  \
asl-auth-host --root /tmp/authority --passphrase-file pass genesis\n  \
asl-auth-host --passphrase-file /run/pass admit --media /media/usb\n  \
asl-auth-host --passphrase-file /run/pass countersign --media /media/usb\n  \
asl-auth-host --passphrase-file /run/pass rotate --domain common\n  asl-auth-host audit\n  \
asl-auth-host --passphrase-file /run/pass seal"
)]
struct AuthHostCmd {
    #[command(flatten)]
    host: HostArgs,
    #[command(flatten)]
    out: OutputArgs,
    #[command(subcommand)]
    sub: HostSub,
}

#[derive(Subcommand, Debug)]
enum HostSub {
    /// Create the authority: layout, root key, domain keys, certificates, DAMs, policy.hash.
    Genesis,
    /// Decide the admission request on MEDIA and write the decision back to it.
    Admit {
        /// The directory standing for the removable medium.
        #[arg(long, value_name = "DIR")]
        media: PathBuf,
    },
    /// Countersign the receipts on MEDIA (asl-receipts/*.json).
    Countersign {
        #[arg(long, value_name = "DIR")]
        media: PathBuf,
    },
    /// Rotate a domain's keys: new root and signing keys, certificate and DAM version.
    Rotate {
        /// The domain's name in config.yaml.
        #[arg(long, value_name = "NAME")]
        domain: String,
    },
    /// Verify the authority store and every certificate, DAM and admission record in it.
    Audit,
    /// Seal the current authority state in a signed snapshot of its own.
    Seal,
    /// Check config.yaml and print the policy hash it gives, changing nothing.
    CheckConfig,
}

fn auth_host(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: AuthHostCmd = super::args(m)?;
    run_host(&a.host, &a.out, a.sub)
}

fn run_host(h: &HostArgs, out: &OutputArgs, sub: HostSub) -> anyhow::Result<ExitCode> {
    let host = h.open(out)?;
    let mut ent = entropy(&h.fixed_entropy)?;
    match sub {
        HostSub::Genesis => {
            let pass = passphrase(&h.passphrase_file)?;
            let r = host.genesis(&pass, &mut ent).map_err(aerr)?;
            out.emit(&r, || {
                let mut s = format!(
                    "genesis done: authority store {}\n  offline root key {}\n  policy {}\n",
                    r.authority_store.display(),
                    r.root_key,
                    r.policy_hash
                );
                for (n, d) in &r.domains {
                    s.push_str(&format!(
                        "  domain {n} (id {}): DAM {} ({})\n",
                        d.id, d.bundle, d.dam_hash
                    ));
                }
                s.push_str(&format!(
                    "  receipt {} (snapshot {})\n",
                    r.receipt, r.snapshot
                ));
                s
            })?;
        }
        HostSub::Admit { media } => {
            let pass = passphrase(&h.passphrase_file)?;
            let r = host.admit(&media, &pass, &mut ent).map_err(aerr)?;
            out.emit(&r, || {
                format!(
                    "domain {}: {}{}\n  {}\n  admitted scope: [{}]\n  record {} (epoch {}), decision written to {}\n",
                    r.domain_id,
                    r.decision,
                    r.rule.as_ref().map(|x| format!(" (rule {x})")).unwrap_or_default(),
                    r.reason,
                    r.admitted_scope.join(", "),
                    r.record,
                    r.decision_epoch,
                    r.decision_file.display()
                )
            })?;
        }
        HostSub::Countersign { media } => {
            let pass = passphrase(&h.passphrase_file)?;
            let r = host.countersign(&media, &pass, &mut ent).map_err(aerr)?;
            out.emit(&r, || {
                let mut s = format!("{} receipt(s) countersigned\n", r.countersigned.len());
                for c in &r.countersigned {
                    s.push_str(&format!(
                        "  {} (domain {}) -> {}\n",
                        c.receipt,
                        c.domain_id,
                        c.file.display()
                    ));
                }
                s
            })?;
        }
        HostSub::Rotate { domain } => {
            let pass = passphrase(&h.passphrase_file)?;
            let (e, rec) = host.rotate(&domain, &pass, &mut ent).map_err(aerr)?;
            let v = serde_json::json!({"domain": domain, "entry": e, "receipt": rec.receipt, "snapshot": rec.snapshot_id});
            out.emit(&v, || {
                format!(
                    "domain {domain}: DAM version {} ({}), new root key {}, receipt {}\n",
                    e.dam_version, e.dam_hash, e.root_public, rec.receipt
                )
            })?;
        }
        HostSub::Audit => {
            let problems = host.audit(&ent).map_err(aerr)?;
            let v = serde_json::json!({"ok": problems.is_empty(), "problems": problems});
            out.emit(&v, || {
                if problems.is_empty() {
                    "audit: the authority store and every record in it check out\n".into()
                } else {
                    problems.iter().map(|p| format!("problem: {p}\n")).collect()
                }
            })?;
            if !problems.is_empty() {
                return Ok(Code::Integrity.into());
            }
        }
        HostSub::Seal => {
            let pass = passphrase(&h.passphrase_file)?;
            let rec = host.seal(&pass, &mut ent).map_err(aerr)?;
            let v = serde_json::json!({"receipt": rec.receipt, "snapshot": rec.snapshot_id});
            out.emit(&v, || {
                format!(
                    "authority state sealed in snapshot {} (receipt {})\n",
                    rec.snapshot_id, rec.receipt
                )
            })?;
        }
        HostSub::CheckConfig => {
            let p = host.config.policy();
            let v = serde_json::json!({"config": host.config.file, "policy_hash": p.hash(), "warnings": host.config.warnings});
            out.emit(&v, || {
                format!(
                    "{}: valid; policy hash {}\n",
                    host.config.file.display(),
                    p.hash()
                )
            })?;
        }
    }
    Ok(Code::Ok.into())
}

/// Genesis under the seed's script name.
#[derive(Parser, Debug)]
#[command(
    name = "init-asl-host",
    about = "First-boot initialisation of the authority host (asl-auth-host genesis)",
    long_about = "First-boot initialisation of the offline authority host: the same as \
`asl-auth-host genesis` (the seed's init-asl-host.sh). It refuses to run a second time.",
    after_help = "Exit codes: as asl-auth-host.\n\nExamples:\n  init-asl-host --passphrase-file /run/pass\n  \
init-asl-host --root /tmp/authority --passphrase-file pass"
)]
struct InitHost {
    #[command(flatten)]
    host: HostArgs,
    #[command(flatten)]
    out: OutputArgs,
}

fn init_host(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: InitHost = super::args(m)?;
    run_host(&a.host, &a.out, HostSub::Genesis)
}

/// The rescue operation.
#[derive(Parser, Debug)]
#[command(
    name = "asl-rescue",
    about = "The rescue operation: intake, processing, personal domain, admission, publication",
    long_about = "The rescue operation of a rescue node (ASL/RESCUE-OP/1), in a node directory \
(--node). init makes the personal domain's keys (sealed under the passphrase) and two stores: \
intake/ for untrusted input and personal/ for the new domain. intake copies a tree into the \
node as a capture into intake/ (untrusted: nothing there is signed or published). run \
captures a processing step into personal/, signed by the node's key. mint copies the sealed \
intake captures into personal/, makes the DAM and the admission request and writes it, with \
the signed receipts, to a directory standing for removable media. accept takes the \
authority's decision and countersignatures in. publish copies into a common store what \
admission and the policy allow, and names the rule for the rest. status shows where the \
operation stands. Every phase leaves a receipt.",
    after_help = "Exit codes: 0 done; 1 refused (the rule is named) or failed, or publish refused some \
artifacts; 2 usage.\n\n\
Examples:\n  asl-rescue --node /mnt/rescue --passphrase-file pass init --domain-id 42\n  \
asl-rescue --node /mnt/rescue intake /mnt/oldlaptop/home\n  \
asl-rescue --node /mnt/rescue --passphrase-file pass run --input intake-1 --output out.txt -- sh -c 'sort intake-1/a > out.txt'\n  \
asl-rescue --node /mnt/rescue --passphrase-file pass mint --media /media/usb\n  \
asl-rescue --node /mnt/rescue --passphrase-file pass accept --media /media/usb\n  \
asl-rescue --node /mnt/rescue --passphrase-file pass publish --common /var/lib/asl/common\n  \
asl-rescue --node /mnt/rescue status"
)]
struct Rescue {
    /// The node directory (before the subcommand).
    #[arg(long, value_name = "DIR")]
    node: PathBuf,
    /// File whose first line is the passphrase of the node's keys.
    #[arg(long, value_name = "FILE", global = true)]
    passphrase_file: Option<PathBuf>,
    /// TEST VECTORS ONLY: fixed entropy, as for asl-auth-host.
    #[arg(long, value_name = "HEX", global = true)]
    fixed_entropy: Option<String>,
    #[command(flatten)]
    out: OutputArgs,
    #[command(subcommand)]
    sub: RescueSub,
}

#[derive(Subcommand, Debug)]
enum RescueSub {
    /// Make the node: keys and stores of the personal domain.
    Init {
        /// The personal domain's id (a u32, not 0).
        #[arg(long, value_name = "N")]
        domain_id: u32,
    },
    /// Take in a file or tree as untrusted input (into work/intake-N).
    Intake { source: PathBuf },
    /// Capture a processing step in work/ into the personal store, signed.
    Run {
        /// A declared input, relative to work/; repeatable.
        #[arg(long, value_name = "PATH")]
        input: Vec<PathBuf>,
        /// A declared output, relative to work/; repeatable.
        #[arg(long, value_name = "PATH")]
        output: Vec<PathBuf>,
        /// Do not sign the receipt (it then cannot be published).
        #[arg(long)]
        no_sign: bool,
        #[arg(last = true, required = true, value_name = "ARGV")]
        argv: Vec<String>,
    },
    /// Mint the personal domain and write the admission request to MEDIA.
    Mint {
        #[arg(long, value_name = "DIR")]
        media: PathBuf,
        /// The roles asked for, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "produce,execute,publish")]
        scope: Vec<String>,
    },
    /// Take the authority's decision and countersignatures from MEDIA.
    Accept {
        #[arg(long, value_name = "DIR")]
        media: PathBuf,
        /// The authority's offline root key (hex) to trust; without it the decision's own
        /// root is taken as given.
        #[arg(long, value_name = "HEX")]
        authority_root: Option<String>,
    },
    /// Publish to the common store what admission and the policy allow.
    Publish {
        #[arg(long, value_name = "DIR")]
        common: PathBuf,
    },
    /// Where the rescue operation stands.
    Status,
}

fn rescue(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    use asl_auth::rescue::RescueNode;
    let a: Rescue = super::args(m)?;
    let out = a.out;
    let mut ent = entropy(&a.fixed_entropy)?;
    if let RescueSub::Init { domain_id } = a.sub {
        let pass = passphrase(&a.passphrase_file)?;
        let n = RescueNode::init(&a.node, domain_id, &pass, &mut ent).map_err(aerr)?;
        let v = serde_json::json!({"node": n.dir, "domain_id": n.domain_id});
        out.emit(&v, || {
            format!(
                "rescue node {} for personal domain {domain_id}\n",
                n.dir.display()
            )
        })?;
        return Ok(Code::Ok.into());
    }
    let node = RescueNode::open(&a.node).map_err(aerr)?;
    match a.sub {
        RescueSub::Init { .. } => unreachable!("handled above"),
        RescueSub::Intake { source } => {
            let (c, at) = node.intake(&source).map_err(aerr)?;
            let v = serde_json::json!({"receipt": c.receipt_ref, "snapshot": c.snapshot_id, "path": at});
            out.emit(&v, || {
                format!(
                    "intake of {} (untrusted) into {}: receipt {} (snapshot {})\n",
                    source.display(),
                    at.display(),
                    c.receipt_ref,
                    c.snapshot_id
                )
            })?;
        }
        RescueSub::Run {
            input,
            output,
            no_sign,
            argv,
        } => {
            let key = if no_sign {
                None
            } else {
                Some(
                    node.key("signer", &passphrase(&a.passphrase_file)?)
                        .map_err(aerr)?,
                )
            };
            let c = node.run(argv, input, output, key).map_err(aerr)?;
            let v = serde_json::json!({"receipt": c.receipt_ref, "snapshot": c.snapshot_id, "signed": c.signature.is_some(), "exit_status": c.receipt.exit_status()});
            out.emit(&v, || {
                format!(
                    "step captured: receipt {} (snapshot {}), {}, exit {}\n",
                    c.receipt_ref,
                    c.snapshot_id,
                    if c.signature.is_some() {
                        "signed"
                    } else {
                        "unsigned"
                    },
                    c.receipt.exit_status()
                )
            })?;
            if c.receipt.exit_status() != 0 {
                return Ok(Code::Failure.into());
            }
        }
        RescueSub::Mint { media, scope } => {
            let pass = passphrase(&a.passphrase_file)?;
            let policy = asl_auth::policy::DomainPolicy::default();
            let (req, files) = node
                .mint(&media, scope, &policy, &pass, &mut ent)
                .map_err(aerr)?;
            let v = serde_json::json!({"domain_id": req.body.domain_id, "request_id": req.body.request_id, "files": files});
            out.emit(&v, || {
                let mut s = format!(
                    "personal domain {} minted; admission request written:\n",
                    req.body.domain_id
                );
                for f in &files {
                    s.push_str(&format!("  {}\n", f.display()));
                }
                s
            })?;
        }
        RescueSub::Accept {
            media,
            authority_root,
        } => {
            let pass = passphrase(&a.passphrase_file)?;
            let (d, n) = node
                .accept(&media, authority_root.as_deref(), &pass, &mut ent)
                .map_err(aerr)?;
            let r = &d.record.record;
            let v = serde_json::json!({"decision": r.decision, "admitted_scope": r.admitted_scope, "rule": r.rule, "countersignatures": n});
            out.emit(&v, || {
                format!(
                    "admission: {} (scope {}), {n} countersignature(s) taken in\n",
                    r.decision,
                    r.admitted_scope.join(", ")
                )
            })?;
        }
        RescueSub::Publish { common } => {
            let pass = passphrase(&a.passphrase_file)?;
            let r = node.publish(&common, &pass, &mut ent).map_err(aerr)?;
            out.emit(&r, || {
                let mut s = format!(
                    "{} artifact(s) published to {}\n",
                    r.published.len(),
                    r.common.display()
                );
                for (p, id) in &r.published {
                    s.push_str(&format!("  published {p} {id}\n"));
                }
                for x in &r.refused {
                    s.push_str(&format!(
                        "  refused {} {} by rule {}: {}\n",
                        x.path, x.artifact, x.rule, x.detail
                    ));
                }
                s
            })?;
            if !r.refused.is_empty() {
                return Ok(Code::Failure.into());
            }
        }
        RescueSub::Status => {
            let s = node.status().map_err(aerr)?;
            out.emit(&s, || {
                let mut t = format!(
                    "rescue node {} (personal domain {}): {}\n",
                    s.node.display(),
                    s.domain_id,
                    s.stage
                );
                for p in &s.phases {
                    t.push_str(&format!(
                        "  [{}] {:<11} {}\n",
                        if p.done { "x" } else { " " },
                        p.phase,
                        p.detail
                    ));
                }
                t
            })?;
        }
    }
    Ok(Code::Ok.into())
}
