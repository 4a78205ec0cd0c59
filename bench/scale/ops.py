#!/usr/bin/env python3
"""bench/scale ops: gc, verify and restore time against the store's size, asl beside restic
on the same data in one run.

For each size (the S1 trees of s1.py: same generator, same size mix and duplication) a fresh
asl store and a fresh restic repository receive two snapshots: the whole tree, then the tree
without its first tenth of directories. Then, per tool:

* verify:  `asl-admin verify --read-data`  /  `restic check --read-data` (every byte read
           back and checked);
* restore: the newest snapshot into an empty directory (`asl-admin restore` / `restic
           restore`);
* gc:      forget the first snapshot, then `asl-admin gc`  /  `restic forget` + `restic
           prune`, so that both have the same tenth of the data to delete and the rest to
           walk.

Every phase starts with a cold page cache when run as root. Wall time and peak RSS per phase
through /usr/bin/time. One run per size (the larger sizes
take minutes); the chart is log-log, so linear growth is a line of slope 1.

Usage: python3 bench/scale/ops.py   (environment: SIZES [10000,30000,100000], WORK, ASL, OUT,
DROP_CACHES [1]: drop the page cache before each measured phase when root)
Writes OUT (default bench/results/<date>-scale-ops-<rev>.csv), its .meta and an SVG through
chart.py. The trees are shared with s1.py under WORK.
"""
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import s1  # noqa: E402  (the tree generator and the timing helper)

REPO = s1.REPO
SIZES = [int(x) for x in os.environ.get("SIZES", "10000,30000,100000").split(",")]
WORK = s1.WORK
ASL = s1.ASL
OUT = os.environ.get("OUT", os.path.join(
    REPO, "bench/results",
    time.strftime("%Y-%m-%d", time.gmtime()) + f"-scale-ops-{s1.REV}.csv"))
FIELDS = ["tool", "files", "store_bytes", "phase", "wall_s", "peak_rss_kib"]


def du(path):
    return sum(os.path.getsize(os.path.join(dp, f))
               for dp, _, fs in os.walk(path) for f in fs)


def drop_caches():
    subprocess.run(["sync"], check=True)
    if os.geteuid() == 0 and os.environ.get("DROP_CACHES", "1") == "1":
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")


def run(argv, env=None):
    p = subprocess.run(argv, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"ops: {' '.join(argv)} failed ({p.returncode}): {p.stderr[-400:]}")
    return p.stdout


def asl_phases(tree, n, first_tenth):
    store = os.path.join(WORK, "ops-asl-store")
    target = os.path.join(WORK, "ops-restore")
    shutil.rmtree(store, ignore_errors=True)
    admin = [ASL, "admin", "--store", store]
    run([ASL, "intake", "--store", store, tree])
    run([ASL, "intake", "--store", store] + sum((["--exclude", d] for d in first_tenth), [])
        + [tree])
    size = du(store)
    rows = []

    def measure(phase, argv):
        drop_caches()
        wall, rss = s1.timed(argv)
        rows.append(dict(tool="asl", files=n, store_bytes=size, phase=phase,
                         wall_s=wall, peak_rss_kib=rss))
        print(rows[-1], flush=True)

    measure("verify", admin + ["verify", "--read-data"])
    shutil.rmtree(target, ignore_errors=True)
    measure("restore", admin + ["restore", "--target", target, "latest"])
    shutil.rmtree(target)
    run(admin + ["forget", "1"])
    measure("gc", admin + ["gc"])
    shutil.rmtree(store)
    return rows


def restic_phases(tree, n, first_tenth):
    repo = os.path.join(WORK, "ops-restic-repo")
    target = os.path.join(WORK, "ops-restore")
    shutil.rmtree(repo, ignore_errors=True)
    env = dict(os.environ, RESTIC_REPOSITORY=repo, RESTIC_PASSWORD="bench",
               RESTIC_CACHE_DIR=os.path.join(WORK, "ops-restic-cache"))
    run(["restic", "init"], env)
    run(["restic", "backup", "--quiet", tree], env)
    run(["restic", "backup", "--quiet"] + sum((["--exclude", d] for d in first_tenth), [])
        + [tree], env)
    size = du(repo)
    rows = []

    def measure(phase, argv):
        drop_caches()
        wall, rss = s1.timed(argv, env)
        rows.append(dict(tool="restic", files=n, store_bytes=size, phase=phase,
                         wall_s=wall, peak_rss_kib=rss))
        print(rows[-1], flush=True)

    measure("verify", ["restic", "check", "--read-data"])
    shutil.rmtree(target, ignore_errors=True)
    measure("restore", ["restic", "restore", "latest", "--target", target])
    shutil.rmtree(target)
    # restic's snapshot ids are random: forget the older of the two (the full tree) by
    # keeping only the newest, which is what `asl-admin forget 1` leaves too.
    run(["restic", "forget", "--keep-last", "1"], env)
    measure("gc", ["restic", "prune"])
    shutil.rmtree(repo)
    shutil.rmtree(env["RESTIC_CACHE_DIR"], ignore_errors=True)
    return rows


def main():
    os.makedirs(WORK, exist_ok=True)
    rows = []
    for n in SIZES:
        tree = os.path.join(WORK, f"tree-{n}")
        if not os.path.isdir(tree):
            s1.make_tree(tree, n)
        dirs = sorted(os.listdir(tree))
        first_tenth = dirs[:max(1, len(dirs) // 10)]
        rows += asl_phases(tree, n, first_tenth)
        rows += restic_phases(tree, n, first_tenth)
    s1.write_results(OUT, FIELDS, rows,
                     f"SIZES={','.join(map(str, SIZES))} python3 bench/scale/ops.py")


if __name__ == "__main__":
    main()
