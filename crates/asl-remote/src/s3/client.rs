//! A small synchronous S3 client: the handful of calls a store needs (PUT, conditional PUT,
//! GET, ranged GET, HEAD, DELETE, ListObjectsV2), path-style, signed with SigV4.
//!
//! Synchronous on purpose: the store's storage seam is synchronous, and the server already
//! calls the writer from blocking threads. Transport errors and 5xx answers are retried with
//! backoff for a while, because a replicated engine answers 5xx while a node is down or a
//! quorum is being re-established; 4xx answers are final.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::sigv4::{self, Credentials};

/// Where a bucket is and how to sign for it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `http://HOST:PORT` or `https://HOST:PORT`, without a path.
    pub url: String,
    pub bucket: String,
    pub creds: Credentials,
}

/// An object's bytes and its ETag.
pub type Object = (Vec<u8>, Option<String>);

/// A condition on a PUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond<'a> {
    None,
    /// `If-None-Match: *`: only when no object has the key.
    Absent,
    /// `If-Match: ETAG`: only when the object is still this version.
    Matches(&'a str),
}

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("s3://{bucket}/{key}: the condition of the write did not hold (HTTP 412)")]
    PreconditionFailed { bucket: String, key: String },
    #[error("s3://{bucket}/{key}: {method} answered HTTP {status}: {message}")]
    Status {
        bucket: String,
        key: String,
        method: String,
        status: u16,
        message: String,
    },
    #[error("s3://{bucket}/{key}: {method} to {url} failed: {message}")]
    Transport {
        bucket: String,
        key: String,
        method: String,
        url: String,
        message: String,
    },
}

impl From<S3Error> for std::io::Error {
    fn from(e: S3Error) -> std::io::Error {
        let kind = match &e {
            S3Error::PreconditionFailed { .. } => std::io::ErrorKind::AlreadyExists,
            S3Error::Status { status: 404, .. } => std::io::ErrorKind::NotFound,
            S3Error::Status { status: 403, .. } => std::io::ErrorKind::PermissionDenied,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
}

/// What ListObjectsV2 returned for a prefix and `/` as delimiter.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    pub objects: Vec<Listed>,
    /// The "sub-directories": common prefixes, each ending in `/`.
    pub prefixes: Vec<String>,
}

pub struct Client {
    endpoint: Endpoint,
    agent: ureq::Agent,
    host: String,
    /// How long transient failures are retried before one is returned.
    pub retry_for: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

struct Answer {
    status: u16,
    etag: Option<String>,
    /// `Content-Length` (what HEAD answers with instead of a body).
    length: Option<u64>,
    body: Vec<u8>,
}

impl Client {
    pub fn new(endpoint: Endpoint) -> Client {
        let host = endpoint
            .url
            .split_once("://")
            .map_or(endpoint.url.as_str(), |(_, rest)| rest)
            .trim_end_matches('/')
            .to_string();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .new_agent();
        Client {
            endpoint,
            agent,
            host,
            retry_for: Duration::from_secs(60),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.endpoint.bucket
    }

    /// PUTs `body` at `key`; returns the new ETag.
    pub fn put(&self, key: &str, body: &[u8], cond: Cond) -> Result<Option<String>, S3Error> {
        self.put_before(key, body, cond, None)
    }

    /// [`Client::put`], but no attempt is started at or after `deadline` (the end of the
    /// writer's lease: a retry after it could land behind the next writer's writes).
    pub fn put_before(
        &self,
        key: &str,
        body: &[u8],
        cond: Cond,
        deadline: Option<Instant>,
    ) -> Result<Option<String>, S3Error> {
        let mut extra = Vec::new();
        match cond {
            Cond::None => {}
            Cond::Absent => extra.push(("if-none-match".to_string(), "*".to_string())),
            Cond::Matches(etag) => extra.push(("if-match".to_string(), etag.to_string())),
        }
        let a = self.call("PUT", key, &[], &extra, body, deadline)?;
        match a.status {
            200..=299 => Ok(a.etag),
            412 => Err(S3Error::PreconditionFailed {
                bucket: self.endpoint.bucket.clone(),
                key: key.to_string(),
            }),
            _ => Err(self.status("PUT", key, &a)),
        }
    }

    /// The whole object and its ETag, or `None` when there is none.
    pub fn get(&self, key: &str) -> Result<Option<Object>, S3Error> {
        let a = self.call("GET", key, &[], &[], &[], None)?;
        match a.status {
            200 => Ok(Some((a.body, a.etag))),
            404 => Ok(None),
            _ => Err(self.status("GET", key, &a)),
        }
    }

    /// `len` bytes from `offset`; `None` when the object does not exist.
    pub fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>, S3Error> {
        if len == 0 {
            return Ok(Some(Vec::new()));
        }
        let range = format!("bytes={offset}-{}", offset + len - 1);
        let a = self.call("GET", key, &[], &[("range".into(), range)], &[], None)?;
        match a.status {
            200 => Ok(Some(
                a.body
                    .get(offset as usize..(offset + len) as usize)
                    .unwrap_or_default()
                    .to_vec(),
            )),
            206 => Ok(Some(a.body)),
            404 => Ok(None),
            416 => Ok(Some(Vec::new())),
            _ => Err(self.status("GET", key, &a)),
        }
    }

    /// The size of an object, or `None` when there is none.
    pub fn head(&self, key: &str) -> Result<Option<u64>, S3Error> {
        let a = self.call("HEAD", key, &[], &[], &[], None)?;
        match a.status {
            200 => Ok(Some(a.length.unwrap_or(0))),
            404 => Ok(None),
            _ => Err(self.status("HEAD", key, &a)),
        }
    }

    /// Deletes an object (deleting a missing object is not an error, as in S3).
    pub fn delete(&self, key: &str) -> Result<(), S3Error> {
        let a = self.call("DELETE", key, &[], &[], &[], None)?;
        match a.status {
            200..=299 | 404 => Ok(()),
            _ => Err(self.status("DELETE", key, &a)),
        }
    }

    /// Everything directly under `prefix` (which ends in `/`, or is empty), with `/` as the
    /// delimiter; every page.
    pub fn list(&self, prefix: &str) -> Result<Listing, S3Error> {
        self.list_with(prefix, Some("/"))
    }

    /// Every object whose key starts with `prefix`, however deep.
    pub fn list_all(&self, prefix: &str) -> Result<Vec<Listed>, S3Error> {
        Ok(self.list_with(prefix, None)?.objects)
    }

    fn list_with(&self, prefix: &str, delimiter: Option<&str>) -> Result<Listing, S3Error> {
        let mut out = Listing::default();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("list-type".to_string(), "2".to_string()),
                ("prefix".to_string(), prefix.to_string()),
            ];
            if let Some(d) = delimiter {
                query.push(("delimiter".to_string(), d.to_string()));
            }
            if let Some(t) = &token {
                query.push(("continuation-token".to_string(), t.clone()));
            }
            let a = self.call("GET", "", &query, &[], &[], None)?;
            if a.status != 200 {
                return Err(self.status("LIST", prefix, &a));
            }
            let xml = String::from_utf8_lossy(&a.body);
            let page = parse_list(&xml);
            out.objects.extend(page.objects);
            out.prefixes.extend(page.prefixes);
            match page.next {
                Some(t) if page.truncated => token = Some(t),
                _ => break,
            }
        }
        Ok(out)
    }

    fn status(&self, method: &str, key: &str, a: &Answer) -> S3Error {
        let text = String::from_utf8_lossy(&a.body);
        let message = tag_text(&text, "Message")
            .or_else(|| tag_text(&text, "Code"))
            .unwrap_or_else(|| text.chars().take(200).collect());
        S3Error::Status {
            bucket: self.endpoint.bucket.clone(),
            key: key.to_string(),
            method: method.to_string(),
            status: a.status,
            message,
        }
    }

    /// Sends one request, retrying transport failures and 5xx answers with backoff.
    fn call(
        &self,
        method: &str,
        key: &str,
        query: &[(String, String)],
        extra: &[(String, String)],
        body: &[u8],
        deadline: Option<Instant>,
    ) -> Result<Answer, S3Error> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            if let Some(d) = deadline
                && Instant::now() >= d
            {
                return Err(S3Error::Transport {
                    bucket: self.endpoint.bucket.clone(),
                    key: key.to_string(),
                    method: method.to_string(),
                    url: self.endpoint.url.clone(),
                    message: "not sent: the writer's lease ends before it could be".into(),
                });
            }
            let result = self.call_once(method, key, query, extra, body);
            let transient = match &result {
                Ok(a) => a.status >= 500,
                Err(_) => true,
            };
            if !transient || started.elapsed() >= self.retry_for {
                return result;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    fn call_once(
        &self,
        method: &str,
        key: &str,
        query: &[(String, String)],
        extra: &[(String, String)],
        body: &[u8],
    ) -> Result<Answer, S3Error> {
        let path = if key.is_empty() {
            format!("/{}", sigv4::uri_encode(&self.endpoint.bucket, false))
        } else {
            format!(
                "/{}/{}",
                sigv4::uri_encode(&self.endpoint.bucket, false),
                sigv4::uri_encode(key, true)
            )
        };
        let payload = sigv4::sha256_hex(body);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let date = sigv4::amz_date(now);
        let mut headers = vec![
            ("host".to_string(), self.host.clone()),
            ("x-amz-content-sha256".to_string(), payload.clone()),
            ("x-amz-date".to_string(), date.clone()),
        ];
        headers.extend(extra.iter().cloned());
        let auth = sigv4::authorization(
            &self.endpoint.creds,
            "s3",
            &date,
            &sigv4::Request {
                method,
                path: &path,
                query,
                headers: &headers,
                payload_sha256: &payload,
            },
        );
        let mut url = format!("{}{path}", self.endpoint.url.trim_end_matches('/'));
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        sigv4::uri_encode(k, false),
                        sigv4::uri_encode(v, false)
                    )
                })
                .collect();
            url = format!("{url}?{}", q.join("&"));
        }
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        for (k, v) in &headers {
            if k != "host" {
                req = req.header(k.as_str(), v.as_str());
            }
        }
        req = req.header("authorization", auth);
        let transport = |message: String| S3Error::Transport {
            bucket: self.endpoint.bucket.clone(),
            key: key.to_string(),
            method: method.to_string(),
            url: url.clone(),
            message,
        };
        let req = req.body(body).map_err(|e| transport(e.to_string()))?;
        let resp = self.agent.run(req).map_err(|e| transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let length = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body = if method == "HEAD" {
            Vec::new()
        } else {
            resp.into_body()
                .with_config()
                .limit(u64::MAX)
                .read_to_vec()
                .map_err(|e| transport(e.to_string()))?
        };
        Ok(Answer {
            status,
            etag,
            length,
            body,
        })
    }
}

struct Page {
    objects: Vec<Listed>,
    prefixes: Vec<String>,
    truncated: bool,
    next: Option<String>,
}

/// The text of the first `<tag>…</tag>` in `xml`, unescaped.
fn tag_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(unescape(&xml[start..end]))
}

/// Every `<tag>…</tag>` element of `xml` (non-nested), as the text between the tags.
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Reads a ListObjectsV2 answer: the few elements a listing needs, nothing else.
fn parse_list(xml: &str) -> Page {
    let objects = elements(xml, "Contents")
        .into_iter()
        .filter_map(|c| {
            Some(Listed {
                key: tag_text(c, "Key")?,
                size: tag_text(c, "Size")?.parse().ok()?,
            })
        })
        .collect();
    let prefixes = elements(xml, "CommonPrefixes")
        .into_iter()
        .filter_map(|c| tag_text(c, "Prefix"))
        .collect();
    Page {
        objects,
        prefixes,
        truncated: tag_text(xml, "IsTruncated").as_deref() == Some("true"),
        next: tag_text(xml, "NextContinuationToken"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_page_is_read_with_its_continuation() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix>
<KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys><Delimiter>/</Delimiter><IsTruncated>true</IsTruncated>
<Contents><Key>p/config</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>&quot;ab&quot;</ETag><Size>97</Size></Contents>
<Contents><Key>p/a&amp;b</Key><Size>0</Size></Contents>
<CommonPrefixes><Prefix>p/blocks/</Prefix></CommonPrefixes>
<NextContinuationToken>tok/1=</NextContinuationToken></ListBucketResult>"#;
        let p = parse_list(xml);
        assert_eq!(
            p.objects,
            vec![
                Listed {
                    key: "p/config".into(),
                    size: 97
                },
                Listed {
                    key: "p/a&b".into(),
                    size: 0
                },
            ]
        );
        assert_eq!(p.prefixes, vec!["p/blocks/".to_string()]);
        assert!(p.truncated);
        assert_eq!(p.next.as_deref(), Some("tok/1="));
    }
}
