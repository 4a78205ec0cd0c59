#!/usr/bin/env python3
"""Boot-to-ready and stop times of overlay-boot (this project) next to bubblewrap and
systemd-nspawn, in one run, interleaved so that machine load hits every tool alike.

What is measured (wall clock of the command, START=none, minbase root for everybody):
  overlay-boot   `overlay-boot CONF` until it returns: the subhost is up, PID 1 ready
  overlay-go     `overlay-go NAME true`: entering a running subhost
  overlay-stop   `overlay-stop CONF` until it returns: everything removed
  ... (volatile) the same with OVERLAY_OPTIONS=volatile: no sync of UPPER's file system at
                 unmount (what stop costs without the data-safety sync)
  bwrap          `bwrap --bind ROOT / --proc /proc --dev /dev --unshare-all true`
  nspawn         `systemd-nspawn -q -D ROOT --register=no --keep-unit --as-pid2 true`
bwrap and nspawn have no separate "ready" point: their figure is start + run `true` + exit.

Usage: bench/subhost/bench.py [--runs N] [--asl PATH] [--out FILE]   (root; needs
scripts/minbase.sh's tree, bubblewrap, systemd-container: scripts/deps/subhost.apt)
"""
import argparse, os, platform, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def timed(argv, env=None):
    t = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = (time.perf_counter() - t) * 1000.0
    if r.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed: {r.stderr.decode(errors='replace')}")
    return dt


def subhost(base, name, minbase, extra=""):
    d = os.path.join(base, name)
    for sub in ("root", "work", "live"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    conf = os.path.join(d, f"{name}.conf")
    with open(conf, "w") as f:
        f.write(f"BASE=.\nSTART=none\nLOWER={minbase}\nLOG={d}/log\n{extra}")
    return conf


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--asl", default=os.environ.get("ASL_BIN", os.path.join(ROOT, "target/debug/asl")))
    ap.add_argument("--runner", help="also time bench/subhost/runner (the same library calls, "
                    "release build): cargo build --release in bench/subhost/runner")
    ap.add_argument("--out", help="write the Markdown table here (default: stdout)")
    a = ap.parse_args()
    minbase = subprocess.run(["bash", os.path.join(ROOT, "scripts/minbase.sh")], check=True,
                             capture_output=True, text=True).stdout.strip()
    for tool in ("bwrap", "systemd-nspawn"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} missing (apt-get install bubblewrap systemd-container)")
    base = tempfile.mkdtemp(prefix="asl-subhost-bench-")
    plain = subhost(base, "benchsync", minbase)
    vol = subhost(base, "benchvol", minbase, "OVERLAY_OPTIONS=volatile\n")
    asl = a.asl
    res = {k: [] for k in ("overlay-boot", "overlay-go", "overlay-stop", "overlay-boot (volatile)",
                           "overlay-stop (volatile)", "bwrap", "nspawn")}
    if a.runner:
        for k in ("release: boot", "release: go", "release: stop", "release: boot (volatile)",
                  "release: stop (volatile)"):
            res[k] = []
    bwrap = ["bwrap", "--bind", minbase, "/", "--proc", "/proc", "--dev", "/dev", "--unshare-all", "/bin/true"]
    nspawn = ["systemd-nspawn", "-q", "-D", minbase, "--register=no", "--keep-unit", "--as-pid2", "/bin/true"]
    # One warm-up round, not recorded (page cache, first netns of the run).
    for argv in ([asl, "overlay-boot", "-q", plain], [asl, "overlay-stop", "-q", plain], bwrap, nspawn):
        timed(argv)
    try:
        for _ in range(a.runs):
            res["overlay-boot"].append(timed([asl, "overlay-boot", "-q", plain]))
            res["overlay-go"].append(timed([asl, "overlay-go", "benchsync", "true"]))
            res["overlay-stop"].append(timed([asl, "overlay-stop", "-q", plain]))
            res["overlay-boot (volatile)"].append(timed([asl, "overlay-boot", "-q", vol]))
            res["overlay-stop (volatile)"].append(timed([asl, "overlay-stop", "-q", vol]))
            if a.runner:
                res["release: boot"].append(timed([a.runner, "boot", plain]))
                res["release: go"].append(timed([a.runner, "go", "benchsync", "true"]))
                res["release: stop"].append(timed([a.runner, "stop", plain]))
                res["release: boot (volatile)"].append(timed([a.runner, "boot", vol]))
                res["release: stop (volatile)"].append(timed([a.runner, "stop", vol]))
            res["bwrap"].append(timed(bwrap))
            res["nspawn"].append(timed(nspawn))
    finally:
        for c in (plain, vol):
            subprocess.run([asl, "overlay-stop", "-q", c], stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)

    load = open("/proc/loadavg").read().split()[:3]
    lines = [
        f"# Subhost start/stop benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"Machine: {platform.node()}, kernel {platform.release()}, {os.cpu_count()} CPUs, "
        f"load average at the end {' '.join(load)} (other builds were running: expect noise).",
        f"Binary: `{asl}`" + (f"; `release:` rows: `{a.runner}` (bench/subhost/runner, same "
        "library calls, release build)" if a.runner else "") + ". Root for all: debootstrap minbase bookworm ({minbase}). "
        f"{a.runs} runs each, interleaved, after one warm-up round. Times in ms, wall clock of the command.",
        "",
        "| command | median | mean | min | max |",
        "|---|---:|---:|---:|---:|",
    ]
    for k, v in res.items():
        lines.append(f"| {k} | **{statistics.median(v):.1f}** | {statistics.mean(v):.1f} | {min(v):.1f} | {max(v):.1f} |")
    lines += ["", "Reproduce: `(cd bench/subhost/runner && cargo build --release)`, then "
              "`sudo bench/subhost/bench.py --runs 21 --asl target/debug/asl "
              "--runner bench/subhost/runner/target/release/subhost-bench-runner`."]
    text = "\n".join(lines) + "\n"
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
