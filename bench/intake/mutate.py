#!/usr/bin/env python3
"""The scripted mutation between the unchanged and the incremental phase (anchors-store.md
Appendix B): append 8 bytes to 300 random regular files, delete 100 others, add a 64 MiB
random file, duplicate one directory (DUP_DIR, relative to SRC; skipped if absent).
Deterministic (seed 1) so every tool and every run sees the same change.

usage: mutate.py SRC DUP_DIR
"""
import os
import random
import shutil
import subprocess
import sys

src, dup = sys.argv[1], sys.argv[2]
random.seed(1)
files = []
for d, _, fs in os.walk(src):
    for f in fs:
        p = os.path.join(d, f)
        if os.path.isfile(p) and not os.path.islink(p):
            files.append(p)
files.sort()
random.shuffle(files)
appended = 0
for p in files[:300]:
    try:
        with open(p, 'ab') as fh:
            fh.write(b'mutated\n')
        appended += 1
    except OSError:
        pass  # e.g. a mode-000 file of D4 when not root: skipped the same way for every tool
removed = 0
for p in files[300:400]:
    os.remove(p)
    removed += 1
with open(os.path.join(src, 'new-random.bin'), 'wb') as fh:
    fh.write(random.randbytes(64 << 20))
dup_src = os.path.join(src, dup)
if dup and os.path.isdir(dup_src):
    # cp -a, as in Appendix B: keeps modes, times, links and xattrs of the copy.
    subprocess.run(['cp', '-a', dup_src, dup_src.rstrip('/') + '-copy'], check=True)
print(f"mutated: appended {appended}, removed {removed}, added new-random.bin (64 MiB), "
      f"duplicated {dup if os.path.isdir(dup_src) else '(nothing)'}")
