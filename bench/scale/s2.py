#!/usr/bin/env python3
"""S2 of bench/scale: one store receiving 10, 100, 1k, 10k, 50k small snapshots.

asl and restic side by side, in one run. For each tool the store grows to each milestone,
and at each milestone these are measured (median of RUNS):

* open:      asl: opening the store (in-process, over the log checkpoint, and replaying the
             whole log as every open did before the checkpoint; from the generator);
             restic: `restic cat config` (opening the repository: key, config, index load).
* snapshots: the listing command, `asl-admin snapshots` / `restic snapshots`, wall time.
* commit:    one more small snapshot through the CLI, `asl-intake` / `restic backup`, wall.

asl's store is grown by crates/asl-store/examples/scale_snapshots.rs (one capture-like commit
per snapshot, in-process, so 50k snapshots take minutes, not hours); restic's by `restic
backup` of a tiny tree per snapshot, which costs about a second each, so restic stops at
RESTIC_MAX snapshots (default 1000) and its larger milestones are reported as not run.

Usage: python3 bench/scale/s2.py   (environment: MARKS, RESTIC_MAX, RUNS, TOOLS, WORK, ASL, OUT)
TOOLS (default asl,restic) picks the tools; rows of the others already in OUT are kept.
Writes OUT (default bench/results/<date>-scale-s2-<rev>.csv) and, through chart.py, an SVG.
"""
import csv
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MARKS = [int(x) for x in os.environ.get("MARKS", "10,100,1000,10000,50000").split(",")]
RESTIC_MAX = int(os.environ.get("RESTIC_MAX", "1000"))
RUNS = int(os.environ.get("RUNS", "3"))
TOOLS = os.environ.get("TOOLS", "asl,restic").split(",")
WORK = os.environ.get("WORK", "/var/tmp/asl-scale/s2")
ASL = os.environ.get("ASL", os.path.join(REPO, "target/release/asl"))
GEN = os.path.join(REPO, "target/release/examples/scale_snapshots")
REV = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                     capture_output=True, text=True, check=True).stdout.strip()
OUT = os.environ.get("OUT", os.path.join(
    REPO, "bench/results", time.strftime("%Y-%m-%d", time.gmtime()) + f"-scale-s2-{REV}.csv"))


def run(argv, env=None, quiet=True):
    """Runs argv, returns its wall time in seconds; fails loudly."""
    t = time.perf_counter()
    p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL if quiet else None,
                       stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"s2: {' '.join(argv)} failed ({p.returncode}): {p.stderr.decode()[-400:]}")
    return dt


def median(f):
    return statistics.median(f() for _ in range(RUNS))


def tiny_tree(path, n):
    """A capture-sized tree: two small files, one of them new every time."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "step.txt"), "w") as f:
        f.write(f"step {n}\n")
    with open(os.path.join(path, "shared.txt"), "w") as f:
        f.write("the same in every snapshot\n")


def asl_rows():
    store = os.path.join(WORK, "asl-store")
    rows = []
    src = os.path.join(WORK, "src-asl")
    n = 0
    for mark in MARKS:
        gen = subprocess.run([GEN, store, str(mark)], capture_output=True, text=True, check=True)
        line = gen.stdout.strip().splitlines()[-1].split(",")
        # The generator made `mark` snapshots, measured, then committed one more.
        opened, full = float(line[2]), float(line[3])
        snaps = median(lambda: run([ASL, "admin", "--store", store, "snapshots"]))

        def commit():
            nonlocal n
            n += 1
            tiny_tree(src, n)
            return run([ASL, "intake", "--store", store, "--label", f"cli-{n}", src])
        com = median(commit)
        rows.append(dict(tool="asl", snapshots=mark, open_s=opened, open_full_replay_s=full,
                         snapshots_s=snaps, commit_s=com))
        print(rows[-1], flush=True)
    return rows


def restic_rows():
    repo = os.path.join(WORK, "restic-repo")
    env = dict(os.environ, RESTIC_REPOSITORY=repo, RESTIC_PASSWORD="bench",
               RESTIC_CACHE_DIR=os.path.join(WORK, "restic-cache"))
    run(["restic", "init"], env=env)
    src = os.path.join(WORK, "src-restic")
    rows, made = [], 0
    for mark in MARKS:
        if mark > RESTIC_MAX:
            rows.append(dict(tool="restic", snapshots=mark, open_s="", open_full_replay_s="",
                             snapshots_s="", commit_s="", note=f"not run (RESTIC_MAX={RESTIC_MAX})"))
            continue
        while made < mark:
            made += 1
            tiny_tree(src, made)
            run(["restic", "backup", "--quiet", src], env=env)
        opened = median(lambda: run(["restic", "cat", "config"], env=env))
        snaps = median(lambda: run(["restic", "snapshots"], env=env))

        def commit():
            nonlocal made
            made += 1
            tiny_tree(src, made)
            return run(["restic", "backup", "--quiet", src], env=env)
        com = median(commit)
        rows.append(dict(tool="restic", snapshots=mark, open_s=opened, open_full_replay_s="",
                         snapshots_s=snaps, commit_s=com))
        print(rows[-1], flush=True)
    return rows


def main():
    for exe in (ASL, GEN):
        if not os.access(exe, os.X_OK):
            sys.exit(f"s2: {exe} missing: cargo build --release -p asl && "
                     "cargo build --release -p asl-store --example scale_snapshots")
    subprocess.run(["rm", "-rf", WORK], check=True)
    os.makedirs(WORK)
    # Rows of tools not run this time are kept, so the tools can be run one after the other.
    rows = []
    if os.path.exists(OUT):
        with open(OUT) as f:
            rows = [r for r in csv.DictReader(f) if r["tool"] not in TOOLS]
    if "asl" in TOOLS:
        rows += asl_rows()
    if "restic" in TOOLS:
        rows += restic_rows()
    fields = ["tool", "snapshots", "open_s", "open_full_replay_s", "snapshots_s", "commit_s", "note"]
    with open(OUT, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    with open(OUT[:-4] + ".meta", "a") as f:
        f.write(f"command: MARKS={','.join(map(str, MARKS))} RESTIC_MAX={RESTIC_MAX} RUNS={RUNS} "
                f"TOOLS={','.join(TOOLS)} python3 bench/scale/s2.py\nrev: {REV}\nhost: {os.uname().nodename} "
                f"{os.cpu_count()} cpus\nrestic: "
                + subprocess.run(["restic", "version"], capture_output=True, text=True).stdout)
    # matplotlib comes from Debian (scripts/deps/bench.apt), so the system's python draws.
    py = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    subprocess.run([py, os.path.join(HERE, "chart.py"), OUT], check=True)
    subprocess.run(["rm", "-rf", WORK], check=True)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
