#!/usr/bin/env python3
"""Approximation, in Python, of asl_fs::testing::build_rescue_tree (crates/asl-fs/src/testing.rs)
for the benchmark's dataset D4: the same kinds of entries (non-UTF-8 and awkward names, a
directory of BIG_DIR entries, FIFO, socket, device nodes when root, sparse files, hardlinks
including a hardlinked FIFO, dangling/looping symlinks, xattrs, setuid/setgid/sticky and mode-000
entries, foreign owners when root, 40-level nesting, odd mtimes). The pseudo-random contents use
a different generator than the Rust one, so the bytes differ; sizes and shapes are the same.

usage: rescue-tree.py DIR     (DIR must exist and be empty; BIG_DIR=20000 by default)
"""
import os
import random
import socket
import stat
import sys

root = os.fsencode(sys.argv[1])
big = int(os.environ.get('BIG_DIR', '20000'))
as_root = os.geteuid() == 0


def p(rel):
    return os.path.join(root, rel)


def write(rel, data):
    with open(p(rel), 'wb') as f:
        f.write(data)


def rnd(seed, n):
    return random.Random(seed).randbytes(n)


def mkdir(rel):
    os.makedirs(p(rel), exist_ok=True)


mkdir(b'plain')
write(b'plain/hello.txt', b'hello, rescue\n')
write(b'plain/empty', b'')
write(b'plain/medium.bin', rnd(1, 3 << 20))
write(b'plain/copy-of-medium.bin', rnd(1, 3 << 20))

mkdir(b'names')
for name in [b'latin1-caf\xe9', b'\xff\xfe-invalid', b'new\nline', b'tab\there',
             b' leading space', b'-dash', b'back\\slash']:
    write(b'names/' + name, name)
write(b'names/' + b'L' * 255, b'255-byte name')
mkdir(b'names/\xc0\xaf-dir')
write(b'names/\xc0\xaf-dir/inside', b'in a non-UTF-8 directory')

mkdir(b'big')
for i in range(big):
    write(b'big/f%06d' % i, b'%d\n' % i)

mkdir(b'special')
os.mkfifo(p(b'special/fifo'), 0o640)
s = socket.socket(socket.AF_UNIX)
s.bind(p(b'special/socket'))
s.close()
if as_root:
    os.mknod(p(b'special/null'), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(p(b'special/loop-blk'), stat.S_IFBLK | 0o660, os.makedev(7, 200))

mkdir(b'sparse')
with open(p(b'sparse/islands.img'), 'wb') as f:
    f.truncate(64 << 20)
    f.seek(0); f.write(rnd(2, 8192))
    f.seek(32 << 20); f.write(rnd(3, 4096))
    f.seek((64 << 20) - 4); f.write(b'tail')
with open(p(b'sparse/all-hole.img'), 'wb') as f:
    f.truncate(16 << 20)

mkdir(b'links/sub')
write(b'links/a', b'group one\n')
os.link(p(b'links/a'), p(b'links/b'))
os.link(p(b'links/a'), p(b'links/sub/c'))
write(b'links/x', b'group two\n')
os.link(p(b'links/x'), p(b'links/y'))
os.mkfifo(p(b'links/fifo1'), 0o600)
os.link(p(b'links/fifo1'), p(b'links/fifo2'))

mkdir(b'symlinks')
for target, rel in [(b'does-not-exist', b'dangling'), (b'/etc/passwd', b'absolute'),
                    (b'../plain', b'to-dir'), (b'loop', b'loop'),
                    (b'\xff-non-utf8-target', b'odd-target')]:
    os.symlink(target, p(b'symlinks/' + rel))

mkdir(b'xattrs/dir')
write(b'xattrs/file', b'has xattrs\n')
os.setxattr(p(b'xattrs/file'), b'user.comment', b'hello')
os.setxattr(p(b'xattrs/file'), b'user.binary', b'\x00\xff\x00')
os.setxattr(p(b'xattrs/file'), b'user.empty', b'')
os.setxattr(p(b'xattrs/dir'), b'user.on-dir', b'yes')
if as_root:
    os.setxattr(p(b'xattrs/file'), b'trusted.asl-test', b'root only')
    os.setxattr(p(b'symlinks/dangling'), b'trusted.on-link', b'1', follow_symlinks=False)

mkdir(b'modes')
write(b'modes/setuid', b'#!/bin/sh\n')
write(b'modes/setgid', b'#!/bin/sh\n')
mkdir(b'modes/sticky')
write(b'modes/no-perms', b'mode 000\n')
mkdir(b'modes/locked-dir')
write(b'modes/locked-dir/inside', b'behind a mode 000 directory\n')
if as_root:
    write(b'modes/owned-1000', b'uid 1000\n')
    write(b'modes/owned-nobody', b'uid 65534\n')
    os.lchown(p(b'modes/owned-1000'), 1000, 1000)
    os.lchown(p(b'modes/owned-nobody'), 65534, 65534)
    os.lchown(p(b'symlinks/absolute'), 1000, 100)
os.chmod(p(b'modes/setuid'), 0o4755)
os.chmod(p(b'modes/setgid'), 0o2750)
os.chmod(p(b'modes/sticky'), 0o1777)
os.chmod(p(b'modes/no-perms'), 0o000)
os.chmod(p(b'modes/locked-dir'), 0o000)

deep = b'deep' + b'/d' * 40
mkdir(deep)
write(deep + b'/bottom', b'40 levels down\n')

mkdir(b'times')
write(b'times/old', b'1969\n')
write(b'times/nanos', b'ns\n')
write(b'times/future', b'2200\n')
os.utime(p(b'times/old'), ns=(0, -86_400 * 365 * 10**9 + 5))
os.utime(p(b'times/nanos'), ns=(0, 1_700_000_000_123_456_789))
os.utime(p(b'times/future'), ns=(0, 7_258_118_400 * 10**9))
os.utime(p(b'symlinks/to-dir'), ns=(0, 1_600_000_000 * 10**9 + 42), follow_symlinks=False)
os.utime(p(b'times'), ns=(0, 1_500_000_000 * 10**9 + 1))
os.utime(p(b'modes/sticky'), ns=(0, 1_400_000_000 * 10**9 + 2))
print('rescue tree written')
