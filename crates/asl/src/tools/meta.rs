//! Tools about the binary itself: installing its links and writing man pages.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser};

use super::Tool;
use crate::outln;

pub const TOOLS: &[Tool] = &[
    Tool {
        name: "asl-install-links",
        command: InstallLinks::command,
        run: install_links,
    },
    Tool {
        name: "asl-man",
        command: Man::command,
        run: man,
    },
];

/// Link every tool name to this binary, so `asl-intake` etc. work from PATH.
#[derive(Parser, Debug)]
#[command(
    about = "Create the tool links (asl-intake, overlay-boot, ...) next to the binary or in DIR"
)]
struct InstallLinks {
    /// Directory for the links (default: the directory of the running binary).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Make symbolic links instead of hard links.
    #[arg(long)]
    symlink: bool,
    #[command(flatten)]
    quiet: Quiet,
}

#[derive(Args, Debug)]
struct Quiet {
    /// Print nothing on success.
    #[arg(short, long)]
    quiet: bool,
}

fn install_links(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: InstallLinks = super::args(m)?;
    let exe = std::env::current_exe().context("cannot find the running binary")?;
    let dir = match a.dir {
        Some(d) => d,
        None => exe
            .parent()
            .context("the running binary has no parent directory")?
            .to_path_buf(),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for tool in super::all() {
        if tool.name == "asl-install-links" || tool.name == "asl-man" {
            continue;
        }
        let link = dir.join(tool.name);
        replace_link(&exe, &link, a.symlink)
            .with_context(|| format!("cannot link {} to {}", link.display(), exe.display()))?;
        if !a.quiet.quiet {
            outln!("{}", link.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates `link` pointing at `target`, replacing whatever was there atomically (a link
/// made under a temporary name, then renamed), so a half-installed state never exists.
fn replace_link(target: &Path, link: &Path, symlink: bool) -> std::io::Result<()> {
    let tmp = link.with_extension("asl-new");
    let _ = std::fs::remove_file(&tmp);
    if symlink {
        std::os::unix::fs::symlink(target, &tmp)?;
    } else if let Err(e) = std::fs::hard_link(target, &tmp) {
        // Hard links fail across filesystems; a symlink is the next best thing.
        if e.kind() == std::io::ErrorKind::CrossesDevices {
            std::os::unix::fs::symlink(target, &tmp)?;
        } else {
            return Err(e);
        }
    }
    std::fs::rename(&tmp, link)
}

/// Write one man page per tool, generated from its --help.
#[derive(Parser, Debug)]
#[command(about = "Write a man page (section 1) for every tool into DIR")]
struct Man {
    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = "docs/man")]
    out: PathBuf,
}

fn man(m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let a: Man = super::args(m)?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    for tool in super::all() {
        let cmd = (tool.command)()
            .name(tool.name)
            .version(env!("CARGO_PKG_VERSION"));
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page)?;
        let path = a.out.join(format!("{}.1", tool.name));
        std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
        outln!("{}", path.display())?;
    }
    Ok(ExitCode::SUCCESS)
}
