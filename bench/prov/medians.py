#!/usr/bin/env python3
"""Medians of the hyperfine runs of bench/prov/run.sh and the issue-4 targets they decide.
(hyperfine's markdown tables give means; the targets are judged on medians.)

usage: medians.py WORKDIR   (reads w1.json, w1b.json, hash.json, warm.json)
"""
import json
import os
import statistics
import sys

work = sys.argv[1]


def medians(name):
    with open(os.path.join(work, name)) as f:
        return {r['command']: statistics.median(r['times']) for r in json.load(f)['results']}


w1, w1b, h, warm = (medians(n) for n in ('w1.json', 'w1b.json', 'hash.json', 'warm.json'))
print('| measurement | median | ratio |')
print('|---|---|---|')
for label, table, base in (('W1', w1, 'plain'), ('W1b', w1b, 'plain')):
    for cmd, t in table.items():
        print(f'| {label} `{cmd}` | {t * 1000:.1f} ms | {t / table[base]:.2f}× plain |')
intoto = h['in-toto-run -m']
for cmd, t in list(h.items()) + list(warm.items()):
    print(f'| hashing `{cmd}` | {t:.3f} s | {t / intoto:.2f}× in-toto-run |')
print()
fan = [w1['capture --trace fanotify'] / w1['plain'], w1b['capture --trace fanotify'] / w1b['plain']]
cold = h['asl-capture cold'] / intoto
print('| target | measured (medians) | met |')
print('|---|---|---|')
print(f'| capture with fanotify ≤ 1.25× the plain run of a file-heavy command | W1 {fan[0]:.2f}×, '
      f'W1b {fan[1]:.2f}× | {"yes" if max(fan) <= 1.25 else "**no**"} |')
print(f'| hashing the input set ≤ 0.5× in-toto-run (cold: empty store, every file read, '
      f'chunked, compressed, stored) | {cold:.2f}× | {"yes" if cold <= 0.5 else "**no**"} |')
