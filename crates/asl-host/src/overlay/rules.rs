//! What seed 000 forbids ("What is *explicitly forbidden* in the overlay", §6, and the tool's
//! guarantee of §5), checked in the files that would do it: systemd units and their drop-ins,
//! `fstab`, mount units and the ZFS pool cache.
//!
//! The lint reads these files; it never runs them or a shell. A command hidden in a script the
//! unit runs is not seen, but `sh -c '…'` is read as the commands it contains. Ordering
//! (`After=`, `Before=`) and conditions (`Condition…=`) are never findings: they detect, they do
//! not presume — `After=zfs-load-module.service` on a host without ZFS is harmless.

use serde::Serialize;

/// One rule of seed 000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// §6 ❌ Writing to `/usr`, `/bin`, `/lib`.
    WritesSystemTree,
    /// §6 ❌ Storing state in `/etc`.
    StateInEtc,
    /// §6 ❌ Auto-mounting the crashed system root.
    MountsCrashedRoot,
    /// §6 ❌ Assuming ZFS exists.
    AssumesZfs,
    /// §6 ❌ Assuming network exists.
    AssumesNetwork,
    /// §5 Never auto-import pools without operator or config approval.
    ImportsPools,
}

impl Rule {
    pub const ALL: [Rule; 6] = [
        Rule::WritesSystemTree,
        Rule::StateInEtc,
        Rule::MountsCrashedRoot,
        Rule::AssumesZfs,
        Rule::AssumesNetwork,
        Rule::ImportsPools,
    ];

    /// The rule's name in messages and `--json` (`"rule": "assumes-zfs"`).
    pub fn id(self) -> &'static str {
        match self {
            Rule::WritesSystemTree => "writes-system-tree",
            Rule::StateInEtc => "state-in-etc",
            Rule::MountsCrashedRoot => "mounts-crashed-root",
            Rule::AssumesZfs => "assumes-zfs",
            Rule::AssumesNetwork => "assumes-network",
            Rule::ImportsPools => "imports-pools",
        }
    }

    /// The seed's own words for the rule.
    pub fn seed_wording(self) -> &'static str {
        match self {
            Rule::WritesSystemTree => "§6 ❌ Writing to /usr, /bin, /lib",
            Rule::StateInEtc => "§6 ❌ Storing state in /etc",
            Rule::MountsCrashedRoot => "§6 ❌ Auto-mounting the crashed system root",
            Rule::AssumesZfs => "§6 ❌ Assuming ZFS exists",
            Rule::AssumesNetwork => "§6 ❌ Assuming network exists",
            Rule::ImportsPools => "§5 Never auto-import pools without operator or config approval",
        }
    }
}

/// One breach of a rule, found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: Rule,
    /// What the file does, e.g. `line 4: Requires=zfs-import.target …`.
    pub detail: String,
}

impl Finding {
    fn new(rule: Rule, detail: String) -> Finding {
        Finding { rule, detail }
    }

    /// The violation message: the detail, then the rule and the seed's wording.
    pub fn message(&self) -> String {
        format!(
            "{} (rule {}; seed 000 {})",
            self.detail,
            self.rule.id(),
            self.rule.seed_wording()
        )
    }
}

/// One `Key=value` line of a unit file (continuation lines joined).
struct Directive {
    line: usize,
    section: String,
    key: String,
    value: String,
}

fn directives(text: &str) -> Vec<Directive> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (start, mut joined) = match pending.take() {
            Some((start, mut acc)) => {
                // Comment lines inside a continuation are skipped, as systemd does.
                let t = raw.trim_start();
                if t.starts_with('#') || t.starts_with(';') {
                    pending = Some((start, acc));
                    continue;
                }
                acc.push(' ');
                acc.push_str(raw.trim());
                (start, acc)
            }
            None => {
                let t = raw.trim();
                if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
                    continue;
                }
                if t.starts_with('[') && t.ends_with(']') {
                    section = t[1..t.len() - 1].to_string();
                    continue;
                }
                (i + 1, t.to_string())
            }
        };
        if joined.ends_with('\\') {
            joined.pop();
            pending = Some((start, joined));
            continue;
        }
        if let Some((k, v)) = joined.split_once('=') {
            out.push(Directive {
                line: start,
                section: section.clone(),
                key: k.trim().to_string(),
                value: v.trim().to_string(),
            });
        }
    }
    if let Some((start, joined)) = pending
        && let Some((k, v)) = joined.split_once('=')
    {
        out.push(Directive {
            line: start,
            section,
            key: k.trim().to_string(),
            value: v.trim().to_string(),
        });
    }
    out
}

/// Dependencies that pull a unit in (or fail without it); ordering alone is not one.
const PULLS: &[&str] = &[
    "Requires",
    "Requisite",
    "BindsTo",
    "PartOf",
    "Upholds",
    "Wants",
];
/// Of those, the ones under which this unit fails or stops when the other is missing.
const HARD: &[&str] = &["Requires", "Requisite", "BindsTo", "PartOf", "Upholds"];

fn is_zfs_unit(u: &str) -> bool {
    u.starts_with("zfs") || u.starts_with("zpool") || u == "zed.service"
}

/// Units whose start imports pools: the import target and services, and `zfs.target`, which
/// wants them on the distributions that ship it.
fn imports_pools(u: &str) -> bool {
    u.starts_with("zfs-import") || u == "zfs.target"
}

fn is_network_wait(u: &str) -> bool {
    u == "network-online.target"
        || u.ends_with("-wait-online.service")
        || (u.contains("-wait-online@") && u.ends_with(".service"))
}

fn dependency(d: &Directive, unit: &str, out: &mut Vec<Finding>) {
    let what = format!("line {}: {}={unit}", d.line, d.key);
    let hard = HARD.contains(&d.key.as_str());
    if is_zfs_unit(unit) {
        if imports_pools(unit) {
            out.push(Finding::new(
                Rule::ImportsPools,
                format!("{what} imports pools at boot, without the operator's approval"),
            ));
        }
        if unit == "zfs-mount.service" {
            out.push(Finding::new(
                Rule::MountsCrashedRoot,
                format!("{what} mounts every dataset of the imported pools at boot"),
            ));
        }
        if hard {
            out.push(Finding::new(
                Rule::AssumesZfs,
                format!(
                    "{what} fails the unit where ZFS is missing; order with After= and let \
                     asl-preflight detect ZFS"
                ),
            ));
        }
    } else if is_network_wait(unit) {
        out.push(Finding::new(
            Rule::AssumesNetwork,
            format!(
                "{what} holds the unit until the network is up{}; asl-preflight detects the \
                 network instead",
                if hard {
                    ", and fails it without one"
                } else {
                    ""
                }
            ),
        ));
    } else if unit.ends_with(".mount") || unit.ends_with(".automount") {
        out.push(Finding::new(
            Rule::MountsCrashedRoot,
            format!("{what} mounts a filesystem at boot; mounting is the operator's step"),
        ));
    }
}

/// Splits a command line as systemd does for `Exec…=`: whitespace-separated words, with
/// single and double quotes grouping (and removed).
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The simple commands of a shell script, split at `;`, `&`, `|`, newlines and parentheses.
fn shell_commands(script: &str) -> Vec<Vec<String>> {
    script
        .split([';', '&', '|', '\n', '(', ')'])
        .map(words)
        .filter(|w| !w.is_empty())
        .collect()
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// `zpool import` options that take a value (the value is not a pool name).
const ZPOOL_IMPORT_VALUE_OPTS: &[&str] = &["-d", "-o", "-R", "-c", "-T", "--rewind-to-checkpoint"];

fn command(line: usize, key: &str, argv: &[String], may_fail: bool, out: &mut Vec<Finding>) {
    // `env VAR=x prog`, `exec prog`: the program is further on.
    let mut argv = argv;
    while let Some(first) = argv.first() {
        let b = basename(first);
        if b == "env" || b == "exec" || b == "nohup" || (argv.len() > 1 && first.contains('=')) {
            argv = &argv[1..];
            while argv.first().is_some_and(|a| a.contains('=')) {
                argv = &argv[1..];
            }
        } else {
            break;
        }
    }
    let Some(prog) = argv.first() else { return };
    let args = &argv[1..];
    let shown = argv.join(" ");
    let what = format!("line {line}: {key} runs `{shown}`");
    match basename(prog) {
        "sh" | "bash" | "dash" | "zsh" | "ash" => {
            if let Some(i) = args.iter().position(|a| a == "-c")
                && let Some(script) = args.get(i + 1)
            {
                for c in shell_commands(script) {
                    command(line, key, &c, may_fail, out);
                }
            }
        }
        p @ ("zpool" | "zfs") => {
            if !may_fail {
                out.push(Finding::new(
                    Rule::AssumesZfs,
                    format!(
                        "{what}, which fails the unit where ZFS is missing; asl-preflight \
                         detects ZFS"
                    ),
                ));
            }
            let sub = args.first().map(String::as_str);
            let rest = args.get(1..).unwrap_or(&[]);
            if p == "zpool" && sub == Some("import") && pool_import_names_pools(rest) {
                out.push(Finding::new(
                    Rule::ImportsPools,
                    format!("{what}, importing pools at boot without the operator's approval"),
                ));
            }
            if p == "zfs" && sub == Some("mount") && !rest.is_empty() {
                out.push(Finding::new(
                    Rule::MountsCrashedRoot,
                    format!("{what}, mounting datasets at boot; mounting is the operator's step"),
                ));
            }
        }
        "modprobe" | "insmod" if !may_fail && args.iter().any(|a| a == "zfs") => {
            out.push(Finding::new(
                Rule::AssumesZfs,
                format!("{what}, which fails the unit where ZFS is missing"),
            ));
        }
        // `mount` alone or `mount -l` lists; `-a` or a device or directory mounts.
        "mount" | "systemd-mount"
            if args
                .iter()
                .any(|a| a == "-a" || a == "--all" || !a.starts_with('-')) =>
        {
            out.push(Finding::new(
                Rule::MountsCrashedRoot,
                format!("{what}, mounting at boot; mounting is the operator's step"),
            ));
        }
        p if p.starts_with("mount.") => {
            out.push(Finding::new(
                Rule::MountsCrashedRoot,
                format!("{what}, mounting at boot; mounting is the operator's step"),
            ));
        }
        "nm-online" | "systemd-networkd-wait-online" => {
            out.push(Finding::new(
                Rule::AssumesNetwork,
                format!("{what}, which waits for the network; asl-preflight detects it"),
            ));
        }
        _ => {}
    }
}

/// Whether `zpool import ARGS` imports (`-a` or a pool name) rather than only listing.
fn pool_import_names_pools(args: &[String]) -> bool {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "-a" || (a.starts_with('-') && !a.starts_with("--") && a[1..].contains('a')) {
            return true;
        }
        if ZPOOL_IMPORT_VALUE_OPTS.contains(&a) {
            i += 2;
            continue;
        }
        if !a.starts_with('-') {
            return true;
        }
        i += 1;
    }
    false
}

const SYSTEM_TREES: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"];

fn is_under(path: &str, root: &str) -> bool {
    path == root || path.strip_prefix(root).is_some_and(|r| r.starts_with('/'))
}

/// A path the unit may write to.
fn write_path(d: &Directive, path: &str, out: &mut Vec<Finding>) {
    let what = format!("line {}: {}={}", d.line, d.key, d.value);
    if let Some(root) = SYSTEM_TREES.iter().find(|r| is_under(path, r)) {
        out.push(Finding::new(
            Rule::WritesSystemTree,
            format!("{what} lets the unit write to {root}; state goes to /var/lib/asl or /run/asl"),
        ));
    } else if is_under(path, "/etc") {
        out.push(Finding::new(
            Rule::StateInEtc,
            format!("{what} lets the unit write to /etc; state goes to /var/lib/asl or /run/asl"),
        ));
    }
}

/// Checks the text of a unit file or drop-in against the rules.
pub fn check_unit(text: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for d in directives(text) {
        let key = d.key.as_str();
        if d.section == "Unit" && PULLS.contains(&key) {
            for u in d.value.split_whitespace() {
                dependency(&d, u, &mut out);
            }
        } else if d.section == "Unit" && (key == "RequiresMountsFor" || key == "WantsMountsFor") {
            out.push(Finding::new(
                Rule::MountsCrashedRoot,
                format!(
                    "line {}: {key}={} mounts what fstab or mount units name for these paths \
                     at boot; mounting is the operator's step",
                    d.line, d.value
                ),
            ));
        } else if d.section == "Unit" && key.starts_with("Assert") {
            let v = d.value.to_ascii_lowercase();
            if v.contains("zfs") || v.contains("zpool") {
                out.push(Finding::new(
                    Rule::AssumesZfs,
                    format!(
                        "line {}: {key}={} fails the unit where ZFS is missing; use a \
                         Condition… or let asl-preflight detect it",
                        d.line, d.value
                    ),
                ));
            }
        } else if key.starts_with("Exec") {
            // Prefixes: '-' ignores the exit status, so a missing tool does not fail the unit.
            let v = d.value.as_str();
            let flags: String = v.chars().take_while(|c| "-@:+!".contains(*c)).collect();
            let argv = words(&v[flags.len()..]);
            // '@' makes the second word argv[0]; the program is still the first.
            let argv = if flags.contains('@') && argv.len() > 1 {
                std::iter::once(argv[0].clone())
                    .chain(argv[2..].iter().cloned())
                    .collect()
            } else {
                argv
            };
            command(d.line, key, &argv, flags.contains('-'), &mut out);
        } else if key == "ReadWritePaths" {
            for p in d.value.split_whitespace() {
                write_path(&d, p.trim_start_matches(['-', '+']), &mut out);
            }
        } else if key == "StandardOutput" || key == "StandardError" {
            for prefix in ["file:", "append:", "truncate:"] {
                if let Some(p) = d.value.strip_prefix(prefix) {
                    write_path(&d, p, &mut out);
                }
            }
        } else if key == "PIDFile" {
            write_path(&d, &d.value, &mut out);
        }
    }
    out
}

/// The program paths the unit's `Exec…=` lines run (`/usr/local/bin/asl-preflight`), with the
/// line they are on, so that the lint can require the tools our units need.
pub fn programs(text: &str) -> Vec<(String, String)> {
    directives(text)
        .into_iter()
        .filter(|d| d.key.starts_with("Exec"))
        .filter_map(|d| {
            let v = d.value.trim_start_matches(['-', '@', ':', '+', '!']);
            let prog = words(v).into_iter().next()?;
            Some((prog, format!("line {}: {}={}", d.line, d.key, d.value)))
        })
        .collect()
}

/// Checks an `fstab`: every entry mounts at boot (unless `noauto`), so any entry is a finding.
pub fn check_fstab(text: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = t.split_whitespace().collect();
        let opts = f.get(3).copied().unwrap_or("");
        if opts.split(',').any(|o| o == "noauto") {
            continue;
        }
        out.push(Finding::new(
            Rule::MountsCrashedRoot,
            format!(
                "line {}: mounts {} on {} at boot; the rescue system mounts nothing of the \
                 crashed system by itself",
                i + 1,
                f.first().unwrap_or(&"?"),
                f.get(1).unwrap_or(&"?")
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Vec<Rule> {
        let mut r: Vec<Rule> = check_unit(text).into_iter().map(|f| f.rule).collect();
        r.sort();
        r
    }

    #[test]
    fn ordering_and_conditions_are_not_findings() {
        let t = "[Unit]\nAfter=zfs-load-module.service network-online.target local-fs.target\n\
                 ConditionPathExists=/dev/zfs\n[Service]\nExecStart=/usr/local/bin/asl-preflight\n";
        assert_eq!(rules(t), vec![]);
    }

    #[test]
    fn zfs_dependencies_and_commands() {
        assert_eq!(
            rules("[Unit]\nRequires=zfs-import.target\n"),
            vec![Rule::AssumesZfs, Rule::ImportsPools]
        );
        assert_eq!(
            rules("[Unit]\nWants=zfs-import-cache.service\n"),
            vec![Rule::ImportsPools]
        );
        assert_eq!(
            rules("[Unit]\nRequisite=zfs-load-module.service\n"),
            vec![Rule::AssumesZfs]
        );
        assert_eq!(
            rules("[Service]\nExecStartPre=zpool import -a\n"),
            vec![Rule::AssumesZfs, Rule::ImportsPools]
        );
        // '-': a missing zpool no longer fails the unit, but the import still happens.
        assert_eq!(
            rules("[Service]\nExecStartPre=-/sbin/zpool import -N rescuepool\n"),
            vec![Rule::ImportsPools]
        );
        // Listing importable pools imports nothing.
        assert_eq!(
            rules("[Service]\nExecStartPre=-/sbin/zpool import -d /dev/disk/by-id\n"),
            vec![]
        );
        assert_eq!(
            rules(
                "[Service]\nExecStart=/bin/sh -c 'modprobe zfs && zpool import -a; exec asl-intake'\n"
            ),
            vec![Rule::AssumesZfs, Rule::AssumesZfs, Rule::ImportsPools]
        );
        assert_eq!(
            rules("[Unit]\nAssertPathExists=/dev/zfs\n"),
            vec![Rule::AssumesZfs]
        );
    }

    #[test]
    fn network_mount_and_write_rules() {
        assert_eq!(
            rules("[Unit]\nWants=network-online.target\n"),
            vec![Rule::AssumesNetwork]
        );
        assert_eq!(
            rules("[Unit]\nRequires=systemd-networkd-wait-online.service\n"),
            vec![Rule::AssumesNetwork]
        );
        assert_eq!(
            rules("[Unit]\nRequires=mnt-sysroot.mount\n"),
            vec![Rule::MountsCrashedRoot]
        );
        assert_eq!(
            rules("[Unit]\nRequiresMountsFor=/mnt/asl/local\n"),
            vec![Rule::MountsCrashedRoot]
        );
        assert_eq!(
            rules("[Service]\nExecStartPre=/bin/mount /dev/sda2 /mnt\n"),
            vec![Rule::MountsCrashedRoot]
        );
        assert_eq!(
            rules("[Service]\nReadWritePaths=/usr/local\n"),
            vec![Rule::WritesSystemTree]
        );
        assert_eq!(
            rules("[Service]\nStandardOutput=append:/etc/asl/intake.log\n"),
            vec![Rule::StateInEtc]
        );
        // /usrx is not /usr.
        assert_eq!(
            rules("[Service]\nReadWritePaths=/usrx /var/lib/asl\n"),
            vec![]
        );
    }

    #[test]
    fn listing_mounts_is_not_mounting() {
        assert_eq!(rules("[Service]\nExecStartPre=/bin/mount -l\n"), vec![]);
        assert_eq!(
            rules("[Service]\nExecStartPre=/bin/mount -a\n"),
            vec![Rule::MountsCrashedRoot]
        );
    }

    #[test]
    fn json_names_a_rule_by_its_id() {
        for r in Rule::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.id());
        }
    }

    #[test]
    fn continuation_lines_are_joined() {
        let t = "[Unit]\nRequires=asl-preflight.service \\\n  zfs-import.target\n";
        let f = check_unit(t);
        assert!(
            f.iter()
                .any(|f| f.rule == Rule::ImportsPools && f.detail.starts_with("line 2:")),
            "{f:?}"
        );
    }

    #[test]
    fn fstab_entries_mount_unless_noauto() {
        let f =
            check_fstab("# none\nUUID=abc / ext4 defaults 0 1\n/dev/sdb1 /mnt/x ext4 noauto 0 0\n");
        assert_eq!(f.len(), 1);
        assert!(
            f[0].detail.starts_with("line 2: mounts UUID=abc on /"),
            "{:?}",
            f[0]
        );
    }
}
