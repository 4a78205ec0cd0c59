//! `runner boot CONF` / `runner go NAME CMD...` / `runner stop NAME`: the library calls of the
//! asl tools, nothing else (benchmark only; see bench/subhost/bench.py --runner).
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("boot") => asl_subhost::config::load(std::path::Path::new(&args[1]))
            .map_err(asl_subhost::Error::from)
            .and_then(|raw| asl_subhost::boot(&raw, &Default::default(), &mut |_| {}))
            .map(|_| 0),
        Some("go") => asl_subhost::go(&args[1], &args[2..]),
        Some("stop") => asl_subhost::name_from_arg(&args[1])
            .and_then(|n| asl_subhost::stop(&n))
            .map(|_| 0),
        _ => {
            eprintln!("usage: runner boot CONF | go NAME CMD... | stop CONF");
            return ExitCode::from(2);
        }
    };
    match r {
        Ok(c) => ExitCode::from(c.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("runner: error: {e}");
            ExitCode::FAILURE
        }
    }
}
