//! The Rust side of bench/ffi: the same puts and gets as bench/ffi/bench.c, through the Rust
//! API the library wraps. Prints `rust put|get SIZE COUNT WALL_SECONDS CPU_SECONDS` (CPU: user
//! and system time of the whole process, its sealing threads included).
//!
//!   bench_rust STORE SIZE COUNT SEED

use std::path::PathBuf;
use std::time::Instant;

use asl_store::{ArtifactRead, ArtifactWrite, InitOptions, SnapshotMeta, Store, TypeTag, Writer};

/// splitmix64, as bench.c computes it: both sides store the same bytes.
fn fill(buf: &mut [u8], seed: u64) {
    let mut s = seed;
    for chunk in buf.chunks_mut(8) {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a rusage into the valid, writable buffer it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()) };
    if rc != 0 {
        return f64::NAN;
    }
    // SAFETY: getrusage succeeded, so the struct is initialised (it was zeroed before anyway).
    let u = unsafe { u.assume_init() };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, store, size, count, seed] = &args[..] else {
        return Err("usage: bench_rust STORE SIZE COUNT SEED".into());
    };
    let (dir, size, count, seed) = (
        PathBuf::from(store),
        size.parse::<usize>()?,
        count.parse::<u64>()?,
        seed.parse::<u64>()?,
    );
    let objects: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let mut b = vec![0u8; size];
            fill(&mut b, seed * 1_000_003 + i);
            b
        })
        .collect();

    let mut writer = Writer::open_or_init(&dir, &InitOptions::default())?;
    let (t, c) = (Instant::now(), cpu_seconds());
    let mut refs = Vec::with_capacity(objects.len());
    for o in &objects {
        refs.push(writer.put_bytes(o, TypeTag::BYTES)?.reference);
    }
    writer.commit(None, SnapshotMeta::now("put"))?;
    println!(
        "rust put {size} {count} {:.6} {:.6}",
        t.elapsed().as_secs_f64(),
        cpu_seconds() - c
    );
    drop(writer);

    let store = Store::open(&dir)?;
    let reader = store.reader();
    let mut buf = vec![0u8; size];
    let (t, c) = (Instant::now(), cpu_seconds());
    for (r, o) in refs.iter().zip(&objects) {
        let mut out = &mut buf[..];
        let n = reader.read_to(r, &mut out)?;
        if n as usize != size || buf != *o {
            return Err(format!("{r} read back other bytes").into());
        }
    }
    println!(
        "rust get {size} {count} {:.6} {:.6}",
        t.elapsed().as_secs_f64(),
        cpu_seconds() - c
    );
    Ok(())
}
