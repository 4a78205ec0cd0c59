//! End-to-end tests of the library against the real kernel. Each test runs as root in its own
//! private mount namespace (see `asl_usroverlay::testing`): mounts it makes never reach the
//! host and vanish with the namespace, also when an assertion fails.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use asl_usroverlay::testing::{as_user, machine, mount_table, tree_snapshot};
use asl_usroverlay::{
    ApplyRequest, BootOutcome, Error, Mode, Overlays, State, StateDirs, mountinfo,
};

/// A small tree to cover: bin/tool, share/doc/{a,b}.txt, share/keep/x.
fn fake_tree(parent: &Path, name: &str) -> PathBuf {
    let t = parent.join(name);
    fs::create_dir_all(t.join("bin")).unwrap();
    fs::create_dir_all(t.join("share/doc")).unwrap();
    fs::create_dir_all(t.join("share/keep")).unwrap();
    fs::write(t.join("bin/tool"), "tool v1\n").unwrap();
    fs::write(t.join("share/doc/a.txt"), "a\n").unwrap();
    fs::write(t.join("share/doc/b.txt"), "b\n").unwrap();
    fs::write(t.join("share/keep/x"), "x\n").unwrap();
    fs::set_permissions(&t, fs::Permissions::from_mode(0o755)).unwrap();
    t
}

fn req(path: &Path, mode: Mode, name: Option<&str>) -> ApplyRequest {
    ApplyRequest {
        path: path.to_path_buf(),
        mode,
        name: name.map(str::to_string),
        tmpfs_size: None,
    }
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// Everything a rejected call must leave alone: the mount table and the state tree.
fn untouched_snapshot(dirs_root: &Path) -> (String, Vec<String>) {
    (mount_table(), tree_snapshot(dirs_root))
}

#[test]
fn apply_on_usr_shows_changes_keeps_lower_untouched_and_diff_lists_exactly_them() {
    machine(
        "apply_on_usr_shows_changes_keeps_lower_untouched_and_diff_lists_exactly_them",
        |m| {
            let usr = Path::new("/usr");
            let (changed, deleted) = ("share/common-licenses/GPL-3", "bin/yes");
            for f in [changed, deleted] {
                assert!(usr.join(f).is_file(), "test needs /usr/{f} on this system");
            }
            let original = fs::read(usr.join(changed)).unwrap();
            // A descriptor of the real /usr, opened before the overlay covers it: paths
            // through /proc/self/fd/N keep showing the lower tree.
            let lower_fd = fs::File::open(usr).unwrap();
            let lower = PathBuf::from(format!("/proc/self/fd/{}", lower_fd.as_raw_fd()));

            let ov = Overlays::new(m.dirs());
            let applied = ov.apply(&req(usr, Mode::Transient, None)).unwrap();
            assert_eq!(applied.record.name, "usr");
            assert!(
                applied.warnings.iter().any(|w| w.contains("/var/lib/dpkg")),
                "no package-manager warning in {:?}",
                applied.warnings
            );

            fs::write(usr.join("asl-usroverlay-added"), "new\n").unwrap();
            fs::OpenOptions::new()
                .append(true)
                .open(usr.join(changed))
                .unwrap()
                .write_all(b"\nappended by the test\n")
                .unwrap();
            fs::remove_file(usr.join(deleted)).unwrap();

            // Visible through the overlay ...
            assert_eq!(
                fs::read_to_string(usr.join("asl-usroverlay-added")).unwrap(),
                "new\n"
            );
            assert!(
                fs::read_to_string(usr.join(changed))
                    .unwrap()
                    .ends_with("appended by the test\n")
            );
            assert!(!usr.join(deleted).exists());
            // ... while the real tree underneath is unchanged.
            assert!(!lower.join("asl-usroverlay-added").exists());
            assert_eq!(fs::read(lower.join(changed)).unwrap(), original);
            assert!(lower.join(deleted).is_file());

            let d = ov.diff("usr").unwrap();
            assert_eq!(d.added, vec![p("/usr/asl-usroverlay-added")]);
            assert_eq!(d.changed, vec![p("/usr/share/common-licenses/GPL-3")]);
            assert_eq!(d.deleted, vec![p("/usr/bin/yes")]);
            assert!(d.opaque.is_empty(), "unexpected opaque dirs {:?}", d.opaque);

            let st = ov.status().unwrap();
            assert_eq!(st.len(), 1);
            assert_eq!(st[0].state, State::Active);
            assert_eq!(st[0].record.mode, Mode::Transient);
            assert_eq!(st[0].record.path, usr);
            let usage = st[0].usage.expect("root can read the upper layer");
            assert!(usage.bytes >= original.len() as u64 && usage.entries >= 3);
        },
    );
}

#[test]
fn diff_lists_whiteouts_and_opaque_directories() {
    machine("diff_lists_whiteouts_and_opaque_directories", |m| {
        let tree = fake_tree(&m.disk(), "tree");
        let ov = Overlays::new(m.dirs());
        ov.apply(&req(&tree, Mode::Transient, Some("t"))).unwrap();
        fs::remove_file(tree.join("bin/tool")).unwrap();
        fs::remove_dir_all(tree.join("share/doc")).unwrap();
        fs::create_dir(tree.join("share/doc")).unwrap();
        fs::write(tree.join("share/doc/a.txt"), "a again\n").unwrap();
        fs::write(tree.join("share/doc/c.txt"), "c\n").unwrap();

        let upper = ov.records().unwrap()[0].upper();
        let wh = fs::symlink_metadata(upper.join("bin/tool")).unwrap();
        assert_eq!(
            (wh.mode() & 0o170000, wh.rdev()),
            (0o020000, 0),
            "deletion is stored as a 0/0 character device"
        );

        let d = ov.diff("t").unwrap();
        assert_eq!(d.deleted, vec![tree.join("bin/tool")]);
        assert_eq!(d.opaque, vec![tree.join("share/doc")]);
        assert_eq!(d.changed, vec![tree.join("share/doc/a.txt")]);
        assert_eq!(d.added, vec![tree.join("share/doc/c.txt")]);
        // b.txt is hidden by the opaque directory, not listed one by one.
        assert!(!tree.join("share/doc/b.txt").exists());
    });
}

#[test]
fn reset_discards_changes_and_leaves_a_writable_overlay() {
    machine(
        "reset_discards_changes_and_leaves_a_writable_overlay",
        |m| {
            let ov = Overlays::new(m.dirs());
            for (name, mode) in [("tr", Mode::Transient), ("hf", Mode::Hotfix)] {
                let tree = fake_tree(&m.disk(), name);
                ov.apply(&req(&tree, mode, Some(name))).unwrap();
                fs::write(tree.join("bin/tool"), "patched\n").unwrap();
                fs::write(tree.join("new"), "n\n").unwrap();
                fs::remove_file(tree.join("share/keep/x")).unwrap();
                assert_eq!(ov.diff(name).unwrap().len(), 3);

                ov.reset(name, false).unwrap();

                assert_eq!(
                    fs::read_to_string(tree.join("bin/tool")).unwrap(),
                    "tool v1\n"
                );
                assert!(!tree.join("new").exists());
                assert_eq!(
                    fs::read_to_string(tree.join("share/keep/x")).unwrap(),
                    "x\n"
                );
                assert!(ov.diff(name).unwrap().is_empty(), "{mode}: upper not empty");
                let st = ov.status().unwrap();
                let me = st.iter().find(|s| s.record.name == name).unwrap();
                assert_eq!((me.state, me.record.mode), (State::Active, mode));
                // Still writable, and the writes land in the (new) upper layer.
                fs::write(tree.join("after-reset"), "w\n").unwrap();
                assert_eq!(ov.diff(name).unwrap().added, vec![tree.join("after-reset")]);
            }
        },
    );
}

#[test]
fn reset_of_a_busy_overlay_names_it_and_force_detaches_lazily() {
    machine(
        "reset_of_a_busy_overlay_names_it_and_force_detaches_lazily",
        |m| {
            let tree = fake_tree(&m.disk(), "tree");
            let ov = Overlays::new(m.dirs());
            ov.apply(&req(&tree, Mode::Transient, Some("busy")))
                .unwrap();
            fs::write(tree.join("bin/tool"), "patched\n").unwrap();
            let mut held = fs::File::open(tree.join("bin/tool")).unwrap();

            let before = mount_table();
            match ov.reset("busy", false) {
                Err(e @ Error::Busy { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains("'busy'") && msg.contains("--force"), "{msg}");
                    let Error::Busy { holders, .. } = &e else {
                        unreachable!()
                    };
                    let open_file = format!("{}", tree.join("bin/tool").display());
                    assert!(
                        holders.iter().any(|h| h.pid == std::process::id()
                            && h.uses
                                .iter()
                                .any(|u| u.starts_with("fd ") && u.ends_with(&open_file))),
                        "the open file is not named: {msg}"
                    );
                    assert!(msg.contains("this process"), "{msg}");
                }
                other => panic!("expected Busy, got {other:?}"),
            }
            assert_eq!(mount_table(), before, "a refused reset changed the mounts");
            assert_eq!(
                fs::read_to_string(tree.join("bin/tool")).unwrap(),
                "patched\n"
            );

            ov.reset("busy", true).unwrap();
            // New opens see the clean overlay; the open file keeps its old content.
            assert_eq!(
                fs::read_to_string(tree.join("bin/tool")).unwrap(),
                "tool v1\n"
            );
            let mut s = String::new();
            held.read_to_string(&mut s).unwrap();
            assert_eq!(s, "patched\n");
            fs::write(tree.join("still-writable"), "y").unwrap();
        },
    );
}

#[test]
fn remove_puts_the_original_mount_back_and_deletes_all_state() {
    machine(
        "remove_puts_the_original_mount_back_and_deletes_all_state",
        |m| {
            let (t1, t2) = (fake_tree(&m.disk(), "t1"), fake_tree(&m.disk(), "t2"));
            let before_tables = mount_table();
            let before_trees = (tree_snapshot(&t1), tree_snapshot(&t2));
            let ov = Overlays::new(m.dirs());
            ov.apply(&req(&t1, Mode::Transient, Some("one"))).unwrap();
            ov.apply(&req(&t2, Mode::Hotfix, Some("two"))).unwrap();
            for t in [&t1, &t2] {
                fs::write(t.join("bin/tool"), "patched\n").unwrap();
            }
            assert_ne!(mount_table(), before_tables);

            for name in ["one", "two"] {
                let removed = ov.remove(name, false).unwrap();
                assert!(removed.was_active);
            }
            assert_eq!(mount_table(), before_tables, "mounts differ after remove");
            assert_eq!((tree_snapshot(&t1), tree_snapshot(&t2)), before_trees);
            assert!(ov.records().unwrap().is_empty());
            assert_eq!(tree_snapshot(&m.dirs().persistent), Vec::<String>::new());
            assert_eq!(
                tree_snapshot(&m.dirs().runtime),
                vec![".lock file Some([]) mode=100644 uid=0 gid=0".to_string()]
            );
        },
    );
}

#[test]
fn hotfix_survives_a_simulated_reboot_and_transient_does_not() {
    machine(
        "hotfix_survives_a_simulated_reboot_and_transient_does_not",
        |m| {
            let tree = m.disk().join("tree");
            m.boot(1, || {
                fake_tree(&m.disk(), "tree");
                let ov = Overlays::new(m.dirs());
                ov.apply(&req(Path::new("/usr"), Mode::Hotfix, None))
                    .unwrap();
                ov.apply(&req(&tree, Mode::Transient, Some("scratch")))
                    .unwrap();
                fs::write("/usr/asl-usroverlay-hotfix", "fix\n").unwrap();
                fs::write(tree.join("bin/tool"), "transient patch\n").unwrap();
            });
            m.boot(2, || {
                let ov = Overlays::new(m.dirs());
                // Fresh boot: nothing mounted yet, the transient overlay left no trace.
                let st = ov.status().unwrap();
                assert_eq!(st.len(), 1, "{st:?}");
                assert_eq!(
                    (st[0].record.name.as_str(), st[0].state),
                    ("usr", State::Stale)
                );
                assert!(!Path::new("/usr/asl-usroverlay-hotfix").exists());

                let out = ov.apply_boot().unwrap();
                assert_eq!(
                    out,
                    vec![BootOutcome::Reapplied {
                        name: "usr".into(),
                        path: p("/usr")
                    }]
                );
                assert_eq!(
                    fs::read_to_string("/usr/asl-usroverlay-hotfix").unwrap(),
                    "fix\n"
                );
                assert_eq!(
                    fs::read_to_string(tree.join("bin/tool")).unwrap(),
                    "tool v1\n"
                );
                assert_eq!(ov.status().unwrap()[0].state, State::Active);
                assert_eq!(
                    ov.diff("usr").unwrap().added,
                    vec![p("/usr/asl-usroverlay-hotfix")]
                );
                // A second boot pass is harmless.
                assert!(matches!(
                    ov.apply_boot().unwrap()[..],
                    [BootOutcome::AlreadyActive { .. }]
                ));
            });
        },
    );
}

#[test]
fn read_only_overlay_rejects_writes_with_erofs() {
    machine("read_only_overlay_rejects_writes_with_erofs", |m| {
        let tree = fake_tree(&m.disk(), "tree");
        let ov = Overlays::new(m.dirs());
        ov.apply(&req(&tree, Mode::ReadOnly, Some("ro"))).unwrap();
        let erofs = |r: std::io::Result<()>| {
            let e = r.expect_err("write succeeded on a read-only overlay");
            assert_eq!(e.kind(), std::io::ErrorKind::ReadOnlyFilesystem, "{e}");
        };
        erofs(fs::write(tree.join("new"), "x"));
        erofs(fs::write(tree.join("bin/tool"), "x"));
        erofs(fs::remove_file(tree.join("share/keep/x")));
        erofs(fs::create_dir(tree.join("dir")));
        assert_eq!(
            fs::read_to_string(tree.join("bin/tool")).unwrap(),
            "tool v1\n"
        );
        let st = ov.status().unwrap();
        assert_eq!(
            (st[0].state, st[0].record.mode),
            (State::Active, Mode::ReadOnly)
        );
        assert!(ov.diff("ro").unwrap().is_empty());
    });
}

#[test]
fn stale_entry_is_reported_refuses_reapply_and_is_cleaned_by_remove() {
    machine(
        "stale_entry_is_reported_refuses_reapply_and_is_cleaned_by_remove",
        |m| {
            let tree = fake_tree(&m.disk(), "tree");
            let before = mount_table();
            let ov = Overlays::new(m.dirs());
            ov.apply(&req(&tree, Mode::Transient, Some("gone")))
                .unwrap();
            // Somebody unmounts the overlay behind the tool's back.
            rustix::mount::unmount(&tree, rustix::mount::UnmountFlags::empty()).unwrap();

            let st = ov.status().unwrap();
            assert_eq!((st.len(), st[0].state), (1, State::Stale));
            match ov.apply(&req(&tree, Mode::Transient, Some("again"))) {
                Err(Error::AlreadyOverlaid { reason, .. }) => {
                    assert!(
                        reason.contains("stale") && reason.contains("remove gone"),
                        "{reason}"
                    )
                }
                other => panic!("expected AlreadyOverlaid, got {other:?}"),
            }
            let removed = ov.remove("gone", false).unwrap();
            assert!(!removed.was_active);
            assert!(ov.status().unwrap().is_empty());
            assert_eq!(mount_table(), before, "the layer tmpfs was not unmounted");
        },
    );
}

#[test]
fn upper_layer_takes_mode_and_owner_of_the_covered_directory() {
    machine(
        "upper_layer_takes_mode_and_owner_of_the_covered_directory",
        |m| {
            let tree = fake_tree(&m.disk(), "tree");
            fs::set_permissions(&tree, fs::Permissions::from_mode(0o750)).unwrap();
            std::os::unix::fs::chown(&tree, Some(1234), Some(5678)).unwrap();
            let ov = Overlays::new(m.dirs());
            for (name, mode) in [("tr", Mode::Transient), ("hf", Mode::Hotfix)] {
                let applied = ov.apply(&req(&tree, mode, Some(name))).unwrap();
                let up = fs::metadata(applied.record.upper()).unwrap();
                assert_eq!(
                    (up.mode() & 0o7777, up.uid(), up.gid()),
                    (0o750, 1234, 5678)
                );
                // The merged root shows the same attributes as the original directory.
                let merged = fs::metadata(&tree).unwrap();
                assert_eq!(
                    (merged.mode() & 0o7777, merged.uid(), merged.gid()),
                    (0o750, 1234, 5678)
                );
                ov.remove(name, false).unwrap();
            }
        },
    );
}

#[test]
fn apply_to_a_missing_path_is_refused_and_changes_nothing() {
    machine(
        "apply_to_a_missing_path_is_refused_and_changes_nothing",
        |m| {
            let before = untouched_snapshot(&m.state_root());
            let ov = Overlays::new(m.dirs());
            let missing = m.disk().join("no/such/dir");
            match ov.apply(&req(&missing, Mode::Hotfix, None)) {
                Err(e @ Error::PathNotFound { .. }) => {
                    assert!(e.to_string().contains("no/such/dir"), "{e}");
                    assert!(e.is_usage());
                }
                other => panic!("expected PathNotFound, got {other:?}"),
            }
            assert_eq!(untouched_snapshot(&m.state_root()), before);
        },
    );
}

#[test]
fn apply_with_an_invalid_tmpfs_size_is_refused_and_changes_nothing() {
    machine(
        "apply_with_an_invalid_tmpfs_size_is_refused_and_changes_nothing",
        |m| {
            let tree = fake_tree(&m.disk(), "tree");
            let before = untouched_snapshot(&m.state_root());
            let ov = Overlays::new(m.dirs());
            for size in ["", "lots", "1GB", "-1", "1.5G"] {
                let mut r = req(&tree, Mode::Transient, Some("t"));
                r.tmpfs_size = Some(size.to_string());
                match ov.apply(&r) {
                    Err(e @ Error::InvalidSize { .. }) => assert!(e.is_usage()),
                    other => panic!("size {size:?}: expected InvalidSize, got {other:?}"),
                }
            }
            assert_eq!(untouched_snapshot(&m.state_root()), before);
            // A valid limit reaches the tmpfs.
            let mut r = req(&tree, Mode::Transient, Some("t"));
            r.tmpfs_size = Some("8m".into());
            let rec = ov.apply(&r).unwrap().record;
            let st = rustix::fs::statvfs(&rec.layer).unwrap();
            assert_eq!(st.f_blocks * st.f_frsize, 8 * 1024 * 1024);
        },
    );
}

#[test]
fn apply_to_a_file_is_refused_and_changes_nothing() {
    machine("apply_to_a_file_is_refused_and_changes_nothing", |m| {
        let tree = fake_tree(&m.disk(), "tree");
        let before = untouched_snapshot(&m.state_root());
        let ov = Overlays::new(m.dirs());
        for mode in [Mode::Transient, Mode::Hotfix, Mode::ReadOnly] {
            match ov.apply(&req(&tree.join("bin/tool"), mode, None)) {
                Err(e @ Error::NotADirectory { .. }) => {
                    assert!(e.to_string().contains("bin/tool"), "{e}")
                }
                other => panic!("expected NotADirectory, got {other:?}"),
            }
        }
        assert_eq!(untouched_snapshot(&m.state_root()), before);
    });
}

#[test]
fn applying_twice_on_one_path_is_refused_with_the_reason_and_changes_nothing() {
    machine(
        "applying_twice_on_one_path_is_refused_with_the_reason_and_changes_nothing",
        |m| {
            let tree = fake_tree(&m.disk(), "tree");
            let ov = Overlays::new(m.dirs());
            ov.apply(&req(&tree, Mode::Transient, Some("first")))
                .unwrap();
            fs::write(tree.join("bin/tool"), "patched\n").unwrap();
            let before = untouched_snapshot(&m.state_root());
            for (name, mode) in [(Some("second"), Mode::Hotfix), (None, Mode::Transient)] {
                match ov.apply(&req(&tree, mode, name)) {
                    Err(e @ Error::AlreadyOverlaid { .. }) => {
                        let msg = e.to_string();
                        assert!(msg.contains("'first'") && msg.contains("mounted"), "{msg}");
                    }
                    other => panic!("expected AlreadyOverlaid, got {other:?}"),
                }
            }
            // The same name on another path is refused too.
            let other = fake_tree(&m.disk(), "other");
            assert!(matches!(
                ov.apply(&req(&other, Mode::Transient, Some("first"))),
                Err(Error::NameInUse { .. })
            ));
            assert_eq!(untouched_snapshot(&m.state_root()), before);
            // An overlayfs mounted by something else is not stacked on either.
            let (u, w) = (m.disk().join("fu"), m.disk().join("fw"));
            fs::create_dir_all(&u).unwrap();
            fs::create_dir_all(&w).unwrap();
            let opts = format!(
                "lowerdir={},upperdir={},workdir={}",
                other.display(),
                u.display(),
                w.display()
            );
            rustix::mount::mount(
                "foreign",
                &other,
                "overlay",
                rustix::mount::MountFlags::empty(),
                Some(std::ffi::CString::new(opts).unwrap().as_c_str()),
            )
            .unwrap();
            let before = untouched_snapshot(&m.state_root());
            match ov.apply(&req(&other, Mode::Transient, Some("third"))) {
                Err(Error::AlreadyOverlaid { reason, .. }) => {
                    assert!(reason.contains("'foreign'"), "{reason}")
                }
                other => panic!("expected AlreadyOverlaid, got {other:?}"),
            }
            assert_eq!(untouched_snapshot(&m.state_root()), before);
            assert_eq!(
                fs::read_to_string(tree.join("bin/tool")).unwrap(),
                "patched\n"
            );
        },
    );
}

#[test]
fn removing_or_resetting_an_unknown_name_is_refused_and_changes_nothing() {
    machine(
        "removing_or_resetting_an_unknown_name_is_refused_and_changes_nothing",
        |m| {
            let tree = fake_tree(&m.disk(), "tree");
            let ov = Overlays::new(m.dirs());
            // With no state at all, and with an unrelated overlay present.
            for round in 0..2 {
                let before = untouched_snapshot(&m.state_root());
                match ov.remove("nope", false) {
                    Err(e @ Error::UnknownName { .. }) => {
                        let msg = e.to_string();
                        assert!(msg.contains("'nope'"), "{msg}");
                        if round == 1 {
                            assert!(msg.contains("known: tree"), "{msg}");
                        }
                    }
                    other => panic!("expected UnknownName, got {other:?}"),
                }
                assert!(matches!(
                    ov.reset("nope", true),
                    Err(Error::UnknownName { .. })
                ));
                assert!(matches!(ov.diff("nope"), Err(Error::UnknownName { .. })));
                assert_eq!(untouched_snapshot(&m.state_root()), before);
                if round == 0 {
                    ov.apply(&req(&tree, Mode::Hotfix, Some("tree"))).unwrap();
                }
            }
        },
    );
}

#[test]
fn non_root_callers_are_refused_and_nothing_is_mounted_or_written() {
    machine(
        "non_root_callers_are_refused_and_nothing_is_mounted_or_written",
        |m| {
            let tree = fake_tree(&m.disk(), "tree");
            let ov = Overlays::new(m.dirs());
            ov.apply(&req(&tree, Mode::Transient, Some("mine")))
                .unwrap();
            let other = fake_tree(&m.disk(), "other");
            let before = untouched_snapshot(&m.state_root());
            let results = as_user(65534, || {
                vec![
                    ov.apply(&req(&other, Mode::Transient, None)).map(|_| ()),
                    ov.apply(&req(&other, Mode::Hotfix, None)).map(|_| ()),
                    ov.reset("mine", false).map(|_| ()),
                    ov.remove("mine", true).map(|_| ()),
                    ov.apply_boot().map(|_| ()),
                    ov.diff("mine").map(|_| ()),
                ]
            });
            for r in results {
                match r {
                    Err(e @ Error::NotRoot { euid: 65534, .. }) => {
                        assert!(e.to_string().contains("needs root"), "{e}")
                    }
                    other => panic!("expected NotRoot, got {other:?}"),
                }
            }
            // Plain status works unprivileged (without sizes it cannot read).
            let st = as_user(65534, || ov.status()).unwrap();
            assert_eq!(st[0].state, State::Active);
            assert_eq!(untouched_snapshot(&m.state_root()), before);
        },
    );
}

#[test]
fn overlay_mounts_are_tagged_so_they_can_be_found_without_the_tool() {
    machine(
        "overlay_mounts_are_tagged_so_they_can_be_found_without_the_tool",
        |m| {
            let tree = fake_tree(&m.disk(), "tree");
            let ov = Overlays::new(m.dirs());
            let rec = ov
                .apply(&req(&tree, Mode::Transient, Some("tag")))
                .unwrap()
                .record;
            let table = mountinfo::read().unwrap();
            let o = mountinfo::find_overlay(&table, "tag", &tree).expect("overlay in mountinfo");
            assert_eq!(o.source, "asl-usroverlay:tag");
            assert!(mountinfo::find_layer(&table, "tag", &rec.layer).is_some());
        },
    );
}

#[test]
fn a_state_dir_inside_the_covered_path_is_refused() {
    machine("a_state_dir_inside_the_covered_path_is_refused", |m| {
        let tree = fake_tree(&m.disk(), "tree");
        let ov = Overlays::new(StateDirs::under(&tree.join("share")));
        let before = untouched_snapshot(&tree);
        match ov.apply(&req(&tree, Mode::Hotfix, None)) {
            Err(Error::PathRefused { reason, .. }) => {
                assert!(reason.contains("state directory"), "{reason}")
            }
            other => panic!("expected PathRefused, got {other:?}"),
        }
        assert_eq!(untouched_snapshot(&tree), before);
    });
}

#[test]
fn boot_unit_passes_systemd_analyze_verify() {
    let out = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .expect("systemd-analyze not found (scripts/deps/usroverlay.apt lists systemd)");
    assert!(out.status.success());
    let dir = std::env::temp_dir().join(format!("asl-usroverlay-unit-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    let _c = Cleanup(dir.clone());
    let exe = std::env::current_exe().unwrap();
    let text = asl_usroverlay::unit::render(&exe, None, Path::new("/var/lib/asl/usroverlay"));
    let unit = dir.join(asl_usroverlay::unit::UNIT_NAME);
    fs::write(&unit, &text).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Without a running systemd, verify may complain about the environment; it must not
    // complain about our unit file.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(asl_usroverlay::unit::UNIT_NAME))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify: {stderr}");
}

#[test]
fn leftover_state_dir_without_record_is_reused_if_empty_and_refused_otherwise() {
    machine(
        "leftover_state_dir_without_record_is_reused_if_empty_and_refused_otherwise",
        |m| {
            let tree = fake_tree(&m.disk(), "tree");
            let ov = Overlays::new(m.dirs());
            // What a remove interrupted after deleting the record leaves: an empty directory.
            fs::create_dir_all(m.dirs().persistent.join("fix")).unwrap();
            ov.apply(&req(&tree, Mode::Hotfix, Some("fix"))).unwrap();
            ov.remove("fix", false).unwrap();

            // Something with content is somebody's data: refused, and left alone.
            let stray = m.dirs().persistent.join("fix/upper/keep-me");
            fs::create_dir_all(stray.parent().unwrap()).unwrap();
            fs::write(&stray, "data").unwrap();
            let before = untouched_snapshot(&m.state_root());
            match ov.apply(&req(&tree, Mode::Hotfix, Some("fix"))) {
                Err(Error::AlreadyOverlaid { reason, .. }) => {
                    assert!(reason.contains("without a record"), "{reason}")
                }
                other => panic!("expected AlreadyOverlaid, got {other:?}"),
            }
            assert_eq!(untouched_snapshot(&m.state_root()), before);
        },
    );
}
