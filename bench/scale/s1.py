#!/usr/bin/env python3
"""S1 of bench/scale: intake of synthetic trees of 10k, 100k (1M, 3M) files, asl beside
restic, on the same tree in one run: wall time and peak RSS (/usr/bin/time) against the file
count, for a first intake into an empty store and for the unchanged second one.

The tree (made once per size under WORK, deterministic from its seed): directories of 1000
files; sizes mostly small (60 % under 4 KiB, 30 % 4–64 KiB, 10 % 64–512 KiB, and one file in
5000 of 4–16 MiB); 40 % of the files repeat the bytes of an earlier one (heavy duplication),
the rest are random (incompressible) bytes.

With MIX=small the sizes are eight times smaller (60 % under 512 B, 30 % 512 B–8 KiB, 10 %
8–64 KiB, one file in 20 000 of 1–4 MiB), so that 1 M files take ~5 GB and 3 M ~15 GB of disk.

Usage: python3 bench/scale/s1.py   (environment: SIZES [10000,100000], MIX [default|small],
WORK, ASL, OUT)
Writes OUT (default bench/results/<date>-scale-s1-<rev>.csv), its .meta and, through
chart.py, an SVG. The trees stay under WORK for the next run (delete them by hand).
"""
import csv
import os
import random
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SIZES = [int(x) for x in os.environ.get("SIZES", "10000,100000").split(",")]
MIX = os.environ.get("MIX", "default")
WORK = os.environ.get("WORK", "/var/tmp/asl-scale/s1")
ASL = os.environ.get("ASL", os.path.join(REPO, "target/release/asl"))
REV = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                     capture_output=True, text=True, check=True).stdout.strip()
OUT = os.environ.get("OUT", os.path.join(
    REPO, "bench/results", time.strftime("%Y-%m-%d", time.gmtime()) + f"-scale-s1-{REV}.csv"))


def size_of(rng):
    if MIX == "small":
        if rng.random() < 1 / 20000:
            return rng.randint(1 << 20, 4 << 20)
        x = rng.random()
        if x < 0.6:
            return rng.randint(0, 511)
        if x < 0.9:
            return rng.randint(512, 8191)
        return rng.randint(8192, 65535)
    if rng.random() < 1 / 5000:
        return rng.randint(4 << 20, 16 << 20)
    x = rng.random()
    if x < 0.6:
        return rng.randint(0, 4095)
    if x < 0.9:
        return rng.randint(4096, 65535)
    return rng.randint(65536, 512 << 10)


def make_tree(root, files, seed=1):
    rng = random.Random(seed)
    pool = []
    total = 0
    for i in range(files):
        d = os.path.join(root, f"d{i // 1000:05d}")
        if i % 1000 == 0:
            os.makedirs(d, exist_ok=True)
        if pool and rng.random() < 0.4:
            data = pool[rng.randrange(len(pool))]
        else:
            data = rng.randbytes(size_of(rng))
            if len(pool) < 2000 and len(data) < (1 << 20):
                pool.append(data)
        with open(os.path.join(d, f"f{i:07d}"), "wb") as f:
            f.write(data)
        total += len(data)
    return total


def timed(argv, env=None):
    """Wall seconds and peak RSS (KiB) of argv, through /usr/bin/time."""
    fmt = "ASLTIME %e %M"
    p = subprocess.run(["/usr/bin/time", "-f", fmt] + argv, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = [l for l in p.stderr.splitlines() if l.startswith("ASLTIME")]
    if p.returncode != 0 or not line:
        sys.exit(f"s1: {' '.join(argv)} failed ({p.returncode}): {p.stderr[-400:]}")
    _, wall, rss = line[-1].split()
    return float(wall), int(rss)


def warm(tree):
    """Reads every file of the tree once, so that each tool's timed run starts from the same
    page cache (otherwise whoever runs first pays for the disk)."""
    subprocess.run(f"find '{tree}' -type f -print0 | xargs -0 cat > /dev/null",
                   shell=True, check=True)


def main():
    os.makedirs(WORK, exist_ok=True)
    rows = []
    for n in SIZES:
        tree = os.path.join(WORK, f"tree-{n}" if MIX == "default" else f"tree-{MIX}-{n}")
        if not os.path.isdir(tree):
            nbytes = make_tree(tree, n)
        else:
            nbytes = sum(os.path.getsize(os.path.join(dp, f))
                         for dp, _, fs in os.walk(tree) for f in fs)
        subprocess.run(["sync"], check=True)
        store = os.path.join(WORK, "asl-store")
        shutil.rmtree(store, ignore_errors=True)
        warm(tree)
        wall, rss = timed([ASL, "intake", "--store", store, tree])
        rows.append(dict(tool="asl", files=n, bytes=nbytes, wall_s=wall, peak_rss_kib=rss))
        print(rows[-1], flush=True)
        # The same tree again: an unchanged re-intake (stat cache and index loaded, every
        # file only stat'ed), the figure an operator re-running a rescue sees.
        wall, rss = timed([ASL, "intake", "--store", store, tree])
        rows.append(dict(tool="asl-unchanged", files=n, bytes=nbytes, wall_s=wall,
                         peak_rss_kib=rss))
        print(rows[-1], flush=True)
        shutil.rmtree(store)
        repo = os.path.join(WORK, "restic-repo")
        shutil.rmtree(repo, ignore_errors=True)
        env = dict(os.environ, RESTIC_REPOSITORY=repo, RESTIC_PASSWORD="bench",
                   RESTIC_CACHE_DIR=os.path.join(WORK, "restic-cache"))
        subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
        warm(tree)
        wall, rss = timed(["restic", "backup", "--quiet", tree], env=env)
        rows.append(dict(tool="restic", files=n, bytes=nbytes, wall_s=wall, peak_rss_kib=rss))
        print(rows[-1], flush=True)
        wall, rss = timed(["restic", "backup", "--quiet", tree], env=env)
        rows.append(dict(tool="restic-unchanged", files=n, bytes=nbytes, wall_s=wall,
                         peak_rss_kib=rss))
        print(rows[-1], flush=True)
        shutil.rmtree(repo)
        shutil.rmtree(os.path.join(WORK, "restic-cache"), ignore_errors=True)
    write_results(OUT, ["tool", "files", "bytes", "wall_s", "peak_rss_kib"], rows,
                  f"MIX={MIX} SIZES={','.join(map(str, SIZES))} python3 bench/scale/s1.py")


def write_results(out, fields, rows, command):
    """OUT (CSV), OUT's .meta (command, revision, host) and OUT's chart (chart.py)."""
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    with open(out[:-4] + ".meta", "w") as f:
        f.write(f"command: {command}\n"
                f"rev: {REV}\nhost: {os.uname().nodename} {os.cpu_count()} cpus\n")
    py = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    subprocess.run([py, os.path.join(HERE, "chart.py"), out], check=True)
    print("wrote", out)


if __name__ == "__main__":
    main()
