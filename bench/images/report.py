#!/usr/bin/env python3
"""Writes the image benchmark's result files from a run's scratch directory.

usage: report.py SCRATCH OUT_PREFIX

Reads SCRATCH/results.csv (one row per timed build), SCRATCH/machine.txt (key=value facts),
the asl-image --json reports (step timings) and the boot JSONs of boot.py; writes
OUT_PREFIX.csv (every build and boot row) and OUT_PREFIX.md (medians, ratios, the two targets
of issue 19 with a plain verdict, and where asl-image's time went).
"""

import csv
import glob
import json
import os
import statistics
import sys


def median(xs):
    return statistics.median(xs) if xs else None


def fmt(x, nd=1):
    return "—" if x is None else f"{x:.{nd}f}"


def main() -> int:
    scratch, prefix = sys.argv[1], sys.argv[2]
    facts = {}
    for line in open(os.path.join(scratch, "machine.txt")):
        k, _, v = line.rstrip("\n").partition("=")
        facts[k] = v
    builds = list(csv.DictReader(open(os.path.join(scratch, "results.csv"))))
    for r in builds:
        for k in ("wall_s", "user_s", "sys_s"):
            r[k] = float(r[k])
        r["maxrss_kb"] = int(r["maxrss_kb"])

    # asl-image's own step timings, from its --json summary.
    steps = {}
    for r in builds:
        if r["tool"] != "asl-image":
            continue
        p = os.path.join(scratch, "time", f"{r['phase']}-{r['run']}.out")
        rep = json.load(open(p))
        steps[(r["phase"], r["run"])] = rep
        r["detail"] = f"iso {rep['size']} bytes sha256 {rep['sha256'][:16]} base_cached={rep['base_cached']}"

    boots = []
    for p in sorted(glob.glob(os.path.join(scratch, "boot", "*.json"))):
        name, _, run = os.path.basename(p)[:-5].rpartition("-")
        j = json.load(open(p))
        boots.append({"name": name, "run": run, **j})

    by_phase = {}
    for r in builds:
        by_phase.setdefault(r["phase"], []).append(r)

    def med(phase, key="wall_s"):
        return median([r[key] for r in by_phase.get(phase, [])])

    # CSV: builds, then boots (one row per marker).
    with open(prefix + ".csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "phase", "tool", "run", "wall_s", "user_s", "sys_s", "maxrss_kb",
                    "detail"])
        for r in builds:
            w.writerow(["build", r["phase"], r["tool"], r["run"], r["wall_s"], r["user_s"],
                        r["sys_s"], r["maxrss_kb"], r["detail"]])
        for b in boots:
            for m, t in b["markers"].items():
                w.writerow(["boot", b["name"], "qemu-tcg", b["run"], "" if t is None else t,
                            "", "", "", f"marker {m}"])
        for k in ("asl_iso_bytes", "mkosi_raw_bytes", "mkosi_raw_allocated_bytes",
                  "mkosi_raw_zstd_bytes"):
            w.writerow(["size", k, "", "", "", "", "", "", facts.get(k, "")])

    L = []
    L.append(f"# Images: asl-image next to mkosi — {facts['date']}, rev {facts['rev']}")
    L.append("")
    L.append(f"Command: `sudo {facts['cmdline']}` (from the repository root; "
             "the scratch directory is /var/tmp/asl-imgbench).")
    L.append("")
    L.append(f"Machine: {facts['nproc']} cores shared with other sessions' jobs (load average "
             f"{facts['load_before']} before, {facts['load_after']} after), kernel "
             f"{facts['kernel']}, no usable KVM (every boot is TCG). Tools: {facts['mkosi']} "
             f"(Debian 12 package), {facts['qemu']}. Both builders fetch from the host's "
             f"mirror {facts['mirror']}. asl: the release binary of this revision.")
    L.append("")
    L.append("## Builds")
    L.append("")
    L.append("Wall, user and sys seconds and the peak RSS of the largest process, by "
             "`/usr/bin/time`; the median over the runs (n = number of runs).")
    L.append("")
    L.append("| phase | n | wall s (median) | wall s (all) | user s | sys s | peak RSS MB |")
    L.append("|---|---|---|---|---|---|---|")
    for phase in ("asl-cold", "mkosi-cold", "asl-cached", "mkosi-cached"):
        rs = by_phase.get(phase, [])
        if not rs:
            continue
        L.append(f"| {phase} | {len(rs)} | {fmt(med(phase))} | "
                 f"{', '.join(fmt(r['wall_s']) for r in rs)} | {fmt(med(phase, 'user_s'))} | "
                 f"{fmt(med(phase, 'sys_s'))} | {fmt(max(r['maxrss_kb'] for r in rs) / 1024, 0)} |")
    L.append("")

    ac, mc, ar, mr = med("asl-cold"), med("mkosi-cold"), med("asl-cached"), med("mkosi-cached")
    L.append("## The targets of issue 19")
    L.append("")
    if ar is not None:
        ok = ar <= 120
        L.append(f"* **Cached rebuild ≤ 2 min: {'met' if ok else 'NOT met'}** — asl-image's "
                 f"median cached rebuild is {ar:.1f} s ({ar / 120:.2f}× the 120 s budget; "
                 f"slowest run {max(r['wall_s'] for r in by_phase['asl-cached']):.1f} s). "
                 f"mkosi's incremental rebuild of its image: {fmt(mr)} s"
                 + (f" (asl-image / mkosi = {ar / mr:.2f}×)." if mr else "."))
    if ac is not None and mc is not None:
        ok = ac <= mc
        L.append(f"* **Cold build no slower than mkosi's: {'met' if ok else 'NOT met'}** — "
                 f"asl-image {ac:.1f} s, mkosi {mc:.1f} s: asl-image / mkosi = {ac / mc:.2f}×"
                 + (" (one run per tool: a single sample on a shared machine, so a difference"
                    " of a few percent is noise)." if len(by_phase["asl-cold"]) == 1
                    else f" (medians of {len(by_phase['asl-cold'])} runs)."))
    L.append("")
    L.append("## Sizes")
    L.append("")
    iso = int(facts["asl_iso_bytes"])
    raw = int(facts["mkosi_raw_bytes"])
    alloc = int(facts["mkosi_raw_allocated_bytes"])
    zst = int(facts["mkosi_raw_zstd_bytes"])
    mb = lambda b: f"{b / 1e6:.0f} MB"  # noqa: E731
    L.append("| artifact | size |")
    L.append("|---|---|")
    L.append(f"| asl-image rescue ISO (squashfs zstd-6 root, kernel, initrd, GRUB BIOS+UEFI) | "
             f"{mb(iso)} ({iso} bytes) |")
    L.append(f"| mkosi raw GPT disk, apparent (ext4 root, sparse) | {mb(raw)} |")
    L.append(f"| mkosi raw GPT disk, allocated | {mb(alloc)} |")
    L.append(f"| mkosi raw GPT disk, `zstd -3` | {mb(zst)} |")
    L.append("")
    L.append(f"Two asl-image builds of this run (the cold one and the first cached one) give "
             f"the ISO sha256 {facts['asl_cold_iso_sha256'][:16]}… and "
             f"{facts['asl_iso_sha256'][:16]}…"
             + (" — identical." if facts['asl_cold_iso_sha256'] == facts['asl_iso_sha256']
                else " — different: the history layer carries each build's receipts (wall-clock "
                "times), by design; see docs/asl-image.md, Reproducibility."))
    L.append("")
    L.append("## Boot under TCG")
    L.append("")
    L.append("Seconds from qemu's start (`-accel tcg -m 1536 -smp 2 -nic none`) until each "
             "text first appears on the serial console (`bench/images/boot.py`). "
             "`kernel`: the kernel's `Linux version` line; `decision`: asl-preflight's "
             "`decision:` line (here `operator`: no store disk, no network); `multi-user`: "
             "systemd's `Reached target … Multi-User System`; `asl-boot`: the image's "
             "`ASL-BOOT multi-user.target reached` report; `login`: the serial getty's "
             "login line.")
    L.append("")
    names = sorted({m for b in boots for m in b["markers"]},
                   key=lambda m: ["kernel", "decision", "multi-user", "asl-boot", "login"].index(m)
                   if m in ["kernel", "decision", "multi-user", "asl-boot", "login"] else 99)
    L.append("| boot | run | " + " | ".join(names) + " |")
    L.append("|---|---|" + "---|" * len(names))
    for b in boots:
        L.append(f"| {b['name']} | {b['run']} | "
                 + " | ".join(fmt(b["markers"].get(m)) if m in b["markers"] else "n/a"
                              for m in names) + " |")
    L.append("")
    L.append("* `asl-bios`: the rescue ISO as a CD, SeaBIOS → GRUB (1 s menu timeout) → "
             "live-boot. The boot the VM tests do.")
    L.append("* `asl-kernel`: the same ISO's kernel and initrd given to qemu (`-kernel`), "
             "with the command line of its grub.cfg, the ISO as CD for live-boot: no "
             "firmware disk boot and no GRUB, the same path as `mkosi-kernel`.")
    L.append("* `mkosi-kernel`: mkosi's image on virtio, its own kernel and initramfs-tools "
             "initrd given to qemu, `root=/dev/vda1 rw console=ttyS0`. Its comparable point "
             "is `multi-user` (and `login`); it has no preflight. mkosi 14's "
             "`Bootable=yes` could not be used here (see the notes).")
    L.append("")
    L.append("## Where asl-image's time goes")
    L.append("")
    L.append("Each step is one `asl-capture` run. `wall`: the step as asl-image timed it "
             "(`--json` `steps[].seconds`); from the step's receipt (`timing`): `run` the "
             "command itself, `hash in` hashing the declared inputs, `store out` hashing and "
             "storing the declared outputs in the build store; the rest of `wall` is "
             "asl-capture's start, signing and writing the receipt.")
    L.append("")
    for k in sorted(steps):
        rep = steps[k]
        L.append(f"**{k[0]} {k[1]}** (total {fmt(rep['seconds'])} s, base cached: "
                 f"{rep['base_cached']}, {rep['packages']} packages)")
        L.append("")
        L.append("| step | wall s | run s | hash in s | store out s |")
        L.append("|---|---|---|---|---|")
        for st in rep["steps"]:
            t = {}
            rj = os.path.join(rep["build_dir"], st["dir"], "receipt.json")
            try:
                t = json.load(open(rj)).get("timing", {})
            except OSError:
                pass
            sec = lambda key: fmt(t[key] / 1000) if key in t else "—"  # noqa: E731
            L.append(f"| {st['step']} | {fmt(st['seconds'])} | {sec('run_ms')} | "
                     f"{sec('hash_inputs_ms')} | {sec('store_outputs_ms')} |")
        other = rep["seconds"] - sum(st["seconds"] for st in rep["steps"])
        L.append(f"| (outside the steps: checks, store, DAG, sha256) | {fmt(other)} | | | |")
        L.append("")
    L.append("## What the two builds do (read before comparing)")
    L.append("")
    L.append("* **asl-image** (`--profile rescue`, with history): apt lists and resolve "
             "against a private apt state, mmdebstrap of the pinned set (minbase + "
             "linux-image-amd64, live-boot, systemd-sysv, udev, iproute2, kmod, e2fsprogs, "
             "zstd: 137 packages) to a tarball in the cache, then the overlay, lint, image "
             "layer, history, the squashfs (zstd-6), GRUB BIOS+UEFI images, the ESP and the "
             "hybrid ISO; every step under `asl-capture`, signed, its inputs and outputs "
             "stored in the build store, and the DAG rendered.")
    L.append("* **mkosi 14** (`bench/images/mkosi/mkosi.default`): debootstrap minbase, apt "
             "install of the same extra packages except live-boot (plus what mkosi adds: "
             "systemd, dbus, libpam-systemd, systemd-resolved), the initramfs "
             "(`mkosi.prepare`), removal of docs, a 3 GB GPT disk with an ext4 root. "
             "**No boot loader**: mkosi 14's `Bootable=yes` is UEFI-only and mounts the "
             "image's ESP (vfat) on the build host, and this host's kernel has no vfat, so "
             "the image is booted through its own kernel and initramfs (`qemu -kernel`). "
             "A bootable mkosi build would also run dracut and build a unified kernel image: "
             "its times here are, if anything, lower than a bootable build's.")
    L.append("* Both fetch every package from the same mirror; neither reuses the other's "
             "downloads (separate caches under the scratch directory). `peak RSS` is the "
             "largest single process (`/usr/bin/time %M`), not the sum.")
    L.append("* mkosi needed three adjustments to run in this container, all in "
             "`bench/images/`: `NspawnKeepUnit=yes` (no system bus), a tmpfs at "
             "`/run/systemd/nspawn` for the run (nspawn refuses to clean a non-tmpfs "
             "directory), and `MKE2FS_CONFIG` with `metadata_csum_seed` (mkosi 14's "
             "`tune2fs -U random` of its incremental cache otherwise fails whenever mkfs and "
             "the first mount fall in different seconds).")
    L.append("")
    open(prefix + ".md", "w").write("\n".join(L) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
