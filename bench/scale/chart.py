#!/usr/bin/env python3
"""Draws bench/scale results as a log-log SVG next to the CSV. S2 (s2.py): open, `snapshots`
listing and commit time against the snapshot count. S1 (s1.py, a CSV with a `files` column):
intake wall time and peak RSS against the file count. ops (ops.py, a CSV with a `phase`
column): gc, verify and restore time against the store's size. asl and restic as lines.

Usage: python3 bench/scale/chart.py RESULTS.csv   (writes RESULTS.svg)
Needs matplotlib (python3-matplotlib, scripts/deps/bench.apt).
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Deterministic SVG: no date in the metadata, fixed ids, so a re-draw of the same numbers
# gives the same file.
plt.rcParams["svg.hashsalt"] = "asl-bench"

SERIES = [
    ("asl", "open_s", "asl: open (over checkpoint)", "C0", "-"),
    ("asl", "open_full_replay_s", "asl: open replaying whole log", "C0", ":"),
    ("asl", "snapshots_s", "asl: asl-admin snapshots", "C1", "-"),
    ("asl", "commit_s", "asl: asl-intake (commit)", "C2", "-"),
    ("restic", "open_s", "restic: cat config (open)", "C0", "--"),
    ("restic", "snapshots_s", "restic: snapshots", "C1", "--"),
    ("restic", "commit_s", "restic: backup (commit)", "C2", "--"),
]


def s1(path, rows):
    fig, (wall, rss) = plt.subplots(1, 2, figsize=(10, 4.5))
    for tool, style, color in (("asl", "-", "C0"), ("restic", "--", "C1"),
                               ("asl-unchanged", ":", "C0"), ("restic-unchanged", ":", "C1")):
        pts = sorted((int(r["files"]), float(r["wall_s"]), int(r["peak_rss_kib"]) / 1024)
                     for r in rows if r["tool"] == tool)
        if pts:
            xs, ws, ms = zip(*pts)
            wall.plot(xs, ws, style, color=color, marker="o", label=tool)
            rss.plot(xs, ms, style, color=color, marker="o", label=tool)
    for ax, what in ((wall, "intake wall time (s)"), (rss, "peak RSS (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("files in the tree")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("S1: intake of synthetic trees")
    fig.tight_layout()
    fig.savefig(path[:-4] + ".svg", metadata={"Date": None})


def ops(path, rows):
    fig, ax = plt.subplots(figsize=(8, 5.5))
    colors = {"verify": "C0", "restore": "C1", "gc": "C2"}
    for tool, style in (("asl", "-"), ("restic", "--")):
        for phase, color in colors.items():
            pts = sorted((int(r["store_bytes"]) / 1e9, float(r["wall_s"])) for r in rows
                         if r["tool"] == tool and r["phase"] == phase)
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, style, color=color, marker="o", label=f"{tool}: {phase}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("store / repository size (GB, each tool's own)")
    ax.set_ylabel("wall seconds")
    ax.set_title("gc, verify --read-data and restore against the store's size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path[:-4] + ".svg", metadata={"Date": None})


def s3(path, rows):
    """Intake of one tree into an empty store and into one of 10 M chunks: peak RSS and wall
    time side by side, per tool."""
    runs = [r for r in rows if "-into-" in r["tool"]]
    fig, (wall, rss) = plt.subplots(1, 2, figsize=(10, 4.5))
    names = [r["tool"] for r in runs]
    colors = ["C0" if n.startswith("asl") else "C1" for n in names]
    wall.bar(names, [float(r["wall_s"]) for r in runs], color=colors)
    rss.bar(names, [int(r["peak_rss_kib"]) / 1024 for r in runs], color=colors)
    for ax, what in ((wall, "intake wall time (s)"), (rss, "peak RSS (MiB)")):
        ax.set_ylabel(what)
        ax.tick_params(axis="x", labelrotation=20)
        ax.grid(True, axis="y", alpha=0.3)
    big = [r["store_chunks"] for r in rows if r["tool"] == "asl-fill"]
    fig.suptitle(f"S3: intake of one tree into an empty store and into one of "
                 f"{big[0] if big else '?'} chunks")
    fig.tight_layout()
    fig.savefig(path[:-4] + ".svg", metadata={"Date": None})


def main(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if rows and "phase" in rows[0]:
        return ops(path, rows)
    if rows and "store_chunks" in rows[0]:
        return s3(path, rows)
    if rows and "files" in rows[0]:
        return s1(path, rows)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for tool, col, label, color, style in SERIES:
        pts = [(int(r["snapshots"]), float(r[col])) for r in rows
               if r["tool"] == tool and r.get(col)]
        if pts:
            xs, ys = zip(*sorted(pts))
            ax.plot(xs, ys, style, color=color, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("snapshots in the store")
    ax.set_ylabel("seconds (median)")
    ax.set_title("S2: a store receiving many small snapshots")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path[:-4] + ".svg", metadata={"Date": None})


if __name__ == "__main__":
    main(sys.argv[1])
