#!/usr/bin/env python3
"""Medians of the hyperfine runs of bench/prov/run.sh and the issue-4 targets they decide.
(hyperfine's markdown tables give means; the targets are judged on medians.)

usage: medians.py WORKDIR table w1|w1b   the times of every round of one workload
       medians.py WORKDIR targets        medians, ratios and the targets
W1 and W1b ran in rounds (w1-1.json, w1-2.json, ...); their times are pooled per command.
"""
import glob
import json
import os
import statistics
import sys

work = sys.argv[1]


def times(name):
    """Command -> every run's time (s), pooled over the rounds `name-N.json` or from `name.json`."""
    files = sorted(glob.glob(os.path.join(work, name + '-*.json'))) or [os.path.join(work, name + '.json')]
    pooled = {}
    for path in files:
        with open(path) as f:
            for r in json.load(f)['results']:
                pooled.setdefault(r['command'], []).extend(r['times'])
    return pooled, len(files)


def medians(name):
    return {cmd: statistics.median(t) for cmd, t in times(name)[0].items()}


if sys.argv[2] == 'table':
    pooled, rounds = times(sys.argv[3])
    base = statistics.median(pooled['plain'])
    print(f'{rounds} round(s); runs pooled over the rounds.')
    print()
    print('| command | runs | median ms | min ms | max ms | median ÷ plain |')
    print('|---|---|---|---|---|---|')
    for cmd, t in pooled.items():
        m = statistics.median(t)
        print(f'| `{cmd}` | {len(t)} | {m * 1000:.1f} | {min(t) * 1000:.1f} | {max(t) * 1000:.1f} | {m / base:.2f}× |')
    sys.exit(0)

w1, w1b, h, warm = (medians(n) for n in ('w1', 'w1b', 'hash', 'warm'))
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
