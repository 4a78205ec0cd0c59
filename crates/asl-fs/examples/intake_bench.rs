//! Intake (and optionally restore) of real directories into a real store, for profiling:
//! `cargo run --release -p asl-fs --example intake_bench -- STORE [--threads N]
//! [--stat-cache FILE] [--restore TARGET] PATH...`
//! Prints the intake summary; commits one snapshot. With `--restore`, restores it and
//! compares the restored tree with the source (one PATH).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let store = PathBuf::from(args.next().ok_or("usage: intake_bench STORE PATH...")?);
    let mut opts = asl_fs::IntakeOptions::default();
    let mut paths = Vec::new();
    let mut restore_to = None;
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--threads") => {
                opts.threads = args
                    .next()
                    .ok_or("--threads N")?
                    .to_string_lossy()
                    .parse()?
            }
            Some("--stat-cache") => opts.stat_cache = args.next().map(PathBuf::from),
            Some("--restore") => restore_to = args.next().map(PathBuf::from),
            _ => paths.push(PathBuf::from(a)),
        }
    }
    let mut w = asl_store::Writer::open_or_init(&store, &asl_store::InitOptions::default())?;
    let s = asl_fs::intake(&w, &paths, &opts, &asl_fs::Progress::new())?;
    println!(
        "intake: {} files {} dirs, {:.1} MB total, {:.1} MB read, {:.1} MB new, opened {}, cache hits {}, errors {}, {:.2} s, {:.1} MB/s",
        s.files,
        s.dirs,
        s.bytes_total as f64 / 1e6,
        s.bytes_read as f64 / 1e6,
        s.bytes_new as f64 / 1e6,
        s.files_opened,
        s.stat_cache_hits,
        s.errors.len(),
        s.seconds,
        s.bytes_total as f64 / 1e6 / s.seconds
    );
    let t = std::time::Instant::now();
    w.commit(Some(s.root), asl_store::SnapshotMeta::now("intake"))?;
    println!(
        "commit: {:.2} s; root {}",
        t.elapsed().as_secs_f64(),
        s.root
    );
    drop(w);
    if let Some(target) = restore_to {
        let st = asl_store::Store::open(&store)?;
        let r = asl_fs::restore(&st.reader(), &s.root, None, &target, &Default::default())?;
        println!(
            "restore: {} files, {:.1} MB written, {} errors, {} integrity errors, {:.2} s",
            r.files,
            r.bytes_written as f64 / 1e6,
            r.errors.len(),
            r.integrity_errors.len(),
            r.seconds
        );
        if paths.len() == 1 {
            let diffs = asl_fs::testing::compare_trees(&paths[0], &target);
            println!("compare: {} differences", diffs.len());
            for d in diffs.iter().take(20) {
                println!("  {d}");
            }
        }
    }
    Ok(())
}
