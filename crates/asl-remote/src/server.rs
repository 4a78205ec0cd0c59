//! `asl-server`: serves stores over HTTPS (or plain HTTP on loopback) by the API of
//! [`crate::api`].
//!
//! Each store is opened for writing once, at start, and held: the server is its one writer,
//! so commits from many clients are serialised here. Uploads go into the writer's session
//! and are made durable ([`asl_store::Writer::flush`]) before they are acknowledged, so that
//! what a client was told is stored survives the server's crash. A commit is accepted only
//! when every artifact its root reaches is in the store; the server reads the trees (and
//! receipts) itself, since clients are not trusted. Reads are served from a read-only view
//! refreshed after every commit.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use asl_store::{ArtifactRead, ArtifactWrite, Reference, Store, TypeTag, Writer};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;

use crate::api::{self, ErrorBody, ErrorDetail};
use crate::auth::{AuthError, Claim, ReplayGuard, sha256_hex};
use crate::config::{Right, ServerConf, StoreLocation};
use crate::s3::S3Storage;

/// A failed request: its status and the error body.
#[derive(Debug)]
pub struct ApiFailure {
    status: StatusCode,
    detail: ErrorDetail,
}

impl ApiFailure {
    fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> ApiFailure {
        ApiFailure {
            status,
            detail: ErrorDetail {
                kind: kind.into(),
                message: message.into(),
                missing: Vec::new(),
            },
        }
    }
    fn bad(message: impl Into<String>) -> ApiFailure {
        ApiFailure::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }
    fn store(e: impl std::fmt::Display, enospc: bool) -> ApiFailure {
        if enospc {
            ApiFailure::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "no-space",
                format!("the server's disk is full: {e}"),
            )
        } else {
            ApiFailure::new(StatusCode::INTERNAL_SERVER_ERROR, "server", e.to_string())
        }
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        (self.status, axum::Json(ErrorBody { error: self.detail })).into_response()
    }
}

/// Whether a store error is the disk running full.
fn is_enospc(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
        {
            return true;
        }
        cur = err.source();
    }
    false
}

fn store_failure(e: asl_store::StoreError) -> ApiFailure {
    let full = is_enospc(&e);
    ApiFailure::store(e, full)
}

/// One served store.
struct Served {
    writer: RwLock<Writer>,
    /// The read view, as of the last commit.
    view: RwLock<Arc<Store>>,
    /// Trees (and receipts) whose whole closure a commit has checked: later commits stop
    /// there.
    complete: Mutex<HashSet<Reference>>,
}

struct Shared {
    conf: ServerConf,
    stores: BTreeMap<String, Arc<Served>>,
    replay: ReplayGuard,
}

type Ctx = State<Arc<Shared>>;

/// The server, its stores open.
pub struct Server {
    shared: Arc<Shared>,
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store '{name}' at {path}: {source}")]
    Store {
        name: String,
        path: std::path::PathBuf,
        #[source]
        source: asl_store::StoreError,
    },
    #[error("store '{name}' ({location}): {message}")]
    Backend {
        name: String,
        location: String,
        message: String,
    },
    #[error("{0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl Server {
    /// Opens (creating where missing) every configured store for writing.
    pub fn open(conf: ServerConf) -> Result<Server, StartError> {
        let mut stores = BTreeMap::new();
        for (name, location) in &conf.stores {
            let backend = |message: String| StartError::Backend {
                name: name.clone(),
                location: location.to_string(),
                message,
            };
            let layout = match location {
                StoreLocation::Dir(path) => asl_store::Layout::new(path),
                StoreLocation::S3(s3) => {
                    let loc = s3.location().map_err(|e| backend(e.to_string()))?;
                    let storage = S3Storage::connect(&loc).map_err(|e| backend(e.to_string()))?;
                    let root = storage.root().to_path_buf();
                    asl_store::Layout::on(Arc::new(storage), &root)
                }
            };
            let root = layout.root.clone();
            let failed = |source| StartError::Store {
                name: name.clone(),
                path: root.clone(),
                source,
            };
            // A store in a bucket may still be leased by a server that was killed: its
            // lease expires within one period, so wait up to two before giving up.
            let patience = match location {
                StoreLocation::S3(s3) => std::time::Duration::from_secs(2 * s3.lease_seconds),
                StoreLocation::Dir(_) => std::time::Duration::ZERO,
            };
            let started = std::time::Instant::now();
            let writer = loop {
                match Writer::open_or_init_in(layout.clone(), &Default::default()) {
                    Err(asl_store::StoreError::Locked { .. }) if started.elapsed() < patience => {
                        std::thread::sleep(std::time::Duration::from_millis(500));
                    }
                    other => break other.map_err(failed)?,
                }
            };
            let view = Store::open_in(layout).map_err(failed)?;
            stores.insert(
                name.clone(),
                Arc::new(Served {
                    writer: RwLock::new(writer),
                    view: RwLock::new(Arc::new(view)),
                    complete: Mutex::new(HashSet::new()),
                }),
            );
        }
        Ok(Server {
            shared: Arc::new(Shared {
                conf,
                stores,
                replay: ReplayGuard::default(),
            }),
        })
    }

    fn router(&self) -> Router {
        Router::new()
            .route("/v1/stores/{store}", get(info))
            .route("/v1/stores/{store}/missing", post(missing))
            .route("/v1/stores/{store}/artifacts", post(upload_batch))
            .route(
                "/v1/stores/{store}/artifacts/{reference}",
                get(read_artifact).put(upload_stream),
            )
            .route("/v1/stores/{store}/read", post(read_batch))
            .route("/v1/stores/{store}/commit", post(commit))
            .route("/v1/stores/{store}/snapshots", get(snapshots))
            .route("/v1/stores/{store}/verify", post(verify))
            .with_state(self.shared.clone())
    }

    /// Listens and serves until `shutdown` resolves. `ready` gets the bound address (the
    /// port is chosen by the kernel when the configuration says 0).
    pub async fn serve(
        self,
        ready: impl FnOnce(SocketAddr),
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), StartError> {
        let addr = self.shared.conf.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| StartError::Listen { addr, source })?;
        let tls = match &self.shared.conf.tls {
            Some((cert, key)) => Some(tls_acceptor(cert, key)?),
            None => None,
        };
        let app = self.router();
        ready(bound);
        tokio::pin!(shutdown);
        loop {
            let (tcp, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    // A client that went away before being accepted: nothing to do.
                    Err(_) => continue,
                },
                () = &mut shutdown => return Ok(()),
            };
            let app = app.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = hyper_util::service::TowerToHyperService::new(app);
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                // A connection that fails (a client that hangs up, a bad handshake) concerns
                // that client only.
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            let _ = builder
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await;
                        }
                    }
                    None => {
                        let _ = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                            .await;
                    }
                }
            });
        }
    }
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, StartError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| StartError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(StartError::Tls(format!(
            "{}: no certificate in it",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| StartError::Tls(format!("{}: {e}", key.display())))?;
    // ring, not aws-lc-rs: it builds with no C toolchain beyond cc, on every machine the
    // toolkit targets. rustls marks it deprecated only because it offers no post-quantum key
    // exchange; the classical X25519 handshake it does offer is what ureq clients use too.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StartError::Tls(format!("{}: {e}", cert.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The parts of a request its signature covers (and that say who sent it).
pub struct Envelope {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Envelope {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Envelope, Self::Rejection> {
        Ok(Envelope {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        })
    }
}

/// Authenticates a request and checks that its key holds one of `need` on the store.
/// Returns the store and the claim (whose `content_sha256` the body must match).
fn authorize(
    shared: &Shared,
    store: &str,
    req: &Envelope,
    need: &[Right],
) -> Result<(Arc<Served>, Claim), ApiFailure> {
    let (headers, method, uri) = (&req.headers, &req.method, &req.uri);
    let unauth =
        |e: AuthError| ApiFailure::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string());
    let claim =
        Claim::from_headers(|n| headers.get(n).and_then(|v| v.to_str().ok())).map_err(unauth)?;
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    shared
        .replay
        .check(&claim, method.as_str(), path, |k| {
            shared.conf.keys.contains_key(k)
        })
        .map_err(unauth)?;
    let served = shared.stores.get(store).cloned();
    let rights = shared.conf.rights(&claim.key, store);
    let name = shared
        .conf
        .keys
        .get(&claim.key)
        .cloned()
        .unwrap_or_default();
    match served {
        Some(s) if need.iter().any(|r| rights.contains(r)) => Ok((s, claim)),
        // An unknown store and a store the key may not use look the same from outside.
        _ => Err(ApiFailure::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "key '{name}' may not {} store '{store}'",
                need.iter()
                    .map(|r| r.name())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        )),
    }
}

/// [`authorize`] for a request without a body (which must have signed the empty body's hash).
fn authorize_bodiless(
    shared: &Shared,
    store: &str,
    req: &Envelope,
    need: &[Right],
) -> Result<(Arc<Served>, Claim), ApiFailure> {
    let (served, claim) = authorize(shared, store, req, need)?;
    body_matches(&claim, b"")?;
    Ok((served, claim))
}

fn body_matches(claim: &Claim, body: &[u8]) -> Result<(), ApiFailure> {
    if sha256_hex(body) != claim.content_sha256 {
        return Err(ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the body does not match the signed x-asl-content-sha256",
        ));
    }
    Ok(())
}

async fn buffered(body: Body) -> Result<Bytes, ApiFailure> {
    axum::body::to_bytes(body, api::MAX_BATCH_BYTES)
        .await
        .map_err(|e| {
            ApiFailure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!(
                    "the body is larger than {} bytes or broken: {e}",
                    api::MAX_BATCH_BYTES
                ),
            )
        })
}

fn parse_ref(text: &str) -> Result<Reference, ApiFailure> {
    text.parse::<Reference>()
        .map_err(|e| ApiFailure::bad(format!("'{}' is not a reference: {e}", text.escape_debug())))
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiFailure> + Send + 'static,
) -> Result<T, ApiFailure> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiFailure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server",
            format!("internal error: {e}"),
        )
    })?
}

fn write_lock(s: &Served) -> std::sync::RwLockWriteGuard<'_, Writer> {
    s.writer.write().unwrap_or_else(|p| p.into_inner())
}
fn read_lock(s: &Served) -> std::sync::RwLockReadGuard<'_, Writer> {
    s.writer.read().unwrap_or_else(|p| p.into_inner())
}
fn view(s: &Served) -> Arc<Store> {
    s.view.read().unwrap_or_else(|p| p.into_inner()).clone()
}

async fn info(
    State(sh): Ctx,
    UrlPath(store): UrlPath<String>,
    req: Envelope,
) -> Result<Response, ApiFailure> {
    let (served, claim) = authorize_bodiless(
        &sh,
        &store,
        &req,
        &[Right::Read, Right::Write, Right::Admin],
    )?;
    let v = view(&served);
    let rights = sh.conf.rights(&claim.key, &store);
    Ok(axum::Json(api::StoreInfo {
        store,
        hash: v.config().hash.clone(),
        domain_id: v.config().domain_id,
        rights: rights.iter().map(|r| r.name().to_string()).collect(),
        api_minor: api::API_MINOR,
        store_id: v.config().store_id.clone(),
    })
    .into_response())
}

async fn missing(
    State(sh): Ctx,
    UrlPath(store): UrlPath<String>,
    req: Envelope,
    body: Body,
) -> Result<Response, ApiFailure> {
    let (served, claim) = authorize(&sh, &store, &req, &[Right::Read, Right::Write])?;
    let body = buffered(body).await?;
    body_matches(&claim, &body)?;
    let req: api::MissingRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiFailure::bad(format!("not a missing request: {e}")))?;
    if req.refs.len() > api::MAX_MISSING_BATCH {
        return Err(ApiFailure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("at most {} references per request", api::MAX_MISSING_BATCH),
        ));
    }
    let refs: Vec<Reference> = req
        .refs
        .iter()
        .map(|r| parse_ref(r))
        .collect::<Result<_, _>>()?;
    let missing = blocking(move || {
        let w = read_lock(&served);
        Ok(refs
            .iter()
            .filter(|r| !w.contains(r))
            .map(Reference::to_string)
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(axum::Json(api::MissingResponse { missing }).into_response())
}

/// Stores one artifact and checks that it is the one announced.
fn put_checked(
    w: &Writer,
    announced: &Reference,
    tag: u32,
    bytes: &[u8],
) -> Result<u64, ApiFailure> {
    let put = w
        .put_bytes(bytes, TypeTag(tag))
        .map_err(|e| ApiFailure::store(&e, is_enospc(&e)))?;
    if put.reference != *announced {
        return Err(ApiFailure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "hash-mismatch",
            format!("the bytes sent as {announced} hash to {}", put.reference),
        ));
    }
    Ok(put.new_bytes)
}

/// Makes the session durable before an upload is acknowledged.
fn flush(served: &Served) -> Result<(), ApiFailure> {
    write_lock(served)
        .flush()
        .map(|_| ())
        .map_err(store_failure)
}

async fn upload_batch(
    State(sh): Ctx,
    UrlPath(store): UrlPath<String>,
    req: Envelope,
    body: Body,
) -> Result<Response, ApiFailure> {
    let (served, claim) = authorize(&sh, &store, &req, &[Right::Write])?;
    let body = buffered(body).await?;
    body_matches(&claim, &body)?;
    // Every frame is decoded and every reference parsed before anything is stored.
    let mut frames = Vec::new();
    for f in api::FrameReader::new(&body) {
        let f = f.map_err(|e| ApiFailure::bad(e.to_string()))?;
        frames.push((parse_ref(f.reference)?, f.type_tag, f.bytes));
    }
    let frames: Vec<(Reference, u32, Vec<u8>)> = frames
        .into_iter()
        .map(|(r, t, b)| (r, t, b.to_vec()))
        .collect();
    let resp = blocking(move || {
        let mut resp = api::UploadResponse::default();
        {
            let w = read_lock(&served);
            for (r, tag, bytes) in &frames {
                resp.new_bytes += put_checked(&w, r, *tag, bytes)?;
                resp.artifacts += 1;
            }
        }
        flush(&served)?;
        Ok(resp)
    })
    .await?;
    Ok(axum::Json(resp).into_response())
}

#[derive(serde::Deserialize)]
struct TagQuery {
    tag: Option<u32>,
}

/// A blocking reader fed by the async body, chunk by chunk.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.recv() {
                Ok(b) => self.current = b,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

async fn upload_stream(
    State(sh): Ctx,
    UrlPath((store, reference)): UrlPath<(String, String)>,
    Query(q): Query<TagQuery>,
    req: Envelope,
    body: Body,
) -> Result<Response, ApiFailure> {
    let (served, claim) = authorize(&sh, &store, &req, &[Right::Write])?;
    let announced = parse_ref(&reference)?;
    let tag = TypeTag(q.tag.unwrap_or(0));
    let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(16);
    let writer_side = served.clone();
    let stored = tokio::task::spawn_blocking(move || {
        let w = read_lock(&writer_side);
        let mut source = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        w.put_reader(&mut source, tag)
    });
    // Feed the body to the store, hashing it as it goes; the signature covers its hash.
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut total = 0u64;
    let mut stream = body.into_data_stream();
    let mut failure = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                total += bytes.len() as u64;
                if total > api::MAX_ARTIFACT_BYTES {
                    failure = Some(ApiFailure::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too-large",
                        "the artifact is too large",
                    ));
                    break;
                }
                sha2::Digest::update(&mut hasher, &bytes);
                // The store side stopped reading: its error is reported below.
                let tx = tx.clone();
                if tokio::task::spawn_blocking(move || tx.send(bytes))
                    .await
                    .map_or(true, |r| r.is_err())
                {
                    break;
                }
            }
            Err(e) => {
                failure = Some(ApiFailure::bad(format!("the body broke off: {e}")));
                break;
            }
        }
    }
    drop(tx);
    let put = stored.await.map_err(|e| {
        ApiFailure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server",
            format!("internal error: {e}"),
        )
    })?;
    if let Some(f) = failure {
        return Err(f);
    }
    if hex::encode(sha2::Digest::finalize(hasher)) != claim.content_sha256 {
        return Err(ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the body does not match the signed x-asl-content-sha256",
        ));
    }
    let put = put.map_err(|e| ApiFailure::store(&e, is_enospc(&e)))?;
    if put.reference != announced {
        return Err(ApiFailure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "hash-mismatch",
            format!("the bytes sent as {announced} hash to {}", put.reference),
        ));
    }
    blocking(move || flush(&served)).await?;
    Ok(axum::Json(api::UploadResponse {
        artifacts: 1,
        new_bytes: put.new_bytes,
    })
    .into_response())
}

/// The references `root` reaches that the store lacks (at most 1000), reading every tree
/// and receipt on the way; stops at what an earlier commit found complete. Returns the
/// artifacts walked, which are complete when nothing is missing.
fn closure(
    w: &Writer,
    complete: &HashSet<Reference>,
    root: Reference,
) -> Result<(Vec<Reference>, Vec<Reference>), ApiFailure> {
    let reader = w.reader();
    let mut missing = Vec::new();
    let mut walked = Vec::new();
    let mut seen = HashSet::new();
    let mut todo = vec![root];
    while let Some(r) = todo.pop() {
        if complete.contains(&r) || !seen.insert(r) {
            continue;
        }
        let Some(loc) = reader.locate(&r) else {
            missing.push(r);
            if missing.len() >= 1000 {
                break;
            }
            continue;
        };
        let tag = TypeTag(loc.type_tag);
        if tag == TypeTag::BYTES {
            continue;
        }
        let bytes = reader.read_all(&r).map_err(|e| {
            ApiFailure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "damaged",
                format!("reading {r}: {e}"),
            )
        })?;
        let children = asl_prov::artifact_children(tag, &bytes).map_err(|e| {
            ApiFailure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad-request",
                format!("artifact {r} (type {}) does not decode: {e}", tag.0),
            )
        })?;
        walked.push(r);
        todo.extend(children);
    }
    Ok((missing, walked))
}

async fn commit(
    State(sh): Ctx,
    UrlPath(store): UrlPath<String>,
    req: Envelope,
    body: Body,
) -> Result<Response, ApiFailure> {
    let (served, claim) = authorize(&sh, &store, &req, &[Right::Write])?;
    let body = buffered(body).await?;
    body_matches(&claim, &body)?;
    let req: api::CommitRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiFailure::bad(format!("not a commit request: {e}")))?;
    let root = parse_ref(&req.root)?;
    if req.key.is_empty() || req.key.len() > 128 {
        return Err(ApiFailure::bad(
            "the commit key must be 1 to 128 characters",
        ));
    }
    let resp = blocking(move || {
        let mut w = write_lock(&served);
        // A retry of a commit that was made (its response lost) finds it.
        for id in w.snapshot_ids().into_iter().rev() {
            if let Ok(s) = w.resolve_snapshot(&id.to_string())
                && s.meta.commit_key.as_deref() == Some(req.key.as_str())
            {
                return Ok(api::CommitResponse {
                    snapshot: s.clone(),
                    created: false,
                });
            }
        }
        w.flush().map_err(store_failure)?;
        let complete = served.complete.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (missing, walked) = closure(&w, &complete, root)?;
        if !missing.is_empty() {
            let mut f = ApiFailure::new(
                StatusCode::CONFLICT,
                "incomplete",
                format!(
                    "the snapshot is not complete: {} artifact(s) it reaches are not in the store{}",
                    missing.len(),
                    if missing.len() >= 1000 { " (the first 1000 listed)" } else { "" }
                ),
            );
            f.detail.missing = missing.iter().map(Reference::to_string).collect();
            return Err(f);
        }
        let mut meta = req.meta;
        meta.commit_key = Some(req.key);
        let c = w.commit(Some(root), meta).map_err(store_failure)?;
        served
            .complete
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(walked);
        let fresh = Store::open_in(w.layout().clone()).map_err(store_failure)?;
        *served.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(api::CommitResponse {
            snapshot: c.snapshot,
            created: true,
        })
    })
    .await?;
    let status = if resp.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(resp)).into_response())
}

async fn snapshots(
    State(sh): Ctx,
    UrlPath(store): UrlPath<String>,
    req: Envelope,
) -> Result<Response, ApiFailure> {
    let (served, _) = authorize_bodiless(&sh, &store, &req, &[Right::Read])?;
    let v = view(&served);
    let list: Vec<asl_store::Snapshot> = v.snapshots().into_iter().cloned().collect();
    Ok(axum::Json(list).into_response())
}

#[derive(serde::Deserialize)]
struct ReadQuery {
    snapshot: Option<u64>,
}

/// A sink that keeps bytes `[from, to)` of what is written to it.
struct RangeSink {
    from: u64,
    to: u64,
    at: u64,
    out: Vec<u8>,
}

impl std::io::Write for RangeSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let start = self.at;
        let end = start + buf.len() as u64;
        let lo = self.from.max(start);
        let hi = self.to.min(end);
        if lo < hi {
            self.out
                .extend_from_slice(&buf[(lo - start) as usize..(hi - start) as usize]);
        }
        self.at = end;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `bytes=A-B` or `bytes=A-` of a Range header.
fn parse_range(h: &str, len: u64) -> Option<(u64, u64)> {
    let spec = h.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let from: u64 = a.parse().ok()?;
    let to: u64 = if b.is_empty() {
        len
    } else {
        b.parse::<u64>().ok()?.saturating_add(1).min(len)
    };
    (from < to).then_some((from, to))
}

async fn read_artifact(
    State(sh): Ctx,
    UrlPath((store, reference)): UrlPath<(String, String)>,
    Query(q): Query<ReadQuery>,
    req: Envelope,
) -> Result<Response, ApiFailure> {
    let (served, _) = authorize_bodiless(&sh, &store, &req, &[Right::Read])?;
    let r = parse_ref(&reference)?;
    let range = req
        .headers
        .get(axum::http::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let v = view(&served);
    let (status, bytes, total) = blocking(move || {
        let snap = match q.snapshot {
            Some(id) => Some(v.resolve_snapshot(&id.to_string()).map_err(|_| {
                ApiFailure::new(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    format!("no snapshot {id}"),
                )
            })?),
            None => None,
        };
        let reader = match snap {
            Some(s) => v.reader_at(s),
            None => v.reader(),
        };
        let Some(len) = reader.artifact_len(&r) else {
            return Err(ApiFailure::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!(
                    "artifact {r} is not in the store{}",
                    q.snapshot
                        .map(|s| format!(" as of snapshot {s}"))
                        .unwrap_or_default()
                ),
            ));
        };
        let (from, to, status) = match range.as_deref().and_then(|h| parse_range(h, len)) {
            Some((a, b)) => (a, b, StatusCode::PARTIAL_CONTENT),
            None => (0, len, StatusCode::OK),
        };
        let mut sink = RangeSink {
            from,
            to,
            at: 0,
            out: Vec::new(),
        };
        reader.read_to(&r, &mut sink).map_err(|e| {
            let kind = if e.is_integrity() {
                "damaged"
            } else {
                "server"
            };
            ApiFailure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                kind,
                format!("reading {r}: {e}"),
            )
        })?;
        Ok((status, sink.out, len))
    })
    .await?;
    let mut resp = (status, bytes).into_response();
    if let Ok(v) = total.to_string().parse() {
        resp.headers_mut().insert("x-asl-artifact-length", v);
    }
    Ok(resp)
}

/// A reader of the view as of snapshot `id` (of the current state without it).
fn reader_as_of(v: &Store, id: Option<u64>) -> Result<asl_store::Reader<'_>, ApiFailure> {
    match id {
        Some(id) => {
            let snap = v.resolve_snapshot(&id.to_string()).map_err(|_| {
                ApiFailure::new(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    format!("no snapshot {id}"),
                )
            })?;
            Ok(v.reader_at(snap))
        }
        None => Ok(v.reader()),
    }
}

/// `POST …/read`: many artifacts in one answer, so a restore costs a request per few MiB
/// rather than per file. Every reference is parsed before anything is read; the answer stops
/// early (a prefix) once it holds [`api::MAX_READ_ANSWER`] bytes, and the client asks again.
async fn read_batch(
    State(sh): Ctx,
    UrlPath(store): UrlPath<String>,
    Query(q): Query<ReadQuery>,
    req: Envelope,
    body: Body,
) -> Result<Response, ApiFailure> {
    let (served, claim) = authorize(&sh, &store, &req, &[Right::Read])?;
    let body = buffered(body).await?;
    body_matches(&claim, &body)?;
    let req: api::ReadRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiFailure::bad(format!("not a read request: {e}")))?;
    if req.refs.len() > api::MAX_READ_BATCH {
        return Err(ApiFailure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("at most {} references per read", api::MAX_READ_BATCH),
        ));
    }
    let refs: Vec<Reference> = req
        .refs
        .iter()
        .map(|r| parse_ref(r))
        .collect::<Result<_, _>>()?;
    let v = view(&served);
    let answer = blocking(move || {
        let reader = reader_as_of(&v, q.snapshot)?;
        let mut out = Vec::new();
        let mut data = 0u64;
        let mut bytes = Vec::new();
        for r in &refs {
            if data >= api::MAX_READ_ANSWER {
                break;
            }
            let status = match reader.artifact_len(r) {
                None => api::ReadStatus::NotFound,
                Some(len) if len > api::MAX_READ_ARTIFACT => api::ReadStatus::TooLarge,
                Some(_) => {
                    bytes.clear();
                    match reader.read_to(r, &mut bytes) {
                        Ok(_) => api::ReadStatus::Found,
                        // The client reads it alone and gets the error (and its kind) there.
                        Err(_) => api::ReadStatus::Failed,
                    }
                }
            };
            let payload: &[u8] = if status == api::ReadStatus::Found {
                &bytes
            } else {
                &[]
            };
            data += payload.len() as u64;
            api::encode_read_item(&mut out, status, payload);
        }
        Ok(out)
    })
    .await?;
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        answer,
    )
        .into_response())
}

#[derive(serde::Deserialize)]
struct VerifyQuery {
    read_data: Option<bool>,
}

async fn verify(
    State(sh): Ctx,
    UrlPath(store): UrlPath<String>,
    Query(q): Query<VerifyQuery>,
    req: Envelope,
) -> Result<Response, ApiFailure> {
    let (served, _) = authorize_bodiless(&sh, &store, &req, &[Right::Admin, Right::Read])?;
    let v = view(&served);
    let rep = blocking(move || {
        let mut rep = asl_store::verify::verify(
            &v,
            &asl_store::verify::VerifyOptions {
                read_data: q.read_data.unwrap_or(false),
            },
            &asl_prov::artifact_children,
        );
        // Damage is named by snapshot:path here, where the trees are, as a local verify does.
        asl_store::verify::name_damaged_paths(&v, &mut rep, &|reader, root, wanted| {
            asl_fs::entries_using(reader, root, wanted)
                .into_iter()
                .map(|e| (e.path, e.content, e.directory))
                .collect()
        });
        Ok(rep)
    })
    .await?;
    Ok(axum::Json(rep).into_response())
}
