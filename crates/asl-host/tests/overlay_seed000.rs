//! The rescue lint against seed 000 itself: a tree written by hand from the seed's text passes;
//! the project's additions are required only where a unit of the tree needs them, saying so;
//! and each ❌ of the seed (and its "never auto-import pools") fails with a message naming the
//! file and the rule.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use asl_host::overlay::rules::Rule;
use asl_host::overlay::{self, Profile, Violation};

/// The seed's asl.conf example (§3), verbatim.
const SEED_ASL_CONF: &str = "mode = auto # auto | local | remote
local.mount = /mnt/asl/local
remote.endpoint = https://asl-backend
domain.id = rescue-domain
";

/// asl-preflight.service as §4 describes it: runs once at boot, detects network, ZFS and
/// importable pools, writes its decision to /run/asl/mode, mutates nothing. The seed names no
/// preflight program; this one runs a tool the seed lists, so the tree holds nothing else.
const SEED_PREFLIGHT_UNIT: &str = "[Unit]
Description=ASL preflight: detect network, ZFS and importable pools
After=local-fs.target zfs-load-module.service
Before=asl-intake.service

[Service]
Type=oneshot
RemainAfterExit=yes
RuntimeDirectory=asl
RuntimeDirectoryPreserve=yes
ExecStart=/usr/local/bin/asl-admin preflight

[Install]
WantedBy=multi-user.target
";

/// asl-intake.service as §4 describes it: reads /run/asl/mode, chooses local or remote, starts
/// the intake loop or waits for the operator.
const SEED_INTAKE_UNIT: &str = "[Unit]
Description=ASL intake
Requires=asl-preflight.service
After=asl-preflight.service

[Service]
ExecStart=/usr/local/bin/asl-intake --service

[Install]
WantedBy=multi-user.target
";

fn write(root: &Path, rel: &str, text: &str, mode: u32) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Seed 000's "Canonical overlay layout" (§2), entry by entry, and nothing else.
fn seed_tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    std::fs::set_permissions(r, std::fs::Permissions::from_mode(0o755)).unwrap();
    for tool in ["asl-intake", "asl-admin", "asl-debug"] {
        write(
            r,
            &format!("usr/local/bin/{tool}"),
            "#!/bin/sh\nexit 0\n",
            0o755,
        );
    }
    write(r, "usr/local/lib/libasl.so", "\x7fELF stand-in", 0o644);
    write(r, "etc/asl/asl.conf", SEED_ASL_CONF, 0o644);
    write(
        r,
        "etc/asl/federation.conf",
        "# domain + peer config\ndomain.id = rescue-domain\n",
        0o644,
    );
    write(r, "etc/asl/logging.conf", "", 0o644);
    write(
        r,
        "etc/systemd/system/asl-intake.service",
        SEED_INTAKE_UNIT,
        0o644,
    );
    write(
        r,
        "etc/systemd/system/asl-preflight.service",
        SEED_PREFLIGHT_UNIT,
        0o644,
    );
    for d in [
        "var/lib/asl/runtime",
        "var/lib/asl/cache",
        "var/lib/asl/locks",
        "run/asl/sockets",
        "mnt/asl/local",
        "mnt/asl/remote",
    ] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    // tempfile and umask can leave group/other bits anywhere; the seed ships 0755 directories.
    chmod_dirs(r);
    t
}

fn chmod_dirs(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            chmod_dirs(&p);
        }
    }
}

fn lint(dir: &Path) -> Vec<Violation> {
    overlay::lint(dir, Profile::Rescue).unwrap()
}

#[test]
fn a_tree_written_from_seed_000_passes_the_rescue_lint() {
    let t = seed_tree();
    assert_eq!(lint(t.path()), vec![]);
}

#[test]
fn the_entries_seed_000_calls_optional_may_be_left_out() {
    let t = seed_tree();
    for d in ["var/lib/asl/cache", "run/asl/sockets", "mnt/asl/remote"] {
        std::fs::remove_dir(t.path().join(d)).unwrap();
    }
    std::fs::remove_file(t.path().join("usr/local/lib/libasl.so")).unwrap();
    std::fs::remove_dir(t.path().join("usr/local/lib")).unwrap();
    assert_eq!(lint(t.path()), vec![]);
}

#[test]
fn every_entry_seed_000_requires_is_reported_missing_with_the_seeds_words() {
    for (rel, words) in [
        ("usr/local/bin/asl-debug", "Low-level validation"),
        ("etc/asl/logging.conf", "logging.conf"),
        ("var/lib/asl/locks", "locks/"),
        ("mnt/asl/local", "local ZFS mount target"),
    ] {
        let t = seed_tree();
        let p = t.path().join(rel);
        if p.is_dir() {
            std::fs::remove_dir(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
        let v = lint(t.path());
        assert_eq!(v.len(), 1, "{rel}: {v:#?}");
        assert_eq!(v[0].path, Path::new(rel));
        assert!(
            v[0].message.starts_with("missing (seed 000 lists it"),
            "{}",
            v[0]
        );
        assert!(v[0].message.contains(words), "{}", v[0]);
    }
}

#[test]
fn our_units_require_the_tools_they_run_and_say_so() {
    // The seed's tree with the project's generated units: they run asl-preflight, which the
    // seed does not list. That is the one thing missing, and the message says which unit needs it.
    let t = seed_tree();
    for (name, text) in asl_host::units::all() {
        write(
            t.path(),
            &format!("etc/systemd/system/{name}"),
            &text,
            0o644,
        );
    }
    let v = lint(t.path());
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(v[0].path, Path::new("usr/local/bin/asl-preflight"));
    assert!(
        v[0].message.contains(
            "etc/systemd/system/asl-preflight.service runs it (line 13: ExecStart=/usr/local/bin/asl-preflight)"
        ),
        "{}",
        v[0]
    );
    assert!(
        v[0].message.contains("seed 000 does not list this tool"),
        "{}",
        v[0]
    );

    // With the tool, and the project's other additions, the tree passes.
    std::fs::hard_link(
        t.path().join("usr/local/bin/asl-intake"),
        t.path().join("usr/local/bin/asl-preflight"),
    )
    .unwrap();
    std::fs::hard_link(
        t.path().join("usr/local/bin/asl-intake"),
        t.path().join("usr/local/bin/asl"),
    )
    .unwrap();
    let wants = t.path().join("etc/systemd/system/multi-user.target.wants");
    std::fs::create_dir(&wants).unwrap();
    std::fs::set_permissions(&wants, std::fs::Permissions::from_mode(0o755)).unwrap();
    for u in ["asl-preflight.service", "asl-intake.service"] {
        std::os::unix::fs::symlink(format!("../{u}"), wants.join(u)).unwrap();
    }
    assert_eq!(lint(t.path()), vec![]);
}

/// One way of breaking a rule: what to do to the seed's tree, and which file must be named.
struct Breach {
    rule: Rule,
    path: &'static str,
    apply: fn(&Path),
}

fn add_to_unit(root: &Path, unit: &str, section: &str, line: &str) {
    let p = root.join("etc/systemd/system").join(unit);
    let text = std::fs::read_to_string(&p).unwrap();
    let header = format!("[{section}]\n");
    let text = text.replacen(&header, &format!("{header}{line}\n"), 1);
    assert!(text.contains(line), "no [{section}] in {unit}");
    std::fs::write(&p, text).unwrap();
}

const PREFLIGHT: &str = "etc/systemd/system/asl-preflight.service";
const INTAKE: &str = "etc/systemd/system/asl-intake.service";

fn breaches() -> Vec<Breach> {
    vec![
        // ❌ Writing to /usr, /bin, /lib
        Breach {
            rule: Rule::WritesSystemTree,
            path: "usr/bin/asl-helper",
            apply: |r| write(r, "usr/bin/asl-helper", "#!/bin/sh\n", 0o755),
        },
        Breach {
            rule: Rule::WritesSystemTree,
            path: "lib/asl/plugin.so",
            apply: |r| write(r, "lib/asl/plugin.so", "x", 0o644),
        },
        Breach {
            rule: Rule::WritesSystemTree,
            path: INTAKE,
            apply: |r| {
                add_to_unit(
                    r,
                    "asl-intake.service",
                    "Service",
                    "ReadWritePaths=/usr/local/bin",
                )
            },
        },
        // ❌ Storing state in /etc
        Breach {
            rule: Rule::StateInEtc,
            path: "etc/asl/mode",
            apply: |r| write(r, "etc/asl/mode", "local\n", 0o644),
        },
        Breach {
            rule: Rule::StateInEtc,
            path: INTAKE,
            apply: |r| {
                add_to_unit(
                    r,
                    "asl-intake.service",
                    "Service",
                    "StandardOutput=append:/etc/asl/intake.log",
                )
            },
        },
        // ❌ Auto-mounting the crashed system root
        Breach {
            rule: Rule::MountsCrashedRoot,
            path: "etc/fstab",
            apply: |r| {
                write(
                    r,
                    "etc/fstab",
                    "# crashed root\nUUID=0a1b2c3d / ext4 defaults 0 1\n",
                    0o644,
                )
            },
        },
        Breach {
            rule: Rule::MountsCrashedRoot,
            path: "etc/systemd/system/mnt-sysroot.mount",
            apply: |r| {
                write(
                    r,
                    "etc/systemd/system/mnt-sysroot.mount",
                    "[Mount]\nWhat=/dev/sda2\nWhere=/mnt/sysroot\n",
                    0o644,
                )
            },
        },
        Breach {
            rule: Rule::MountsCrashedRoot,
            path: INTAKE,
            apply: |r| {
                add_to_unit(
                    r,
                    "asl-intake.service",
                    "Service",
                    "ExecStartPre=/bin/mount /dev/sda2 /mnt/sysroot",
                )
            },
        },
        // ❌ Assuming ZFS exists
        Breach {
            rule: Rule::AssumesZfs,
            path: PREFLIGHT,
            apply: |r| {
                add_to_unit(
                    r,
                    "asl-preflight.service",
                    "Unit",
                    "Requires=zfs-import.target",
                )
            },
        },
        Breach {
            rule: Rule::AssumesZfs,
            path: INTAKE,
            apply: |r| {
                add_to_unit(
                    r,
                    "asl-intake.service",
                    "Service",
                    "ExecStartPre=zpool import -a",
                )
            },
        },
        Breach {
            rule: Rule::AssumesZfs,
            path: PREFLIGHT,
            apply: |r| {
                add_to_unit(
                    r,
                    "asl-preflight.service",
                    "Service",
                    "ExecStartPre=/sbin/modprobe zfs",
                )
            },
        },
        // ❌ Assuming network exists
        Breach {
            rule: Rule::AssumesNetwork,
            path: INTAKE,
            apply: |r| {
                add_to_unit(
                    r,
                    "asl-intake.service",
                    "Unit",
                    "Requires=network-online.target\nAfter=network-online.target",
                )
            },
        },
        Breach {
            rule: Rule::AssumesNetwork,
            path: PREFLIGHT,
            apply: |r| {
                add_to_unit(
                    r,
                    "asl-preflight.service",
                    "Unit",
                    "Wants=network-online.target",
                )
            },
        },
        Breach {
            rule: Rule::AssumesNetwork,
            path: INTAKE,
            apply: |r| {
                add_to_unit(
                    r,
                    "asl-intake.service",
                    "Service",
                    "ExecStartPre=/usr/bin/nm-online -q",
                )
            },
        },
        // §5 Never auto-import pools without operator or config approval
        Breach {
            rule: Rule::ImportsPools,
            path: INTAKE,
            apply: |r| {
                add_to_unit(
                    r,
                    "asl-intake.service",
                    "Service",
                    "ExecStartPre=-/sbin/zpool import -N rescuepool",
                )
            },
        },
        Breach {
            rule: Rule::ImportsPools,
            path: PREFLIGHT,
            apply: |r| {
                add_to_unit(
                    r,
                    "asl-preflight.service",
                    "Unit",
                    "Wants=zfs-import-cache.service",
                )
            },
        },
        Breach {
            rule: Rule::ImportsPools,
            path: "etc/zfs/zpool.cache",
            apply: |r| write(r, "etc/zfs/zpool.cache", "\0\0\0\x0c", 0o644),
        },
    ]
}

#[test]
fn each_forbidden_item_of_seed_000_fails_naming_the_file_and_the_rule() {
    let all = breaches();
    for rule in Rule::ALL {
        assert!(all.iter().any(|b| b.rule == rule), "no case for {rule:?}");
    }
    for b in all {
        let t = seed_tree();
        (b.apply)(t.path());
        let v = lint(t.path());
        assert!(!v.is_empty(), "{:?} at {} passed", b.rule, b.path);
        // Only the breached file is named (a stray directory created for it is not reported
        // on its own).
        assert!(
            v.iter().all(|x| x.path == Path::new(b.path)),
            "{:?} at {}: {v:#?}",
            b.rule,
            b.path
        );
        let hit = v.iter().find(|x| x.rule == Some(b.rule));
        let Some(hit) = hit else {
            panic!("{:?} at {}: {v:#?}", b.rule, b.path);
        };
        // The printed line names the file, the rule and the seed's words.
        let line = hit.to_string();
        assert!(line.starts_with(&format!("{}: ", b.path)), "{line}");
        assert!(line.contains(&format!("rule {}", b.rule.id())), "{line}");
        assert!(line.contains(b.rule.seed_wording()), "{line}");
    }
}

#[test]
fn zpool_import_a_in_a_unit_is_both_a_zfs_assumption_and_an_import() {
    let t = seed_tree();
    add_to_unit(
        t.path(),
        "asl-intake.service",
        "Service",
        "ExecStartPre=zpool import -a",
    );
    let v = lint(t.path());
    let mut rules: Vec<_> = v.iter().map(|x| x.rule).collect();
    rules.sort();
    assert_eq!(
        rules,
        vec![Some(Rule::AssumesZfs), Some(Rule::ImportsPools)],
        "{v:#?}"
    );
    for x in &v {
        assert!(
            x.message
                .starts_with("line 7: ExecStartPre runs `zpool import -a`"),
            "{x}"
        );
    }
}

#[test]
fn detecting_is_not_presuming() {
    // Ordering after ZFS or the network, conditions on them, and a '-' zpool listing are
    // what a unit may do: the seed wants assumptions detected, not presumed.
    let t = seed_tree();
    add_to_unit(
        t.path(),
        "asl-preflight.service",
        "Unit",
        "After=network-online.target zfs-import.target\nConditionPathExists=/dev/zfs",
    );
    add_to_unit(
        t.path(),
        "asl-preflight.service",
        "Service",
        "ExecStartPre=-/sbin/zpool import",
    );
    assert_eq!(lint(t.path()), vec![]);
}

#[test]
fn docs_list_every_rule_next_to_the_seeds_words() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/asl-image.md"),
    )
    .unwrap();
    for rule in Rule::ALL {
        // The table row: `| `id` | §N "the seed's words" | … |`, backticks as in the seed.
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", rule.id())))
            .unwrap_or_else(|| panic!("docs/asl-image.md has no row for {}", rule.id()));
        let words = rule.seed_wording();
        assert!(
            row.replace(['`', '"'], "").contains(words),
            "{}: the row does not quote {words:?}: {row}",
            rule.id()
        );
    }
}
