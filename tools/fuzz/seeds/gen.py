#!/usr/bin/env python3
"""Writes the seed inputs for the binary_request fuzz target into seeds/binary_request/.

Each seed is one limit-selector byte (3: values up to 1024 bytes) followed by request
frames: one well-shaped frame per served opcode, a pipeline of several, an unknown opcode
and a value over the limit. Without them libFuzzer rarely guesses the exact extras length,
key and body length a SET, INCR or GAT needs. Run from anywhere; rewrites the directory.
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "binary_request")


def frame(op, extras=b"", key=b"", value=b"", opaque=0x11223344, cas=0):
    body = len(extras) + len(key) + len(value)
    hdr = struct.pack(">BBHBBHIIQ", 0x80, op, len(key), len(extras), 0, 0, body, opaque, cas)
    return hdr + extras + key + value


STORE = struct.pack(">II", 0xDEADBEEF, 3600)
ARITH = struct.pack(">QQI", 1, 10, 0)
FOUR = struct.pack(">I", 60)

SEEDS = {
    "get": frame(0x00, key=b"key"),
    "getq": frame(0x09, key=b"key"),
    "getk": frame(0x0C, key=b"key"),
    "getkq": frame(0x0D, key=b"key"),
    "set": frame(0x01, STORE, b"key", b"value"),
    "setq": frame(0x11, STORE, b"key", b"value"),
    "add": frame(0x02, STORE, b"key", b"value"),
    "addq": frame(0x12, STORE, b"key", b""),
    "replace": frame(0x03, STORE, b"key", b"value"),
    "replaceq": frame(0x13, STORE, b"key", b"value"),
    "delete": frame(0x04, key=b"key"),
    "deleteq": frame(0x14, key=b"key"),
    "incr": frame(0x05, ARITH, b"counter"),
    "incrq": frame(0x15, ARITH, b"counter"),
    "decr": frame(0x06, ARITH, b"counter"),
    "decrq": frame(0x16, ARITH, b"counter"),
    "quit": frame(0x07),
    "quitq": frame(0x17),
    "flush": frame(0x08),
    "flush_delay": frame(0x08, FOUR),
    "flushq": frame(0x18, FOUR),
    "noop": frame(0x0A),
    "version": frame(0x0B),
    "append": frame(0x0E, key=b"key", value=b"tail"),
    "appendq": frame(0x19, key=b"key", value=b"tail"),
    "prepend": frame(0x0F, key=b"key", value=b"head"),
    "prependq": frame(0x1A, key=b"key", value=b"head"),
    "stat": frame(0x10),
    "stat_key": frame(0x10, key=b"settings"),
    "verbosity": frame(0x1B, FOUR),
    "touch": frame(0x1C, FOUR, b"key"),
    "gat": frame(0x1D, FOUR, b"key"),
    "gatq": frame(0x1E, FOUR, b"key"),
    "gatk": frame(0x23, FOUR, b"key"),
    "gatkq": frame(0x24, FOUR, b"key"),
    "sasl_list": frame(0x20),
    "unknown": frame(0x3F, b"\x01\x02", b"key", b"value"),
    "too_large": frame(0x01, STORE, b"key", b"v" * 1025),
    "key_250": frame(0x00, key=b"k" * 250),
}
SEEDS["pipeline"] = b"".join(
    SEEDS[n] for n in ["setq", "getkq", "unknown", "incr", "gat", "too_large", "append", "noop"]
)

os.makedirs(OUT, exist_ok=True)
for name in os.listdir(OUT):
    os.remove(os.path.join(OUT, name))
for name, data in SEEDS.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(b"\x03" + data)
