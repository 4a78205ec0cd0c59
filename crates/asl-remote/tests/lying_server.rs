//! The client against a server that lies. A real asl-server never sends bytes that do not
//! match their reference, so the client's own checks can only be shown against a stand-in:
//! a minimal HTTP/1.1 server on loopback, written here, that answers the store's description
//! truthfully and batched reads (`POST …/read`) with what each test wants.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use asl_remote::{Remote, api};
use asl_store::{HashAlgo, Reference};

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    body: Vec<u8>,
}

/// Serves on a loopback port until the test ends; `answer` makes the body of every batched
/// read from the references asked for.
fn lying_server(
    answer: impl Fn(&[Reference]) -> Vec<u8> + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/main", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let log = log.clone();
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                // Requests on one connection until the client closes it.
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("").to_string();
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        if h == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0u8; len];
                    reader.read_exact(&mut body).unwrap();
                    let reply = if path.contains("/read") {
                        let req: api::ReadRequest = serde_json::from_slice(&body).unwrap();
                        let refs: Vec<Reference> =
                            req.refs.iter().map(|r| r.parse().unwrap()).collect();
                        answer(&refs)
                    } else {
                        serde_json::to_vec(&api::StoreInfo {
                            store: "main".into(),
                            hash: "blake3".into(),
                            domain_id: 1,
                            rights: vec!["read".into()],
                            api_minor: api::API_MINOR,
                            store_id: "0123456789abcdef".into(),
                        })
                        .unwrap()
                    };
                    log.lock().unwrap().push(Seen { path, body });
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: application/octet-stream\r\n\r\n",
                        reply.len()
                    );
                    if conn.write_all(head.as_bytes()).is_err() || conn.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

fn connect(url: &str) -> Remote {
    Remote::connect(
        url,
        asl_remote::client::Options {
            retry_for: std::time::Duration::ZERO,
            ..Default::default()
        },
    )
    .unwrap()
}

fn content(i: u8) -> Vec<u8> {
    vec![i; 100 + i as usize]
}

#[test]
fn a_batched_read_keeps_only_bytes_that_hash_to_their_reference() {
    // For every reference asked: the right bytes, except for the first (other bytes) and the
    // third (claimed "not found").
    let (url, _) = lying_server(|refs| {
        let mut out = Vec::new();
        for (i, r) in refs.iter().enumerate() {
            let truth = (0u8..10)
                .map(content)
                .find(|c| HashAlgo::Blake3.digest(c) == *r);
            match (i, truth) {
                (0, _) => api::encode_read_item(&mut out, api::ReadStatus::Found, b"forged"),
                (2, _) => api::encode_read_item(&mut out, api::ReadStatus::NotFound, b""),
                (_, Some(c)) => api::encode_read_item(&mut out, api::ReadStatus::Found, &c),
                (_, None) => api::encode_read_item(&mut out, api::ReadStatus::Failed, b""),
            }
        }
        out
    });
    let remote = connect(&url);
    let refs: Vec<Reference> = (0u8..4)
        .map(|i| HashAlgo::Blake3.digest(&content(i)))
        .collect();
    let got = remote.read_many(Some(1), &refs).unwrap();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0], None, "forged bytes were accepted");
    assert_eq!(got[1].as_deref(), Some(&content(1)[..]));
    assert_eq!(got[2], None);
    assert_eq!(got[3].as_deref(), Some(&content(3)[..]));
}

#[test]
fn a_short_answer_is_continued_and_a_broken_one_is_an_error() {
    // One item per answer: the client asks again for the rest.
    let (url, seen) = lying_server(|refs| {
        let c = (0u8..10)
            .map(content)
            .find(|c| HashAlgo::Blake3.digest(c) == refs[0])
            .unwrap();
        let mut out = Vec::new();
        api::encode_read_item(&mut out, api::ReadStatus::Found, &c);
        out
    });
    let remote = connect(&url);
    let refs: Vec<Reference> = (0u8..3)
        .map(|i| HashAlgo::Blake3.digest(&content(i)))
        .collect();
    let got = remote.read_many(None, &refs).unwrap();
    let want: Vec<Option<Vec<u8>>> = (0u8..3).map(|i| Some(content(i))).collect();
    assert_eq!(got, want);
    let reads: Vec<Seen> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path.contains("/read"))
        .cloned()
        .collect();
    assert_eq!(reads.len(), 3, "{reads:?}");
    let asked: api::ReadRequest = serde_json::from_slice(&reads[2].body).unwrap();
    assert_eq!(asked.refs, vec![refs[2].to_string()]);

    // An unknown status byte ends the answer: an error, not a guess.
    let (url, _) = lying_server(|_| vec![9, 0, 0, 0, 0, 0, 0, 0, 0]);
    let remote = connect(&url);
    let err = remote.read_many(None, &refs[..1]).unwrap_err();
    assert!(err.to_string().contains("unknown status"), "{err}");
}
