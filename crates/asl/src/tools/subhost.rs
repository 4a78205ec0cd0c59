//! Tools of the subhost part: overlay-boot, overlay-go, overlay-stop, overlay-list.
//! All logic is in `asl_subhost`; this module parses arguments and prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};

use super::Tool;
use super::common::human_bytes;
use crate::exit::{Code, fail};
use crate::outln;

pub const TOOLS: &[Tool] = &[
    Tool {
        name: "overlay-boot",
        command: Boot::command,
        run: boot,
    },
    Tool {
        name: "overlay-go",
        command: Go::command,
        run: go,
    },
    Tool {
        name: "overlay-stop",
        command: Stop::command,
        run: stop,
    },
    Tool {
        name: "overlay-list",
        command: List::command,
        run: list,
    },
];

/// Boot a subhost from its configuration file.
#[derive(Parser, Debug)]
#[command(
    about = "Boot a subhost (overlay root, own namespaces, virtual cables) from its configuration",
    long_about = "Boot a subhost from its configuration file (overlay-boot's format).\n\n\
The subhost gets a network namespace NAME with veth cables (host end NAME<i>, subhost end eth<i>), \
an overlay root (LOWER read-only, UPPER for its own files) mounted on LIVE, new mount, PID, IPC \
and UTS namespaces, hostname NAME, and a PID 1 that starts the START services in order.\n\n\
The command returns when the subhost is ready (exit 0) or has failed (exit 1, with the reason); \
a failed boot leaves nothing behind. With --foreground it stays attached as the subhost's \
supervisor until the subhost stops (for systemd: Type=notify; SIGTERM or ^C stop the subhost \
gracefully).\n\n\
Log: boot steps, the resolved variables and the services' output are appended to LOG, by \
default /var/log/subhost/NAME.log.\n\n\
Minimal subhost:\n  mkdir -p /srv/sub/web/{root,work,live}\n  printf 'BASE=.\\nSTART=none\\n' > /srv/sub/web/web.conf\n  \
overlay-boot /srv/sub/web/web.conf\n  overlay-go web\n  overlay-stop /srv/sub/web/web.conf\n\n\
Variables: NAME BASE CABLES INIT LIVE LOG LOWER UPPER WORK PREMOUNT POSTMOUNT START RAM_SIZE SHARE, \
and MEMORY_MAX CPU_MAX PIDS_MAX DROP_CAPS NO_NEW_PRIVS READONLY_SYS SERVICE_TIMEOUT. \
See docs/overlay-boot.md."
)]
struct Boot {
    /// The subhost's configuration file (NAME defaults to its name without `.conf`).
    #[arg(required_unless_present = "install_unit", value_name = "CONF")]
    conf: Option<PathBuf>,
    /// Stay attached as the supervisor until the subhost stops.
    #[arg(long)]
    foreground: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Print nothing on success.
    #[arg(short, long)]
    quiet: bool,
    /// Install the systemd template unit overlay-boot@.service into DIR (e.g. /etc/systemd/system)
    /// for tools in the directory of this binary, and exit.
    #[arg(long, value_name = "DIR", conflicts_with = "conf")]
    install_unit: Option<PathBuf>,
}

fn boot(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: Boot = super::args(m)?;
    if let Some(dir) = a.install_unit {
        let exe = std::env::current_exe().context("cannot find the running binary")?;
        let bindir = exe.parent().context("the binary has no directory")?;
        let path = asl_subhost::unit::install(&dir, bindir)?;
        if !a.quiet {
            outln!("{}", path.display())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(conf) = a.conf else {
        return Err(fail(Code::Usage, "CONF is required"));
    };
    let raw = asl_subhost::config::load(&conf)?;
    for w in &raw.warnings {
        eprintln!("overlay-boot: warning: {}:{w}", conf.display());
    }
    let opts = asl_subhost::BootOptions {
        foreground: a.foreground,
    };
    let (json, quiet) = (a.json, a.quiet);
    asl_subhost::boot(&raw, &opts, &mut |b| {
        // The subhost is up whether or not this line can be written, and the boot goes on
        // (in the foreground it runs the subhost): a failed write is left to the
        // dispatcher, which ends quietly once the boot returns if the reader has gone.
        let _ = if json {
            outln!("{}", serde_json::to_string(b).unwrap_or_default())
        } else if !quiet {
            outln!(
                "subhost {} is up (PID 1 = host pid {}, {:.1} ms); log: {}",
                b.name,
                b.init_pid,
                b.boot_ms,
                b.log.display()
            )
        } else {
            Ok(())
        };
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Enter a running subhost.
#[derive(Parser, Debug)]
#[command(
    about = "Run a command (a shell by default) inside a running subhost",
    long_about = "Run a command inside every namespace of a running subhost — network, mount \
(so its root), PID, IPC and UTS — and in its cgroup. Without CMD it starts /bin/bash (or /bin/sh). \
The exit status is the command's (128+N when killed by signal N).\n\n\
Examples:\n  overlay-go web\n  overlay-go web ip addr\n  overlay-go web -- ps -ef"
)]
struct Go {
    /// The subhost's name (or its configuration file).
    name: String,
    /// The command and its arguments (use `--` before options meant for it).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
}

fn go(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: Go = super::args(m)?;
    let name = asl_subhost::name_from_arg(&a.name)?;
    let code = asl_subhost::go(&name, &a.cmd)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Stop a subhost.
#[derive(Parser, Debug)]
#[command(
    about = "Stop a subhost gracefully and remove its cables, netns, mounts and cgroup",
    long_about = "Stop a running subhost: its PID 1 stops the START services in reverse order \
(each within SERVICE_TIMEOUT), sends SIGTERM to every remaining process, then SIGKILL. Then the \
cables, the network namespace, the cgroup and the state are removed; the mounts end with the \
subhost's mount namespace. Exit 1 if the subhost was not running (leftovers of a crashed one are \
removed all the same).\n\n\
Example:\n  overlay-stop /srv/sub/web/web.conf"
)]
struct Stop {
    /// The subhost's configuration file (or its name).
    #[arg(value_name = "CONF")]
    conf: String,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Print nothing on success.
    #[arg(short, long)]
    quiet: bool,
}

fn stop(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: Stop = super::args(m)?;
    let name = asl_subhost::name_from_arg(&a.conf)?;
    let s = asl_subhost::stop(&name)?;
    if a.json {
        outln!("{}", serde_json::to_string(&s)?)?;
    } else if !a.quiet {
        let how = if s.killed {
            " (PID 1 did not finish in time and was killed)"
        } else {
            ""
        };
        outln!("subhost {} stopped in {:.1} ms{how}", s.name, s.stop_ms)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// List subhosts.
#[derive(Parser, Debug)]
#[command(
    about = "List running subhosts: PID 1, uptime, cables, memory",
    long_about = "List the subhosts started by overlay-boot that have not been stopped: name, \
status (running, or dead when PID 1 ended without cleanup — run overlay-stop), host PID of PID \
1, uptime, cables (host end=subhost end) and memory (cgroup memory.current, or the sum of the \
processes' resident sizes where the memory controller is not available)."
)]
struct List {
    /// Print a JSON array on stdout.
    #[arg(long)]
    json: bool,
}

fn human_secs(s: f64) -> String {
    let s = s as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86400, s / 3600 % 24),
    }
}

fn list(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: List = super::args(m)?;
    let (entries, problems) = asl_subhost::list();
    for p in &problems {
        eprintln!("overlay-list: warning: {p}");
    }
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&entries)?)?;
    } else if entries.is_empty() {
        outln!("no subhosts running")?;
    } else {
        outln!(
            "{:<12} {:<8} {:>8} {:>8} {:>10}  CABLES",
            "NAME",
            "STATUS",
            "PID",
            "UPTIME",
            "MEMORY"
        )?;
        for e in &entries {
            let cables: Vec<String> = e
                .cables
                .iter()
                .map(|c| format!("{}={}", c.host, c.inside))
                .collect();
            outln!(
                "{:<12} {:<8} {:>8} {:>8} {:>10}  {}",
                e.name,
                e.status,
                e.init_pid,
                e.uptime_s.map(human_secs).unwrap_or_else(|| "-".into()),
                e.memory_bytes
                    .map(human_bytes)
                    .unwrap_or_else(|| "-".into()),
                if cables.is_empty() {
                    "-".to_string()
                } else {
                    cables.join(" ")
                }
            )?;
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        Code::Failure.into()
    })
}
