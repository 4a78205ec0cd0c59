#!/usr/bin/env python3
"""The tables of bench/prov/run.sh from the paired rounds of bench/prov/paired.py.

usage: report.py WORKDIR table NAME    one workload (WORKDIR/NAME.json): per command its median
                                       time and its per-round ratio to the baseline
       report.py WORKDIR targets       the targets of issue 4, judged on those ratios

A command's ratio is taken within each round (its time ÷ the baseline's time in the same
round); the tables give the median of those ratios and a 95 % bootstrap interval of that
median (rounds resampled 4,000 times with a fixed seed, so a report is reproducible from its
JSON).
"""
import json
import os
import random
import statistics
import sys

work = sys.argv[1]


def load(name):
    with open(os.path.join(work, name + '.json')) as f:
        d = json.load(f)
    return d['commands'], d['rounds']


def ratios(name, cmd):
    """Per-round ratios of `cmd` to the workload's baseline (its first command)."""
    names, rounds = load(name)
    i = names.index(cmd)
    return [r[i] / r[0] for r in rounds]


def interval(values):
    """95 % bootstrap interval of the median of `values`."""
    rng = random.Random(1)
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(4000))
    return meds[int(0.025 * len(meds))], meds[int(0.975 * len(meds)) - 1]


def table(name):
    names, rounds = load(name)
    print(f'{len(rounds)} paired rounds; baseline `{names[0]}`. Ratio: the median of the '
          f'per-round ratios to the baseline, with its 95 % bootstrap interval.')
    print()
    print('| command | median ms | min ms | max ms | ratio | 95 % interval |')
    print('|---|---|---|---|---|---|')
    for i, cmd in enumerate(names):
        t = [r[i] for r in rounds]
        q = ratios(name, cmd)
        lo, hi = interval(q)
        print(f'| `{cmd}` | {statistics.median(t) * 1000:.1f} | {min(t) * 1000:.1f} | '
              f'{max(t) * 1000:.1f} | {statistics.median(q):.3f}× | {lo:.3f}–{hi:.3f}× |')


def verdict(q, target):
    """'yes' when the whole interval is within the target, 'median only' when the median is,
    else 'no'."""
    lo, hi = interval(q)
    med = statistics.median(q)
    text = f'{med:.3f}× ({lo:.3f}–{hi:.3f}×)'
    if hi <= target:
        return text, 'yes'
    if med <= target:
        return text, 'median only: the interval reaches above'
    return text, '**no**'


def targets():
    print('| target | workload | ratio (95 % interval) | met |')
    print('|---|---|---|---|')
    for name, label in (('w1', 'W1'), ('w1b', 'W1b')):
        text, met = verdict(ratios(name, 'capture --trace fanotify'), 1.25)
        print(f'| capture with fanotify ≤ 1.25× the plain run of a file-heavy command | {label} | '
              f'{text} | {met} |')
    text, met = verdict(ratios('hash', 'asl-capture cold'), 0.5)
    print(f'| hashing the input set ≤ 0.5× in-toto-run (cold: empty store, every file read, '
          f'chunked, compressed, stored) | hashing | {text} | {met} |')


if sys.argv[2] == 'table':
    table(sys.argv[3])
elif sys.argv[2] == 'targets':
    targets()
else:
    sys.exit(__doc__)
