#!/usr/bin/env python3
"""libasl.so from Python through ctypes: put, get and snapshot listing.

    test_ctypes.py LIBASL write STORE        creates STORE, puts, commits; prints PUT_REF <ref>
    test_ctypes.py LIBASL read STORE REF FILE  REF (in a store the CLI wrote) reads back as FILE

Exits non-zero, naming the check, on any failure. Run by tests/c_api.rs.
"""
import ctypes
import json
import sys

ASL_OK = 0
ASL_E_NOT_FOUND = 9
ASL_OPEN_WRITE = 1
ASL_OPEN_CREATE = 2
ASL_REF_STRING_MAX = 72


class Ref(ctypes.Structure):
    _fields_ = [("hash_id", ctypes.c_uint16), ("digest", ctypes.c_uint8 * 32)]


class Snapshot(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("log_position", ctypes.c_uint64),
        ("has_root", ctypes.c_bool),
        ("root", Ref),
        ("kind", ctypes.c_char_p),
        ("label", ctypes.c_char_p),
        ("host", ctypes.c_char_p),
        ("time", ctypes.c_char_p),
        ("json", ctypes.c_char_p),
    ]


class Asl:
    def __init__(self, path):
        lib = ctypes.CDLL(path)
        p = ctypes.c_void_p
        lib.asl_last_error.restype = ctypes.c_char_p
        lib.asl_status_name.restype = ctypes.c_char_p
        lib.asl_status_name.argtypes = [ctypes.c_int]
        lib.asl_store_open.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.POINTER(p)]
        lib.asl_store_close.argtypes = [p]
        lib.asl_put.argtypes = [p, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(Ref)]
        lib.asl_commit.argtypes = [p, ctypes.POINTER(Ref), ctypes.c_char_p, ctypes.c_char_p,
                                   ctypes.POINTER(ctypes.c_uint64)]
        lib.asl_artifact_len.argtypes = [p, ctypes.POINTER(Ref), ctypes.POINTER(ctypes.c_uint64)]
        lib.asl_get.argtypes = [p, ctypes.POINTER(Ref), ctypes.c_char_p, ctypes.c_size_t,
                                ctypes.POINTER(ctypes.c_size_t)]
        lib.asl_ref_to_string.argtypes = [ctypes.POINTER(Ref), ctypes.c_char_p, ctypes.c_size_t]
        lib.asl_ref_parse.argtypes = [ctypes.c_char_p, ctypes.POINTER(Ref)]
        lib.asl_snapshots.argtypes = [p, ctypes.POINTER(p)]
        lib.asl_snapshot_list_len.argtypes = [p]
        lib.asl_snapshot_list_len.restype = ctypes.c_size_t
        lib.asl_snapshot_list_get.argtypes = [p, ctypes.c_size_t, ctypes.POINTER(Snapshot)]
        lib.asl_snapshot_list_free.argtypes = [p]
        lib.asl_snapshot_list_free.restype = None
        self.lib = lib

    def call(self, name, *args, expect=ASL_OK):
        st = getattr(self.lib, name)(*args)
        if st != expect:
            sys.exit("FAIL: %s -> %s (%s), expected %s" % (
                name, self.lib.asl_status_name(st).decode(),
                self.lib.asl_last_error().decode(errors="replace"),
                self.lib.asl_status_name(expect).decode()))
        return st

    def open(self, store, flags):
        h = ctypes.c_void_p()
        self.call("asl_store_open", store.encode(), flags, ctypes.byref(h))
        return h

    def ref_text(self, ref):
        buf = ctypes.create_string_buffer(ASL_REF_STRING_MAX)
        self.call("asl_ref_to_string", ctypes.byref(ref), buf, len(buf))
        return buf.value.decode()

    def get(self, h, ref):
        n = ctypes.c_uint64()
        self.call("asl_artifact_len", h, ctypes.byref(ref), ctypes.byref(n))
        buf = ctypes.create_string_buffer(max(n.value, 1))
        got = ctypes.c_size_t()
        self.call("asl_get", h, ctypes.byref(ref), buf, n.value, ctypes.byref(got))
        return buf.raw[:got.value]

    def snapshots(self, h):
        lst = ctypes.c_void_p()
        self.call("asl_snapshots", h, ctypes.byref(lst))
        out = []
        for i in range(self.lib.asl_snapshot_list_len(lst)):
            s = Snapshot()
            self.call("asl_snapshot_list_get", lst, i, ctypes.byref(s))
            out.append({"id": s.id, "kind": s.kind.decode(),
                        "label": s.label.decode() if s.label else None,
                        "json": json.loads(s.json.decode())})
        self.lib.asl_snapshot_list_free(lst)
        return out


def write(asl, store):
    h = asl.open(store, ASL_OPEN_WRITE | ASL_OPEN_CREATE)
    data = b"put from python\x00with a NUL and \xff bytes"
    ref = Ref()
    asl.call("asl_put", h, data, len(data), ctypes.byref(ref))
    n = ctypes.c_uint64()
    asl.call("asl_artifact_len", h, ctypes.byref(ref), ctypes.byref(n), expect=ASL_E_NOT_FOUND)
    sid = ctypes.c_uint64()
    asl.call("asl_commit", h, ctypes.byref(ref), b"put", b"py-put", ctypes.byref(sid))
    if asl.get(h, ref) != data:
        sys.exit("FAIL: get returned other bytes")
    snaps = asl.snapshots(h)
    if [(s["id"], s["kind"], s["label"]) for s in snaps] != [(sid.value, "put", "py-put")]:
        sys.exit("FAIL: snapshots %r" % snaps)
    if snaps[0]["json"]["root"] != asl.ref_text(ref):
        sys.exit("FAIL: snapshot json %r" % snaps[0]["json"])
    asl.call("asl_store_close", h)
    print("PUT_REF", asl.ref_text(ref))
    print("PY WRITE OK")


def read(asl, store, ref_text, path):
    h = asl.open(store, 0)
    ref = Ref()
    asl.call("asl_ref_parse", ref_text.encode(), ctypes.byref(ref))
    want = open(path, "rb").read()
    if asl.get(h, ref) != want:
        sys.exit("FAIL: %s does not read back as %s" % (ref_text, path))
    snaps = asl.snapshots(h)
    if not snaps or snaps[-1]["kind"] != "intake":
        sys.exit("FAIL: snapshots of the CLI's store: %r" % snaps)
    asl.call("asl_store_close", h)
    print("PY READ OK", len(snaps))


if __name__ == "__main__":
    lib = Asl(sys.argv[1])
    if sys.argv[2] == "write":
        write(lib, sys.argv[3])
    elif sys.argv[2] == "read":
        read(lib, sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        sys.exit("usage: test_ctypes.py LIBASL write STORE | read STORE REF FILE")
