#!/usr/bin/env python3
"""Writes the seed inputs for the peer_frame fuzz target into seeds/peer_frame/.

Each seed is one limit-selector byte (3: bodies up to 1 MiB, unless a seed says otherwise)
followed by peer frames built from the byte tables of protocol-spec/peer-protocol.md, not
from the Rust code, so that the seeds are a second reading of the spec:
tests/peer_frame_fuzz.rs checks that they reach every parser. One frame per request and
response kind, the handshake, pipelines of both directions, a refusal, kept opcodes, and the
three frame errors. Run from anywhere; rewrites the directory.
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_frame")

REQ, RESP = 0x80, 0x81
HELLO, AUTH, GET, GAT, TOUCH, STORE, DELETE, ARITH, FLUSH = 0xC0, 0xC1, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA


def frame(magic, op, extras=b"", key=b"", value=b"", vbucket=0, opaque=0, cas=0):
    body = len(extras) + len(key) + len(value)
    hdr = struct.pack(">BBHBBHIIQ", magic, op, len(key), len(extras), 0, vbucket, body, opaque, cas)
    return hdr + extras + key + value


def req(op, extras=b"", key=b"", value=b"", partition=513, opaque=7, cas=0):
    return frame(REQ, op, extras, key, value, partition, opaque, cas)


def resp(op, status, extras=b"", key=b"", value=b"", opaque=7, cas=0):
    return frame(RESP, op, extras, key, value, status, opaque, cas)


def store(flags, exptime, mode):
    return struct.pack(">IIB3x", flags, exptime, mode)


def arith(delta, initial, exptime, touch, bits):
    return struct.pack(">QQIIB3x", delta, initial, exptime, touch, bits)


NONCE_A, NONCE_B, PROOF = bytes(range(16)), bytes(range(16, 32)), bytes(range(32, 64))
EXP = struct.pack(">I", 3600)

SEEDS = {
    "hello": req(HELLO, struct.pack(">HHI", 1, 1, 0xDEADBEEF), b"a", NONCE_A + b"prod", 0, 0),
    "hello_ok": resp(HELLO, 0x0000, struct.pack(">HHI", 1, 2, 0xDEADBEEF), b"b", NONCE_B + PROOF, 0),
    "hello_refused": resp(HELLO, 0x0007, value=b"node 'a' has map 00000001, this node 00000002", opaque=0),
    "auth": req(AUTH, value=PROOF, partition=0, opaque=0),
    "auth_ok": resp(AUTH, 0x0000, opaque=0),
    "auth_refused": resp(AUTH, 0x0020, value=b"node 'a' failed authentication", opaque=0),
    "get": req(GET, key=b"key"),
    "gat": req(GAT, EXP, b"key"),
    "touch": req(TOUCH, EXP, b"key"),
    "delete": req(DELETE, key=b"key", cas=5),
    "flush": req(FLUSH, struct.pack(">I", 0), partition=0),
    "flush_delay": req(FLUSH, struct.pack(">I", 30), partition=0),
    "arith_incr": req(ARITH, arith(1, 0, 0, 0, 0x01), b"counter"),
    "arith_create_touch": req(ARITH, arith(5, 10, 60, 120, 0x07), b"counter", cas=9),
    "arith_decr": req(ARITH, arith(1, 0, 0, 0, 0x00), b"counter"),
    "value": resp(GET, 0x0000, struct.pack(">I", 0xF00D), b"key", b"the value", cas=42),
    "touched": resp(TOUCH, 0x0000, struct.pack(">I", 3), b"key", cas=43),
    "counter": resp(ARITH, 0x0011, struct.pack(">Q", 11), b"counter", cas=44),
    "done": resp(STORE, 0x0010, key=b"key", cas=45),
    "not_my_partition": resp(GET, 0x0007, key=b"key"),
    "key_250": req(GET, key=b"k" * 250),
    "key_251": req(GET, key=b"k" * 251),
    "kept_opcode": req(0xD0, b"\x00" * 4, b"key", b"value"),
    "bad_magic": b"get key\r\n",
    "bad_lengths": frame(REQ, GET, b"", b"key", b"")[:4] + b"\xff" + frame(REQ, GET, b"", b"key", b"")[5:],
}
for mode, name in enumerate(["set", "add", "replace", "append", "prepend"]):
    SEEDS["store_" + name] = req(STORE, store(0xDEADBEEF, 3600, mode), b"key", b"value", cas=mode)
for status, name in [(0x0001, "not_found"), (0x0002, "exists"), (0x0003, "too_large"), (0x0005, "not_stored"),
                     (0x0006, "non_numeric"), (0x0082, "out_of_memory"), (0x0084, "storage_error"),
                     (0x0086, "temporary_failure")]:
    SEEDS[name] = resp(GET, status, key=b"key")
SEEDS["pipeline_requests"] = b"".join(
    SEEDS[n] for n in ["hello", "auth", "get", "store_set", "arith_create_touch", "gat", "delete", "flush"]
)
SEEDS["pipeline_responses"] = b"".join(
    SEEDS[n] for n in ["hello_ok", "auth_ok", "value", "done", "counter", "not_found", "not_my_partition"]
)

os.makedirs(OUT, exist_ok=True)
for name in os.listdir(OUT):
    os.remove(os.path.join(OUT, name))
for name, data in SEEDS.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(b"\x03" + data)
# Selector 0: bodies up to 16 bytes, so a STORE is too large.
with open(os.path.join(OUT, "body_too_large"), "wb") as f:
    f.write(b"\x00" + SEEDS["store_set"])
