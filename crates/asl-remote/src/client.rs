//! The client of `asl-server`: [`Remote`] speaks the API; [`RemoteWriter`] is an
//! [`ArtifactWrite`] that intake writes to, and [`RemoteReader`] an [`ArtifactRead`] as of one
//! snapshot, that restore, `ls`, `cat` and `diff` read from.
//!
//! References are made here, with the store's hash algorithm, exactly as a local intake makes
//! them: the same tree gives the same ids whether taken in locally or remotely. Before
//! anything is sent the server is asked which artifacts it lacks, in batches, so a rerun of
//! a killed intake sends only what did not arrive. Every request is retried with backoff on
//! connection failures and 5xx answers; a commit is retried with the same key, so a lost
//! response never makes two snapshots.

use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use asl_store::{AccessError, ArtifactRead, ArtifactWrite, HashAlgo, Put, Reference, TypeTag};

use crate::api;
use crate::auth;

/// Why a remote operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "'{0}' is not a remote store URL (https://HOST:PORT/STORE, or http:// on a loopback host)"
    )]
    BadUrl(String),
    /// The request did not get an answer. `transient`: the connection failed or broke (the
    /// server may be restarting), worth retrying; otherwise (TLS refused, a bad request)
    /// retrying cannot help.
    #[error("{url}: {message}")]
    Transport {
        url: String,
        message: String,
        transient: bool,
    },
    /// The server answered with an error.
    #[error("{url}: {status} {kind}: {message}")]
    Server {
        url: String,
        status: u16,
        kind: String,
        message: String,
        missing: Vec<String>,
    },
    #[error("{0}")]
    Key(String),
    #[error("{url}: the answer does not parse: {message}")]
    Protocol { url: String, message: String },
    #[error("reading the source failed: {0}")]
    Source(#[source] std::io::Error),
}

impl RemoteError {
    /// The server reports damage (an integrity problem, exit code 3).
    pub fn is_integrity(&self) -> bool {
        matches!(self, RemoteError::Server { kind, .. } if kind == "damaged")
    }
    fn is_transient(&self) -> bool {
        match self {
            RemoteError::Transport { transient, .. } => *transient,
            RemoteError::Server { status, kind, .. } => {
                *status >= 500 && kind != "damaged" && kind != "no-space"
            }
            _ => false,
        }
    }
}

/// How a client reaches a server.
pub struct Options {
    /// The key requests are signed with.
    pub key: Option<asl_prov::sign::Key>,
    /// PEM file of the CA certificates to trust (default: the Mozilla roots).
    pub ca: Option<std::path::PathBuf>,
    /// How long to keep retrying a failing request (connection refused, 5xx).
    pub retry_for: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            key: None,
            ca: None,
            retry_for: Duration::from_secs(60),
        }
    }
}

/// A connection to one store of a server.
pub struct Remote {
    agent: ureq::Agent,
    /// `https://host:port`
    origin: String,
    store: String,
    key: Option<asl_prov::sign::Key>,
    retry_for: Duration,
    info: api::StoreInfo,
    sent: std::sync::atomic::AtomicU64,
}

/// Splits `https://host:port/store` into the origin and the store name.
pub fn parse_url(url: &str) -> Result<(String, String), RemoteError> {
    let bad = || RemoteError::BadUrl(url.to_string());
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let (host, store) = rest.split_once('/').ok_or_else(bad)?;
    let store = store.trim_end_matches('/');
    if store.is_empty() || store.contains('/') || host.is_empty() {
        return Err(bad());
    }
    match scheme {
        "https" => {}
        "http" => {
            let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
            let loopback = name == "localhost"
                || name
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback());
            if !loopback {
                return Err(bad());
            }
        }
        _ => return Err(bad()),
    }
    Ok((format!("{scheme}://{host}"), store.to_string()))
}

impl Remote {
    /// Connects to the store at `url` and reads what it is.
    pub fn connect(url: &str, opts: Options) -> Result<Remote, RemoteError> {
        let (origin, store) = parse_url(url)?;
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(ca) = &opts.ca {
            let pem = std::fs::read(ca)
                .map_err(|e| RemoteError::Key(format!("{}: {e}", ca.display())))?;
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(RemoteError::Key(format!(
                    "{}: no certificate in it",
                    ca.display()
                )));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .tls_config(tls.build())
            .build()
            .new_agent();
        let mut remote = Remote {
            agent,
            origin,
            store,
            key: opts.key,
            retry_for: opts.retry_for,
            info: api::StoreInfo {
                store: String::new(),
                hash: String::new(),
                domain_id: 0,
                rights: Vec::new(),
                api_minor: 0,
                store_id: String::new(),
            },
            sent: std::sync::atomic::AtomicU64::new(0),
        };
        let path = remote.path("");
        remote.info = remote.json("GET", &path, &[])?;
        Ok(remote)
    }

    pub fn info(&self) -> &api::StoreInfo {
        &self.info
    }

    /// The store's hash algorithm.
    pub fn algo(&self) -> Result<HashAlgo, RemoteError> {
        HashAlgo::from_name(&self.info.hash).ok_or_else(|| RemoteError::Protocol {
            url: self.url(""),
            message: format!("unknown hash algorithm '{}'", self.info.hash),
        })
    }

    /// Bytes of artifact data sent so far.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn path(&self, tail: &str) -> String {
        format!("/{}/stores/{}{tail}", api::VERSION, self.store)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// Sends one request (retrying transient failures) and returns status and body.
    fn send(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        extra: &[(&str, String)],
    ) -> Result<(u16, Vec<u8>), RemoteError> {
        self.send_payload(
            method,
            path,
            Payload::Bytes(body),
            &auth::sha256_hex(body),
            extra,
        )
    }

    fn send_payload(
        &self,
        method: &str,
        path: &str,
        body: Payload<'_>,
        content: &str,
        extra: &[(&str, String)],
    ) -> Result<(u16, Vec<u8>), RemoteError> {
        let started = std::time::Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let out = self.send_once(method, path, body, content, extra);
            match out {
                Err(e) if e.is_transient() && started.elapsed() < self.retry_for => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(3));
                }
                other => return other,
            }
        }
    }

    fn send_once(
        &self,
        method: &str,
        path: &str,
        body: Payload<'_>,
        content: &str,
        extra: &[(&str, String)],
    ) -> Result<(u16, Vec<u8>), RemoteError> {
        let url = self.url(path);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(key) = &self.key {
            for (name, value) in auth::sign(key, method, path, content) {
                req = req.header(name, value);
            }
        }
        for (name, value) in extra {
            req = req.header(*name, value);
        }
        let transport = |e: &dyn std::fmt::Display| RemoteError::Transport {
            url: url.clone(),
            message: e.to_string(),
            transient: false,
        };
        let resp = match body {
            Payload::Bytes(b) => self.agent.run(req.body(b).map_err(|e| transport(&e))?),
            Payload::File(mut f) => {
                f.rewind().map_err(RemoteError::Source)?;
                self.agent.run(req.body(f).map_err(|e| transport(&e))?)
            }
        }
        .map_err(|e| RemoteError::Transport {
            url: url.clone(),
            message: e.to_string(),
            transient: is_transient(&e),
        })?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .map_err(|e| RemoteError::Transport {
                url: url.clone(),
                message: e.to_string(),
                transient: is_transient(&e),
            })?;
        if status >= 400 {
            let detail: Option<api::ErrorBody> = serde_json::from_slice(&bytes).ok();
            let (kind, message, missing) = match detail {
                Some(b) => (b.error.kind, b.error.message, b.error.missing),
                None => (
                    "http".into(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                    Vec::new(),
                ),
            };
            return Err(RemoteError::Server {
                url,
                status,
                kind,
                message,
                missing,
            });
        }
        Ok((status, bytes))
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<T, RemoteError> {
        let (_, bytes) = self.send(method, path, body, &[])?;
        serde_json::from_slice(&bytes).map_err(|e| RemoteError::Protocol {
            url: self.url(path),
            message: e.to_string(),
        })
    }

    /// Which of `refs` the store lacks.
    pub fn missing(&self, refs: &[Reference]) -> Result<Vec<Reference>, RemoteError> {
        let mut out = Vec::new();
        for batch in refs.chunks(api::MAX_MISSING_BATCH) {
            let req = api::MissingRequest {
                refs: batch.iter().map(Reference::to_string).collect(),
            };
            let body = serde_json::to_vec(&req).map_err(|e| RemoteError::Protocol {
                url: self.url(""),
                message: e.to_string(),
            })?;
            let resp: api::MissingResponse = self.json("POST", &self.path("/missing"), &body)?;
            for r in resp.missing {
                out.push(r.parse().map_err(|e| RemoteError::Protocol {
                    url: self.url(""),
                    message: format!("{r}: {e}"),
                })?);
            }
        }
        Ok(out)
    }

    /// Uploads small artifacts in one request.
    pub fn upload_batch(
        &self,
        items: &[(Reference, TypeTag, &[u8])],
    ) -> Result<api::UploadResponse, RemoteError> {
        asl_store::storage::crash_points::reached("remote:upload");
        let mut body = Vec::new();
        for (r, t, b) in items {
            api::encode_frame(&mut body, &r.to_string(), t.0, b);
        }
        let resp = self.json("POST", &self.path("/artifacts"), &body)?;
        self.sent
            .fetch_add(body.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(resp)
    }

    /// Uploads one artifact, streamed from a file that holds exactly its bytes, whose
    /// SHA-256 (which the signature covers) is `sha256`.
    pub fn upload_file(
        &self,
        reference: &Reference,
        tag: TypeTag,
        file: &std::fs::File,
        sha256: &str,
    ) -> Result<api::UploadResponse, RemoteError> {
        asl_store::storage::crash_points::reached("remote:upload");
        let path = self.path(&format!("/artifacts/{reference}?tag={}", tag.0));
        let (_, bytes) = self.send_payload("PUT", &path, Payload::File(file), sha256, &[])?;
        let len = file.metadata().map_or(0, |m| m.len());
        self.sent
            .fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        serde_json::from_slice(&bytes).map_err(|e| RemoteError::Protocol {
            url: self.url(&path),
            message: e.to_string(),
        })
    }

    /// Commits `root` as a snapshot; `key` makes retries idempotent.
    pub fn commit(
        &self,
        root: &Reference,
        key: &str,
        meta: asl_store::SnapshotMeta,
    ) -> Result<api::CommitResponse, RemoteError> {
        asl_store::storage::crash_points::reached("remote:commit");
        let req = api::CommitRequest {
            root: root.to_string(),
            key: key.to_string(),
            meta,
        };
        let body = serde_json::to_vec(&req).map_err(|e| RemoteError::Protocol {
            url: self.url(""),
            message: e.to_string(),
        })?;
        self.json("POST", &self.path("/commit"), &body)
    }

    pub fn snapshots(&self) -> Result<Vec<asl_store::Snapshot>, RemoteError> {
        self.json("GET", &self.path("/snapshots"), &[])
    }

    /// The server's verify of the store.
    pub fn verify(&self, read_data: bool) -> Result<serde_json::Value, RemoteError> {
        self.json(
            "POST",
            &self.path(&format!("/verify?read_data={read_data}")),
            &[],
        )
    }

    /// An artifact's bytes as of `snapshot`, or `None` when it is not there.
    pub fn read(
        &self,
        snapshot: Option<u64>,
        reference: &Reference,
    ) -> Result<Option<Vec<u8>>, RemoteError> {
        let q = snapshot
            .map(|s| format!("?snapshot={s}"))
            .unwrap_or_default();
        match self.send(
            "GET",
            &self.path(&format!("/artifacts/{reference}{q}")),
            &[],
            &[],
        ) {
            Ok((_, bytes)) => Ok(Some(bytes)),
            Err(RemoteError::Server { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Remote {
    /// Whether the server has the batched read (API 1.1).
    pub fn has_batched_read(&self) -> bool {
        self.info.api_minor >= 1
    }

    /// Many artifacts as of `snapshot` in as few requests as the server allows: one entry per
    /// reference, in order, `Some` with bytes whose hash was checked here, `None` for those to
    /// read alone with [`Remote::read`] (not visible, longer than a batch takes, unreadable on
    /// the server, or bytes that do not hash to their reference). At most
    /// [`api::MAX_READ_BATCH`] references per request are sent.
    pub fn read_many(
        &self,
        snapshot: Option<u64>,
        refs: &[Reference],
    ) -> Result<Vec<Option<Vec<u8>>>, RemoteError> {
        let q = snapshot
            .map(|s| format!("?snapshot={s}"))
            .unwrap_or_default();
        let path = self.path(&format!("/read{q}"));
        let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(refs.len());
        while out.len() < refs.len() {
            let rest = &refs[out.len()..];
            let batch = &rest[..rest.len().min(api::MAX_READ_BATCH)];
            let req = api::ReadRequest {
                refs: batch.iter().map(Reference::to_string).collect(),
            };
            let body = serde_json::to_vec(&req).map_err(|e| RemoteError::Protocol {
                url: self.url(&path),
                message: e.to_string(),
            })?;
            let (_, answer) = self.send("POST", &path, &body, &[])?;
            let before = out.len();
            for (item, r) in api::ReadItemReader::new(&answer).zip(batch) {
                let item = item.map_err(|e| RemoteError::Protocol {
                    url: self.url(&path),
                    message: e.to_string(),
                })?;
                // The server is not trusted for integrity: bytes that do not hash to their
                // reference are read again alone, where the mismatch is reported.
                let ok = item.status == api::ReadStatus::Found && r.algo().digest(item.bytes) == *r;
                out.push(ok.then(|| item.bytes.to_vec()));
            }
            if out.len() == before {
                return Err(RemoteError::Protocol {
                    url: self.url(&path),
                    message: "a batched read answered no item".into(),
                });
            }
        }
        Ok(out)
    }
}

/// Whether a failed request may succeed when tried again: the connection could not be made
/// or broke off (a server restarting), not a refusal (TLS, protocol).
fn is_transient(e: &ureq::Error) -> bool {
    use std::io::ErrorKind::*;
    match e {
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Timeout(_) => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            ConnectionRefused
                | ConnectionReset
                | ConnectionAborted
                | BrokenPipe
                | UnexpectedEof
                | TimedOut
                | NotConnected
        ),
        _ => false,
    }
}

/// A request body: bytes in memory, or a file sent from its start (again on a retry).
#[derive(Clone, Copy)]
enum Payload<'b> {
    Bytes(&'b [u8]),
    File(&'b std::fs::File),
}

/// A fresh commit key: 16 random bytes, hex.
pub fn new_commit_key() -> String {
    let mut raw = [0u8; 16];
    let _ = rustix::rand::getrandom(&mut raw, rustix::rand::GetRandomFlags::empty());
    hex::encode(raw)
}

fn access(e: RemoteError) -> AccessError {
    match e {
        RemoteError::Source(io) => AccessError::Source(io),
        other => AccessError::Store(Box::new(other)),
    }
}

/// Artifacts waiting to be sent in one batch.
#[derive(Default)]
struct Batch {
    items: Vec<(Reference, TypeTag, Vec<u8>)>,
    bytes: usize,
}

/// Puts of many small artifacts are sent together: one `missing` question and one upload
/// per batch of this size.
const BATCH_BYTES: usize = 8 << 20;
const BATCH_ITEMS: usize = 2_000;
/// Batches sent at once by one writer.
const IN_FLIGHT: usize = 2;

/// A sending slot of a [`RemoteWriter`], given back when dropped (also on an error).
struct SendingSlot<'w, 'a>(&'w RemoteWriter<'a>);

impl Drop for SendingSlot<'_, '_> {
    fn drop(&mut self) {
        let mut n = self.0.sending.lock().unwrap_or_else(|p| p.into_inner());
        *n -= 1;
        self.0.sent.notify_all();
    }
}

/// Artifacts larger than this are read into a temporary file and sent on their own.
const SPOOL_ABOVE: u64 = 4 << 20;

/// An [`ArtifactWrite`] into a remote store. Puts are collected and sent in batches;
/// [`RemoteWriter::finish`] sends the rest, and must be called before committing.
pub struct RemoteWriter<'a> {
    remote: &'a Remote,
    algo: HashAlgo,
    batch: Mutex<Batch>,
    /// Batches being sent now, at most [`IN_FLIGHT`]: while one waits for the server (which
    /// makes it durable, on Garage by PUTs to three nodes) the next is asked about and sent,
    /// and the intake's readers go on filling a third.
    sending: Mutex<usize>,
    /// Signalled when a send ends.
    sent: std::sync::Condvar,
    /// What the server was asked about by [`RemoteWriter::check_present`]: `true` if it held
    /// it then. [`ArtifactWrite::contains`] answers from here before asking.
    known: Mutex<std::collections::HashMap<Reference, bool>>,
}

impl<'a> RemoteWriter<'a> {
    pub fn new(remote: &'a Remote) -> Result<RemoteWriter<'a>, RemoteError> {
        Ok(RemoteWriter {
            algo: remote.algo()?,
            remote,
            batch: Mutex::new(Batch::default()),
            sending: Mutex::new(0),
            sent: std::sync::Condvar::new(),
            known: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Asks the server, in a few batched `missing` requests, which of `refs` it holds, and
    /// remembers the answers for [`ArtifactWrite::contains`]: an intake checks every stat
    /// cache hit with `contains`, which would otherwise be a request per file. Returns how
    /// many the server holds.
    pub fn check_present(&self, refs: &[Reference]) -> Result<usize, RemoteError> {
        let missing: std::collections::HashSet<Reference> =
            self.remote.missing(refs)?.into_iter().collect();
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let mut present = 0;
        for r in refs {
            let has = !missing.contains(r);
            present += usize::from(has);
            known.insert(*r, has);
        }
        Ok(present)
    }

    /// Sends what is still batched, and returns once every batch sent by any thread has
    /// been answered: a commit may follow.
    pub fn finish(&self) -> Result<(), RemoteError> {
        let items = std::mem::take(&mut *self.batch.lock().unwrap_or_else(|p| p.into_inner()));
        self.send(items)?;
        let mut n = self.sending.lock().unwrap_or_else(|p| p.into_inner());
        while *n > 0 {
            n = self.sent.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        Ok(())
    }

    /// Waits for a free sending slot and holds it until the returned guard drops.
    fn sending_slot(&self) -> SendingSlot<'_, 'a> {
        let mut n = self.sending.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= IN_FLIGHT {
            n = self.sent.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
        SendingSlot(self)
    }

    fn send(&self, batch: Batch) -> Result<(), RemoteError> {
        if batch.items.is_empty() {
            return Ok(());
        }
        let _slot = self.sending_slot();
        let refs: Vec<Reference> = batch.items.iter().map(|(r, _, _)| *r).collect();
        let missing: std::collections::HashSet<Reference> =
            self.remote.missing(&refs)?.into_iter().collect();
        let mut chunk: Vec<(Reference, TypeTag, &[u8])> = Vec::new();
        let mut size = 0;
        let mut sent = std::collections::HashSet::new();
        for (r, t, b) in &batch.items {
            if !missing.contains(r) || !sent.insert(*r) {
                continue;
            }
            if size + b.len() > api::MAX_BATCH_BYTES / 2 && !chunk.is_empty() {
                self.remote.upload_batch(&chunk)?;
                chunk.clear();
                size = 0;
            }
            size += b.len() + 64;
            chunk.push((*r, *t, b));
        }
        if !chunk.is_empty() {
            self.remote.upload_batch(&chunk)?;
        }
        Ok(())
    }

    fn queue(&self, reference: Reference, tag: TypeTag, bytes: Vec<u8>) -> Result<(), RemoteError> {
        let full = {
            let mut b = self.batch.lock().unwrap_or_else(|p| p.into_inner());
            b.bytes += bytes.len();
            b.items.push((reference, tag, bytes));
            (b.bytes >= BATCH_BYTES || b.items.len() >= BATCH_ITEMS)
                .then(|| std::mem::take(&mut *b))
        };
        match full {
            Some(batch) => self.send(batch),
            None => Ok(()),
        }
    }
}

impl ArtifactWrite for RemoteWriter<'_> {
    fn algo(&self) -> HashAlgo {
        self.algo
    }

    fn put_bytes(&self, data: &[u8], tag: TypeTag) -> Result<Put, AccessError> {
        let reference = self.algo.digest(data);
        self.queue(reference, tag, data.to_vec()).map_err(access)?;
        Ok(Put {
            reference,
            len: data.len() as u64,
            new_bytes: 0,
            chunks: 0,
            new_chunks: 0,
        })
    }

    fn put_reader(&self, source: &mut dyn Read, tag: TypeTag) -> Result<Put, AccessError> {
        // Read it once, hashing; small artifacts join a batch, large ones go on their own
        // from a temporary file.
        let mut hasher = self.algo.hasher();
        // The body's SHA-256, which a streamed upload's signature covers.
        let mut body_sha = <sha2::Sha256 as sha2::Digest>::new();
        let mut head = Vec::new();
        let mut spool: Option<std::fs::File> = None;
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(AccessError::Source(e)),
            };
            hasher.update(&buf[..n]);
            sha2::Digest::update(&mut body_sha, &buf[..n]);
            len += n as u64;
            match &mut spool {
                Some(f) => f
                    .write_all(&buf[..n])
                    .map_err(|e| access(RemoteError::Source(e)))?,
                None => {
                    head.extend_from_slice(&buf[..n]);
                    if len > SPOOL_ABOVE {
                        let mut f =
                            tempfile::tempfile().map_err(|e| access(RemoteError::Source(e)))?;
                        f.write_all(&head)
                            .map_err(|e| access(RemoteError::Source(e)))?;
                        head = Vec::new();
                        spool = Some(f);
                    }
                }
            }
        }
        let reference = hasher.finish();
        let put = Put {
            reference,
            len,
            new_bytes: 0,
            chunks: 0,
            new_chunks: 0,
        };
        match spool {
            None => {
                self.queue(reference, tag, head).map_err(access)?;
            }
            Some(f) => {
                if !self
                    .remote
                    .missing(&[reference])
                    .map_err(access)?
                    .is_empty()
                {
                    let sha = hex::encode(sha2::Digest::finalize(body_sha));
                    self.remote
                        .upload_file(&reference, tag, &f, &sha)
                        .map_err(access)?;
                }
            }
        }
        Ok(put)
    }

    fn contains(&self, reference: &Reference) -> bool {
        if let Some(has) = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(reference)
        {
            return *has;
        }
        self.remote
            .missing(&[*reference])
            .is_ok_and(|m| m.is_empty())
    }
}

/// An [`ArtifactRead`] of a remote store as of one snapshot.
pub struct RemoteReader<'a> {
    pub remote: &'a Remote,
    pub snapshot: Option<u64>,
}

impl ArtifactRead for RemoteReader<'_> {
    fn read_to(&self, reference: &Reference, out: &mut dyn Write) -> Result<u64, AccessError> {
        let bytes = self
            .remote
            .read(self.snapshot, reference)
            .map_err(access)?
            .ok_or(AccessError::NotFound(*reference))?;
        // The server is not trusted either: the bytes must hash to what was asked for.
        let actual = reference.algo().digest(&bytes);
        if actual != *reference {
            return Err(AccessError::Corrupt {
                reference: *reference,
                actual,
            });
        }
        out.write_all(&bytes).map_err(AccessError::Sink)?;
        Ok(bytes.len() as u64)
    }

    fn artifact_len(&self, reference: &Reference) -> Option<u64> {
        self.remote
            .read(self.snapshot, reference)
            .ok()
            .flatten()
            .map(|b| b.len() as u64)
    }
}

/// Reads a key file made by `asl-key`.
pub fn load_key(path: &Path) -> Result<asl_prov::sign::Key, RemoteError> {
    asl_prov::sign::Key::load(path).map_err(|e| RemoteError::Key(e.to_string()))
}
