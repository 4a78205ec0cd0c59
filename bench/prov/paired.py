#!/usr/bin/env python3
"""Times commands in paired rounds: each round runs every command once, back to back, in an
order drawn at random for that round (from a seed recorded with the times). A command's cost is
then judged on its per-round ratio to the baseline (the first command). Within seconds the
speed of a shared machine moves by ±15 %, and pooled medians of runs taken minutes apart move
with it; runs seconds apart share most of the drift, which the ratio cancels. The random order
keeps a command from always running first, last, or after the same other command (whose
after-effects, such as a previous run's writeback, it would inherit every time).

usage: paired.py ROUNDS OUT.json [--prepare NAME=CMD]... [--fatrace NAME] NAME=CMD...
  NAME=CMD        a command, run with `sh -c`; the first one is the baseline
  --prepare N=C   run C (untimed) before each run of command N
  --fatrace N     run command N while `fatrace -c` (started in /, untimed, with 0.5 s to set
                  up its marks) records every file event of the root mount to a file
One untimed warm-up run of every command comes first. Writes
{"commands": [NAME...], "rounds": [[seconds per command, in the order of "commands"]...],
 "orders": [[the indices of "commands" in the order they ran]...], "seed": N}.
SEED=N repeats the orders of a series.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def main():
    args = sys.argv[1:]
    if len(args) < 3:
        sys.exit(__doc__)
    rounds, out = int(args[0]), args[1]
    prepare, fatrace, cmds = {}, set(), []
    rest = iter(args[2:])
    for a in rest:
        if a == '--prepare':
            name, cmd = next(rest).split('=', 1)
            prepare[name] = cmd
        elif a == '--fatrace':
            fatrace.add(next(rest))
        else:
            name, cmd = a.split('=', 1)
            cmds.append((name, cmd))
    names = [n for n, _ in cmds]
    for n in list(prepare) + list(fatrace):
        if n not in names:
            sys.exit(f'paired.py: no command named {n!r}')

    log_dir = tempfile.mkdtemp(prefix='paired-fatrace.')

    def run(name, cmd):
        if name in prepare:
            subprocess.run(prepare[name], shell=True, check=True, stdout=subprocess.DEVNULL)
        tracer = None
        log = os.path.join(log_dir, 'events')
        try:
            if name in fatrace:
                # No SIGTERM between the start and `tracer` holding it: the `finally` below
                # could not stop a fatrace it does not know of.
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
                try:
                    tracer = subprocess.Popen(['fatrace', '-c', '-o', log], cwd='/',
                                              stdout=subprocess.DEVNULL)
                finally:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
                time.sleep(0.5)
                if tracer.poll() is not None:
                    sys.exit(f'paired.py: fatrace ended before {name!r} ran '
                             f'(status {tracer.returncode})')
            start = time.perf_counter()
            r = subprocess.run(cmd, shell=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            took = time.perf_counter() - start
        finally:
            if tracer:
                tracer.send_signal(signal.SIGINT)
                tracer.wait()
        if r.returncode != 0:
            sys.exit(f'paired.py: {name!r} failed with status {r.returncode}: {cmd}')
        if tracer:
            # fatrace must have seen the command, or its time means nothing.
            if tracer.returncode != 0:
                sys.exit(f'paired.py: fatrace failed with status {tracer.returncode}')
            with open(log, 'rb') as f:
                if f.read(1) == b'':
                    sys.exit(f'paired.py: fatrace recorded no event during {name!r}')
            os.remove(log)
        return took

    # A SIGTERM (from `timeout`, say) unwinds like an error, so no fatrace is left running.
    def terminate(signum, frame):
        raise SystemExit(f'paired.py: stopped by signal {signum}')
    signal.signal(signal.SIGTERM, terminate)
    # A seed of its own per series (SEED to repeat one): with one seed for all, every series
    # would run the same orders, and a bias of some position would repeat in each.
    seed = int(os.environ.get('SEED') or random.SystemRandom().randrange(1 << 32))
    rng = random.Random(seed)
    orders = []

    try:
        for name, cmd in cmds:
            run(name, cmd)
        table = []
        for i in range(rounds):
            order = rng.sample(range(len(cmds)), len(cmds))
            orders.append(order)
            times = {}
            for k in order:
                name, cmd = cmds[k]
                times[name] = run(name, cmd)
            table.append([times[n] for n in names])
            print(f'round {i + 1}/{rounds}: ' + ', '.join(f'{n} {t * 1000:.0f} ms'
                                                        for n, t in zip(names, table[-1])),
                  file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    with open(out, 'w') as f:
        json.dump({'commands': names, 'rounds': table, 'orders': orders, 'seed': seed}, f)


if __name__ == '__main__':
    main()
