#!/usr/bin/env python3
"""S3 of bench/scale: a store of at least 10 M chunks, and what intake costs beside it.

The store is made with the smallest chunk sizes the format allows (64 / 256 / 1024 bytes),
so that a few GB of random bytes make ten million distinct chunks. Then the same tree
(S1's MIX=small tree of TREE files) is taken in twice: into an empty store with the same
chunk sizes, and into the large store. Peak RSS and wall time of each (/usr/bin/time): the
index of the large store must not show in the intake's memory.

restic beside it: a repository holding the same random bytes (restic's chunker has fixed
sizes, ~1 MiB average, so its repository holds far fewer chunks: restic cannot be made to
hold 10 M chunks of this data), then a backup of the same tree into it and into an empty
repository.

Usage: python3 bench/scale/s3.py   (environment: CHUNKS_GB [3], TREE [100000], WORK, ASL, OUT)
Writes OUT (default bench/results/<date>-scale-s3-<rev>.csv) and its .meta.
"""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import s1  # noqa: E402  (shares timing, tree making and result writing)

GB = int(os.environ.get("CHUNKS_GB", "3"))
TREE = int(os.environ.get("TREE", "100000"))
WORK = os.environ.get("WORK", "/var/tmp/asl-scale/s3")
ASL = s1.ASL
OUT = os.environ.get("OUT", s1.OUT.replace("-scale-s1-", "-scale-s3-"))
SIZES = "64,256,1K"


def store_counts(store):
    out = subprocess.run([ASL, "admin", "--store", store, "stats", "--json"],
                         capture_output=True, text=True, check=True).stdout
    import json
    return json.loads(out)


def main():
    os.makedirs(WORK, exist_ok=True)
    os.environ["MIX"] = "small"
    s1.MIX = "small"
    tree = os.path.join(s1.WORK, f"tree-small-{TREE}")
    if not os.path.isdir(tree):
        s1.make_tree(tree, TREE)
    nbytes = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(tree) for f in fs)
    blob = os.path.join(WORK, f"random-{GB}g")
    if not os.path.exists(blob):
        subprocess.run(f"head -c {GB}G /dev/urandom > {blob}.part && mv {blob}.part {blob}",
                       shell=True, check=True)
    rows = []

    big = os.path.join(WORK, "asl-big")
    shutil.rmtree(big, ignore_errors=True)
    subprocess.run([ASL, "init-store", "--store", big, "--chunk-sizes", SIZES], check=True,
                   capture_output=True)
    wall, rss = s1.timed([ASL, "intake", "--store", big, blob])
    counts = store_counts(big)
    chunks = counts.get("index_entries")
    print(f"big store: {chunks} index entries, made in {wall} s, peak RSS {rss} KiB",
          flush=True)
    rows.append(dict(tool="asl-fill", files=1, bytes=GB << 30, store_chunks=chunks,
                     wall_s=wall, peak_rss_kib=rss))

    empty = os.path.join(WORK, "asl-empty")
    shutil.rmtree(empty, ignore_errors=True)
    subprocess.run([ASL, "init-store", "--store", empty, "--chunk-sizes", SIZES], check=True,
                   capture_output=True)
    for name, store, held in (("asl-into-empty", empty, 0), ("asl-into-big", big, chunks)):
        s1.warm(tree)
        wall, rss = s1.timed([ASL, "intake", "--store", store, tree])
        rows.append(dict(tool=name, files=TREE, bytes=nbytes, store_chunks=held,
                         wall_s=wall, peak_rss_kib=rss))
        print(rows[-1], flush=True)
    shutil.rmtree(empty)

    env_base = dict(os.environ, RESTIC_PASSWORD="bench")
    for name, fill in (("restic-into-empty", False), ("restic-into-big", True)):
        repo = os.path.join(WORK, "restic-repo")
        shutil.rmtree(repo, ignore_errors=True)
        env = dict(env_base, RESTIC_REPOSITORY=repo,
                   RESTIC_CACHE_DIR=os.path.join(WORK, "restic-cache"))
        subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
        held = 0
        if fill:
            wall, rss = s1.timed(["restic", "backup", "--quiet", blob], env=env)
            rows.append(dict(tool="restic-fill", files=1, bytes=GB << 30, store_chunks="",
                             wall_s=wall, peak_rss_kib=rss))
            print(rows[-1], flush=True)
            held = ""
        s1.warm(tree)
        wall, rss = s1.timed(["restic", "backup", "--quiet", tree], env=env)
        rows.append(dict(tool=name, files=TREE, bytes=nbytes, store_chunks=held,
                         wall_s=wall, peak_rss_kib=rss))
        print(rows[-1], flush=True)
        shutil.rmtree(repo)
        shutil.rmtree(os.path.join(WORK, "restic-cache"), ignore_errors=True)
    shutil.rmtree(big)
    s1.write_results(OUT, ["tool", "files", "bytes", "store_chunks", "wall_s", "peak_rss_kib"],
                     rows, f"CHUNKS_GB={GB} TREE={TREE} python3 bench/scale/s3.py")


if __name__ == "__main__":
    main()
