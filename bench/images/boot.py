#!/usr/bin/env python3
"""Boots one image under QEMU TCG and times serial-console markers.

usage: boot.py --log FILE --timeout S --until MARKER [--marker NAME=TEXT ...] -- QEMU-ARGS...

Starts qemu-system-x86_64 -accel tcg with the serial console on its stdout, copies the
console to --log, and records the seconds from qemu's start until each marker's text first
appears. It stops qemu (SIGTERM, then SIGKILL) as soon as the --until marker is seen, on the
timeout, or when qemu exits, and always waits for it: no guest outlives the measurement.
Prints one JSON object: {"markers": {NAME: seconds or null}, "timed_out": bool, "exit": ...}.
Exit 0 when the --until marker was seen, 1 otherwise.
"""

import argparse
import json
import os
import selectors
import signal
import subprocess
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--until", required=True, help="the marker NAME that ends the boot")
    ap.add_argument("--marker", action="append", default=[], help="NAME=TEXT")
    ap.add_argument("qemu", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    qemu_args = a.qemu[1:] if a.qemu[:1] == ["--"] else a.qemu
    markers = {}
    for m in a.marker:
        name, _, text = m.partition("=")
        markers[name] = text.encode()
    if a.until not in markers:
        ap.error(f"--until {a.until}: no such --marker")

    argv = ["qemu-system-x86_64", "-accel", "tcg", "-display", "none", "-vga", "none",
            "-monitor", "none", "-serial", "stdio", "-no-reboot", *qemu_args]
    seen = {name: None for name in markers}
    buf = b""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    timed_out = False
    try:
        with open(a.log, "wb") as log:
            sel = selectors.DefaultSelector()
            sel.register(p.stdout, selectors.EVENT_READ)
            while True:
                left = a.timeout - (time.monotonic() - t0)
                if left <= 0:
                    timed_out = True
                    break
                if not sel.select(timeout=min(left, 1.0)):
                    if p.poll() is not None:
                        break
                    continue
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    if p.poll() is not None:
                        break
                    continue
                now = time.monotonic() - t0
                log.write(chunk)
                log.flush()
                # Keep a tail long enough for any marker split across two reads.
                buf = buf[-4096:] + chunk
                for name, text in markers.items():
                    if seen[name] is None and text in buf:
                        seen[name] = round(now, 1)
                if seen[a.until] is not None:
                    break
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    print(json.dumps({"markers": seen, "timed_out": timed_out, "exit": p.returncode,
                      "argv": argv}))
    return 0 if seen[a.until] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
