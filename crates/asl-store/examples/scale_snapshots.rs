//! Benchmark dataset generator for bench/scale (S2): grows one store by small snapshots, the
//! way a build host that captures every step does, and reports at each milestone how long
//! opening the store takes, for a reader and for the writer.
//!
//! `cargo run --release -p asl-store --example scale_snapshots -- STORE 10,100,1000`
//!
//! Every snapshot puts two small artifacts (one unique, one shared by all snapshots) and a
//! "tree" listing them, then commits: one SEGMENT_SEAL (or merging GC_COMMIT) and one
//! SNAPSHOT record each. A milestone line on stdout is CSV:
//! `snapshots,log_records,reader_open_s,full_replay_open_s,writer_open_s,commit_s`:
//! opening for reading over the log checkpoint, the same open replaying the whole log (what
//! every open did before the checkpoint), opening for writing, and one commit. Not a test: it
//! asserts nothing about time.

use std::path::PathBuf;
use std::time::Instant;

use asl_store::{ArtifactWrite, InitOptions, SnapshotMeta, Store, TypeTag, Writer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: scale_snapshots STORE N1,N2,...")?,
    );
    let marks: Vec<u64> = args
        .next()
        .ok_or("usage: scale_snapshots STORE N1,N2,...")?
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let mut w = Writer::open_or_init(&dir, &InitOptions::default())?;
    let shared = w.put_bytes(b"shared by every step", TypeTag::BYTES)?;
    let mut made = Store::open(&dir)?.snapshots().len() as u64;
    println!("snapshots,log_records,reader_open_s,full_replay_open_s,writer_open_s,commit_s");
    for mark in marks {
        while made < mark {
            let own = w.put_bytes(format!("step {made} output").as_bytes(), TypeTag::BYTES)?;
            let listing = format!("{}\n{}\n", shared.reference, own.reference);
            let tree = w.put_bytes(listing.as_bytes(), TypeTag::BYTES)?;
            let mut meta = SnapshotMeta::now("capture");
            meta.label = Some(format!("step-{made}"));
            w.commit(Some(tree.reference), meta)?;
            made += 1;
        }
        drop(w);
        let t = Instant::now();
        let store = Store::open(&dir)?;
        let reader_open = t.elapsed().as_secs_f64();
        let records = store.counts().log_records;
        drop(store);
        let t = Instant::now();
        let full = Store::open_replaying_whole_log_in(asl_store::Layout::new(&dir))?;
        let full_open = t.elapsed().as_secs_f64();
        drop(full);
        let t = Instant::now();
        w = Writer::open(&dir)?;
        let writer_open = t.elapsed().as_secs_f64();
        let own = w.put_bytes(format!("step {made} output").as_bytes(), TypeTag::BYTES)?;
        let t = Instant::now();
        let mut meta = SnapshotMeta::now("capture");
        meta.label = Some(format!("step-{made}"));
        w.commit(Some(own.reference), meta)?;
        let commit = t.elapsed().as_secs_f64();
        println!("{made},{records},{reader_open:.6},{full_open:.6},{writer_open:.6},{commit:.6}");
        made += 1;
    }
    Ok(())
}
