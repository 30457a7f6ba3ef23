"""Client compatibility: python-binary-memcached (`bmemcached`), a pure-Python client of
the binary protocol.

Run as `python3 test_bmemcached.py HOST:PORT`; exits non-zero if any check fails.

Two things about this client shape the checks:
- It has no touch, append or prepend methods. Those checks send the request through the
  client's own connection and framing (`Protocol._send` / `_get_response`).
- It swallows connection errors: a get on a dead connection returns None, which would make
  "key is absent" checks pass against a crashed server. `strict_connection_errors` turns
  every connection error into a failure.
"""

import os
import struct
import sys
import time

import bmemcached
from bmemcached.exceptions import MemcachedException
from bmemcached.protocol import Protocol

from harness import EXPIRY_DEADLINE, LARGE_VALUE_LEN, run, server_address, wait_until_gone

# Binary protocol opcodes and statuses used by the raw requests below.
OP_APPEND = 0x0E
OP_PREPEND = 0x0F
OP_TOUCH = 0x1C
STATUS_OK = 0x0000
STATUS_KEY_NOT_FOUND = 0x0001
STATUS_VALUE_TOO_LARGE = 0x0003
STATUS_NOT_STORED = 0x0005
STATUS_NON_NUMERIC = 0x0006
HEADER = struct.Struct("!BBHBBHLLQ")


def strict_connection_errors():
    original = Protocol._connection_error

    def fail(self, exception):
        original(self, exception)
        raise AssertionError(f"connection to the server failed: {exception!r}") from exception

    Protocol._connection_error = fail


def raw_request(mc, opcode, key, extras=b"", value=b""):
    """One request on bmemcached's own connection; returns (status, body)."""
    server = next(mc.servers)
    keybytes = key.encode()
    body_len = len(extras) + len(keybytes) + len(value)
    header = HEADER.pack(0x80, opcode, len(keybytes), len(extras), 0, 0, body_len, 0, 0)
    server._send(header + extras + keybytes + value)
    (_, resp_opcode, _, _, _, status, _, _, _, body) = server._get_response()
    assert resp_opcode == opcode, f"response opcode {resp_opcode:#x} to request {opcode:#x}"
    return status, body


def touch(mc, key, ttl):
    status, body = raw_request(mc, OP_TOUCH, key, extras=struct.pack("!L", ttl))
    assert status in (STATUS_OK, STATUS_KEY_NOT_FOUND), f"touch status {status:#x} {body!r}"
    return status == STATUS_OK


def check_set_get_delete(mc):
    assert mc.get("bmc:absent") is None, "get of a key never set"

    assert mc.set("bmc:str", "hello"), "set str"
    assert mc.get("bmc:str") == "hello", f"get str: {mc.get('bmc:str')!r}"

    raw = b"\x00\r\n\xff\xfe END\r\n"
    assert mc.set("bmc:bytes", raw), "set bytes"
    assert mc.get("bmc:bytes") == raw, f"get bytes: {mc.get('bmc:bytes')!r}"

    assert mc.set("bmc:int", 1234567), "set int"
    got = mc.get("bmc:int")
    assert got == 1234567 and isinstance(got, int), f"int (flags) round trip: {got!r}"

    obj = {"list": [1, 2, 3], "nested": {"t": (4, 5)}}
    assert mc.set("bmc:obj", obj), "set pickled object"
    assert mc.get("bmc:obj") == obj, f"pickled object (flags) round trip: {mc.get('bmc:obj')!r}"

    # Longer than the client's 128-byte threshold and compressible: stored zlib-compressed
    # with the compression flag, so the flags must come back for this to decode.
    text = "compressible " * 100
    assert mc.set("bmc:zlib", text), "set compressible value"
    assert mc.get("bmc:zlib") == text, "compressed value (flags) round trip"

    assert mc.set("bmc:str", "overwritten"), "set over an existing key"
    assert mc.get("bmc:str") == "overwritten", "value after overwrite"

    assert mc.delete("bmc:str"), "delete of a present key"
    assert mc.get("bmc:str") is None, "get after delete"


def check_add_replace(mc):
    assert mc.add("bmc:add", "first") is True, "add of an absent key"
    assert mc.add("bmc:add", "second") is False, "add of a present key must fail"
    assert mc.get("bmc:add") == "first", "a failed add changed the value"

    assert mc.replace("bmc:nobody", "x") is False, "replace of an absent key must fail"
    assert mc.get("bmc:nobody") is None, "a failed replace created the key"
    assert mc.replace("bmc:add", "replaced") is True, "replace of a present key"
    assert mc.get("bmc:add") == "replaced", "value after replace"


def check_get_multi(mc):
    items = {"bmc:m1": "one", "bmc:m2": b"two", "bmc:m3": 3}
    for key, value in items.items():
        assert mc.set(key, value), f"set {key}"
    # bmemcached pipelines GETKQ for all keys but the last, which is a GETK.
    got = mc.get_multi(["bmc:m1", "bmc:missing", "bmc:m2", "bmc:m3", "bmc:missing2"])
    assert got == items, f"get_multi returns the present keys only: {got!r}"
    got = mc.get_multi(["bmc:m1", "bmc:m2", "bmc:m3"])
    assert got == items, f"get_multi whose last key is present: {got!r}"
    assert mc.get_multi(["bmc:none1", "bmc:none2"]) == {}, "get_multi of absent keys"

    many = {f"bmc:many:{i}": i for i in range(0, 300, 2)}
    # set_multi pipelines SETQ requests ending in a NOOP; it returns the keys that failed.
    failed = mc.set_multi(many)
    assert not failed, f"set_multi of 150 keys failed for {failed!r}"
    got = mc.get_multi([f"bmc:many:{i}" for i in range(300)])
    assert got == many, f"get_multi of 300 keys, 150 present: {len(got)} returned"


def check_incr_decr(mc):
    assert mc.set("bmc:n", "10"), "set counter"
    assert mc.incr("bmc:n", 5) == 15, "incr"
    assert mc.decr("bmc:n", 6) == 9, "decr"
    assert mc.decr("bmc:n", 100) == 0, "decr clamps at 0"
    assert mc.incr("bmc:n", 2**64 - 1) == 2**64 - 1, "incr to u64::MAX"
    assert mc.incr("bmc:n", 1) == 0, "incr wraps past u64::MAX"

    assert mc.set("bmc:text", "not a number"), "set text"
    try:
        mc.incr("bmc:text", 1)
    except MemcachedException as e:
        assert e.code == STATUS_NON_NUMERIC, f"incr of a non-numeric value: status {e.code}"
    else:
        raise AssertionError("incr of a non-numeric value must fail")
    assert mc.get("bmc:text") == "not a number", "failed incr changed the value"


def check_cas(mc):
    ok, set_cas = mc.set("bmc:cas", "v1", get_cas=True)
    assert ok and set_cas, f"set returned no CAS value: {set_cas!r}"
    value, cas = mc.gets("bmc:cas")
    assert value == "v1", f"gets value: {value!r}"
    assert cas == set_cas, f"CAS from gets ({cas}) differs from the one set returned ({set_cas})"

    assert mc.cas("bmc:cas", "v2", cas) is True, "cas with the current CAS value"
    assert mc.get("bmc:cas") == "v2", "value after cas"
    assert mc.cas("bmc:cas", "v3", cas) is False, "cas with a stale CAS value must fail"
    assert mc.get("bmc:cas") == "v2", "a failed cas changed the value"

    _, new_cas = mc.gets("bmc:cas")
    assert new_cas != cas, "the CAS value changes when the item changes"

    assert mc.delete("bmc:cas", cas=cas) is False, "delete with a stale CAS value must fail"
    assert mc.get("bmc:cas") == "v2", "a failed delete removed the item"
    assert mc.delete("bmc:cas", cas=new_cas) is True, "delete with the current CAS value"
    assert mc.get("bmc:cas") is None, "item present after delete with CAS"

    assert mc.gets("bmc:cas-absent") == (None, None), "gets of an absent key"
    assert mc.cas("bmc:cas-absent", "x", cas) is False, "cas of an absent key must fail"


def check_touch(mc):
    start = time.monotonic()
    assert mc.set("bmc:touch", "lives", time=1), "set with TTL 1"
    assert touch(mc, "bmc:touch", 100), "touch of a present key"
    remaining = start + EXPIRY_DEADLINE - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    assert mc.get("bmc:touch") == "lives", (
        f"touch to 100 s did not extend a 1 s TTL: item gone {EXPIRY_DEADLINE}s after set"
    )
    assert touch(mc, "bmc:touch", 1), "touch to shorten the TTL"
    wait_until_gone(mc.get, "bmc:touch")
    assert not touch(mc, "bmc:touch-absent", 1), "touch of an absent key"


def check_append_prepend(mc):
    assert mc.set("bmc:ap", b"middle"), "set"
    status, body = raw_request(mc, OP_APPEND, "bmc:ap", value=b"-end")
    assert status == STATUS_OK, f"append status {status:#x} {body!r}"
    status, body = raw_request(mc, OP_PREPEND, "bmc:ap", value=b"start-")
    assert status == STATUS_OK, f"prepend status {status:#x} {body!r}"
    got = mc.get("bmc:ap")
    assert got == b"start-middle-end", f"after append+prepend: {got!r}"

    for opcode, name in [(OP_APPEND, "append"), (OP_PREPEND, "prepend")]:
        status, _ = raw_request(mc, opcode, "bmc:ap-absent", value=b"x")
        assert status == STATUS_NOT_STORED, f"{name} to an absent key: status {status:#x}"
    assert mc.get("bmc:ap-absent") is None, "append/prepend created a key"


def check_expiry(mc):
    assert mc.set("bmc:ttl", "soon gone", time=1), "set with TTL 1"
    assert mc.set("bmc:durable", "stays"), "set without TTL"
    assert mc.get("bmc:ttl") == "soon gone", "item with TTL 1 readable right after set"
    took = wait_until_gone(mc.get, "bmc:ttl")
    print(f"     item with TTL 1 s gone after {took:.2f}s")
    assert mc.get("bmc:durable") == "stays", "an item without TTL expired"


def check_large_value(mc):
    big = os.urandom(LARGE_VALUE_LEN)  # incompressible: sent as is
    assert mc.set("bmc:big", big), f"set of a {len(big)}-byte value"
    got = mc.get("bmc:big")
    assert got == big, f"{len(big)}-byte value came back different (len {len(got or b'')})"

    too_big = os.urandom(2 * 1024 * 1024)
    try:
        mc.set("bmc:huge", too_big)
    except MemcachedException as e:
        assert e.code == STATUS_VALUE_TOO_LARGE, f"2 MiB value with -I 1m: status {e.code}"
    else:
        raise AssertionError("set of a 2 MiB value with -I 1m must fail")
    assert mc.get("bmc:huge") is None, "a rejected value was stored"
    assert mc.set("bmc:after-big", "ok") and mc.get("bmc:after-big") == "ok", (
        "connection unusable after a rejected large value"
    )


def check_flush(mc):
    keys = [f"bmc:flush:{i}" for i in range(50)]
    assert not mc.set_multi({k: k for k in keys}), "set_multi before flush"
    assert mc.flush_all(), "flush_all"
    assert mc.get_multi(keys) == {}, "keys survived flush_all"
    assert mc.set("bmc:after-flush", "v") and mc.get("bmc:after-flush") == "v", "set after flush"


CHECKS = [
    check_set_get_delete,
    check_add_replace,
    check_get_multi,
    check_incr_decr,
    check_cas,
    check_touch,
    check_append_prepend,
    check_expiry,
    check_large_value,
    check_flush,
]


def main():
    address = server_address(sys.argv)
    strict_connection_errors()
    mc = bmemcached.Client((address,))
    mc.flush_all()  # the checks assume an empty cache
    return run("bmemcached", mc, CHECKS)


if __name__ == "__main__":
    sys.exit(main())
