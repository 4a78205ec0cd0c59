#!/usr/bin/env python3
"""The report of bench/remote/run.sh: medians per tool and phase, the ratios the issue's
targets are about, and the 8-client load figures. Usage: report.py CSV LOAD_CSV SRC REV CMD"""
import csv, os, statistics, subprocess, sys

rows_path, load_path, src, rev, cmd = sys.argv[1:6]
rows = list(csv.DictReader(open(rows_path)))
med = {}
for tool in sorted({r["tool"] for r in rows}):
    for phase in ("first", "unchanged", "restore"):
        xs = [float(r["wall_s"]) for r in rows if r["tool"] == tool and r["phase"] == phase]
        rss = [int(r["max_rss_kb"]) for r in rows if r["tool"] == tool and r["phase"] == phase]
        if xs:
            med[(tool, phase)] = (statistics.median(xs), len(xs), max(rss))

size = int(subprocess.run(["du", "-sb", src], capture_output=True, text=True).stdout.split()[0])
files = sum(len(f) for _, _, f in os.walk(src))
print(f"# Remote intake benchmark, {rev}\n")
print(f"Command: `{cmd}` (RUNS={os.environ.get('RUNS', '3')}). Dataset D1: a copy of /usr/share, "
      f"{files} files, {size / 2**20:.0f} MiB. Machine: 2 cores, shared with other work during "
      "the run (noisy); medians of the runs. asl-remote is asl-server with the local-directory "
      "backend over HTTPS on loopback, client and server on the same 2 cores.\n")
print("| tool | first intake s | unchanged s | restore s | runs | max RSS MiB |")
print("|---|---|---|---|---|---|")
for tool in ("asl-local", "asl-local-nocache", "asl-remote", "restic", "asl-garage", "restic-s3"):
    if (tool, "first") not in med:
        continue
    cells = [f"{med[(tool, p)][0]:.2f}" for p in ("first", "unchanged", "restore")]
    rss = max(med[(tool, p)][2] for p in ("first", "unchanged", "restore")) / 1024
    print(f"| {tool} | {' | '.join(cells)} | {med[(tool, 'first')][1]} | {rss:.0f} |")

def ratio(a, b, phase):
    return med[(b, phase)][0] / med[(a, phase)][0]

print("\nSpeed of asl-remote relative to the others (time of the other / time of asl-remote; "
      "> 1 means asl-remote is faster):\n")
print("| phase | vs asl-local | vs asl-local --no-stat-cache | vs restic (local repo) |")
print("|---|---|---|---|")
for p in ("first", "unchanged", "restore"):
    print(f"| {p} | {ratio('asl-remote', 'asl-local', p):.2f} | "
          f"{ratio('asl-remote', 'asl-local-nocache', p):.2f} | {ratio('asl-remote', 'restic', p):.2f} |")

if ("asl-garage", "first") in med and ("restic-s3", "first") in med:
    print("\nOn the same 3-node Garage cluster (rf=3, loopback): asl-server with its store in the "
          "bucket against restic's S3 backend (time of restic-s3 / time of asl-garage; the target "
          "is >= 2 for first intake and restore):\n")
    print("| phase | asl-garage vs restic-s3 | asl-garage vs asl-local |")
    print("|---|---|---|")
    for p in ("first", "unchanged", "restore"):
        print(f"| {p} | {ratio('asl-garage', 'restic-s3', p):.2f} | {ratio('asl-garage', 'asl-local', p):.2f} |")

# The targets, each stated as met or not from the medians above.
checks = []
def target(what, fast, slow, phase, at_least):
    if (fast, phase) in med and (slow, phase) in med:
        r = ratio(fast, slow, phase)
        checks.append((what, phase, r, at_least, r >= at_least))
for p in ("first", "restore"):
    target("asl-garage at least 2x restic-s3", "asl-garage", "restic-s3", p, 2.0)
for remote in ("asl-remote", "asl-garage"):
    for p in ("first", "unchanged", "restore"):
        target(f"{remote} at least 70 % of asl-local", remote, "asl-local", p, 0.7)
if checks:
    print("\nThe targets of issue 18 (speed ratio = time of the slower-expected tool / time of asl; "
          "medians):\n")
    print("| target | phase | ratio | needed | met |")
    print("|---|---|---|---|---|")
    for what, phase, r, need, ok in checks:
        print(f"| {what} | {phase} | {r:.2f} | >= {need} | {'yes' if ok else '**no**'} |")

sent = [int(r["bytes_sent"]) for r in rows if r["tool"] == "asl-remote" and r["phase"] == "unchanged"]
print(f"\nBytes an unchanged remote re-intake sent: {max(sent) if sent else 'n/a'}.\n")

load = [r for r in csv.reader(open(load_path)) if r and not r[0].startswith(("#", "backend"))]
walls = [l.split() for l in open(load_path) if l.startswith("# load ")]
for backend, label in (("disk", "local-directory backend"), ("garage", "Garage backend")):
    rows_b = [r for r in load if r[0] == backend]
    if not rows_b:
        continue
    commits = sorted(float(r[4]) for r in rows_b)
    # Nearest-rank p99: with 8 commits per run it is the slowest commit of all runs.
    p99 = commits[min(len(commits) - 1, int(-(-0.99 * len(commits) // 1)) - 1)]
    tot = {w[3].rstrip(":"): float(w[4]) for w in walls if w[2] == backend}
    sent_by_run = {}
    for r in rows_b:
        sent_by_run[r[1]] = sent_by_run.get(r[1], 0) + int(r[5])
    rates = [sent_by_run[run] / t / 2**20 for run, t in tot.items() if run in sent_by_run]
    print(f"8 clients at once, {label} (D1's first 8 top-level directories, one per client, "
          f"{sum(sent_by_run.values()) / len(sent_by_run) / 2**20:.0f} MiB sent per run): "
          f"median wall for all 8 {statistics.median(tot.values()):.2f} s over {len(tot)} runs, "
          f"throughput {statistics.median(rates):.1f} MiB/s sent in all; "
          f"commit latency seen by the clients: median {statistics.median(commits) * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms ({len(commits)} commits).\n")
