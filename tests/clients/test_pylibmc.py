"""Client compatibility: pylibmc (libmemcached) in binary-protocol mode.

Run as `python3 test_pylibmc.py HOST:PORT`; exits non-zero if any check fails. pylibmc
keeps Python types in the item flags (str, bytes, int, pickled objects), so these checks
also show that the server stores and returns flags unchanged.
"""

import os
import sys
import time

import pylibmc

from harness import EXPIRY_DEADLINE, LARGE_VALUE_LEN, run, server_address, wait_until_gone


def check_set_get_delete(mc):
    assert mc.get("plc:absent") is None, "get of a key never set"

    assert mc.set("plc:str", "hello"), "set str"
    assert mc.get("plc:str") == "hello", f"get str: {mc.get('plc:str')!r}"

    raw = b"\x00\r\n\xff\xfe END\r\n"
    assert mc.set("plc:bytes", raw), "set bytes"
    assert mc.get("plc:bytes") == raw, f"get bytes: {mc.get('plc:bytes')!r}"

    assert mc.set("plc:int", 1234567), "set int"
    got = mc.get("plc:int")
    assert got == 1234567 and isinstance(got, int), f"int (flags) round trip: {got!r}"

    obj = {"list": [1, 2, 3], "nested": {"t": (4, 5)}}
    assert mc.set("plc:obj", obj), "set pickled object"
    assert mc.get("plc:obj") == obj, f"pickled object (flags) round trip: {mc.get('plc:obj')!r}"

    assert mc.set("plc:empty", b""), "set empty value"
    assert mc.get("plc:empty") == b"", f"empty value: {mc.get('plc:empty')!r}"

    assert mc.set("plc:str", "overwritten"), "set over an existing key"
    assert mc.get("plc:str") == "overwritten", "value after overwrite"

    assert mc.delete("plc:str") is True, "delete of a present key"
    assert mc.get("plc:str") is None, "get after delete"
    assert mc.delete("plc:str") is False, "delete of an absent key"


def check_add_replace(mc):
    assert mc.add("plc:add", "first") is True, "add of an absent key"
    assert mc.add("plc:add", "second") is False, "add of a present key must fail"
    assert mc.get("plc:add") == "first", "a failed add changed the value"

    # In binary mode the server answers "key not found", which pylibmc raises.
    try:
        mc.replace("plc:nobody", "x")
    except pylibmc.NotFound:
        pass
    else:
        raise AssertionError("replace of an absent key must fail with NotFound")
    assert mc.get("plc:nobody") is None, "a failed replace created the key"
    assert mc.replace("plc:add", "replaced") is True, "replace of a present key"
    assert mc.get("plc:add") == "replaced", "value after replace"


def check_get_multi(mc):
    items = {"plc:m1": "one", "plc:m2": b"two", "plc:m3": 3}
    failed = mc.set_multi(items)
    assert not failed, f"set_multi failed for {failed!r}"
    got = mc.get_multi(["plc:m1", "plc:missing", "plc:m2", "plc:m3", "plc:missing2"])
    assert got == items, f"get_multi returns the present keys only: {got!r}"
    assert mc.get_multi(["plc:none1", "plc:none2"]) == {}, "get_multi of absent keys"

    many = {f"plc:many:{i}": i for i in range(0, 300, 2)}
    assert not mc.set_multi(many), "set_multi of 150 keys"
    got = mc.get_multi([f"plc:many:{i}" for i in range(300)])
    assert got == many, f"get_multi of 300 keys, 150 present: {len(got)} returned"


def check_incr_decr(mc):
    assert mc.set("plc:n", "10"), "set counter"
    assert mc.incr("plc:n", 5) == 15, "incr"
    assert mc.incr("plc:n") == 16, "incr by the default 1"
    assert mc.decr("plc:n", 6) == 10, "decr"
    assert mc.decr("plc:n", 100) == 0, "decr clamps at 0"
    # pylibmc takes a C long as the delta, so u64::MAX is stored as text.
    assert mc.set("plc:max", str(2**64 - 1)), "set u64::MAX"
    assert mc.incr("plc:max", 1) == 0, "incr wraps past u64::MAX"

    try:
        mc.incr("plc:no-counter", 1)
    except pylibmc.NotFound:
        pass
    else:
        raise AssertionError("incr of an absent key must raise NotFound")
    assert mc.get("plc:no-counter") is None, "incr of an absent key created it"

    # Not checked here: incr of a non-numeric value. libmemcached marks the server as
    # failed when it gets that error status, which would fail every later check; the
    # memcache crate test checks the status instead.


def check_cas(mc):
    assert mc.set("plc:cas", "v1"), "set"
    value, cas = mc.gets("plc:cas")
    assert value == "v1", f"gets value: {value!r}"
    assert cas, f"gets returned no CAS value: {cas!r}"

    assert mc.cas("plc:cas", "v2", cas) is True, "cas with the current CAS value"
    assert mc.get("plc:cas") == "v2", "value after cas"
    assert mc.cas("plc:cas", "v3", cas) is False, "cas with a stale CAS value must fail"
    assert mc.get("plc:cas") == "v2", "a failed cas changed the value"

    _, new_cas = mc.gets("plc:cas")
    assert new_cas != cas, "the CAS value changes when the item changes"

    assert mc.gets("plc:cas-absent") == (None, None), "gets of an absent key"


def check_touch(mc):
    # Against memcached, libmemcached (as bundled with pylibmc) stalls on each TOUCH for its
    # 5 s poll timeout, because memcached puts the item's flags in the TOUCH response; the
    # check is written so that the stall cannot make it pass or fail.
    start = time.monotonic()
    assert mc.set("plc:touch", "lives", time=1), "set with TTL 1"
    assert mc.touch("plc:touch", 100) is True, "touch of a present key"
    remaining = start + EXPIRY_DEADLINE - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    assert mc.get("plc:touch") == "lives", (
        f"touch to 100 s did not extend a 1 s TTL: item gone {EXPIRY_DEADLINE}s after set"
    )
    assert mc.touch("plc:touch", 1) is True, "touch to shorten the TTL"
    wait_until_gone(mc.get, "plc:touch")
    assert mc.touch("plc:touch-absent", 1) is False, "touch of an absent key"


def check_append_prepend(mc):
    assert mc.set("plc:ap", b"middle"), "set"
    assert mc.append("plc:ap", b"-end") is True, "append"
    assert mc.prepend("plc:ap", b"start-") is True, "prepend"
    assert mc.get("plc:ap") == b"start-middle-end", f"after append+prepend: {mc.get('plc:ap')!r}"

    assert mc.append("plc:ap-absent", b"x") is False, "append to an absent key must fail"
    assert mc.prepend("plc:ap-absent", b"x") is False, "prepend to an absent key must fail"
    assert mc.get("plc:ap-absent") is None, "append/prepend created a key"


def check_expiry(mc):
    assert mc.set("plc:ttl", "soon gone", time=1), "set with TTL 1"
    assert mc.set("plc:durable", "stays"), "set without TTL"
    assert mc.get("plc:ttl") == "soon gone", "item with TTL 1 readable right after set"
    took = wait_until_gone(mc.get, "plc:ttl")
    print(f"     item with TTL 1 s gone after {took:.2f}s")
    assert mc.get("plc:durable") == "stays", "an item without TTL expired"


def check_large_value(mc):
    big = os.urandom(LARGE_VALUE_LEN)
    assert mc.set("plc:big", big), f"set of a {len(big)}-byte value"
    got = mc.get("plc:big")
    assert got == big, f"{len(big)}-byte value came back different (len {len(got or b'')})"
    assert mc.set("plc:after-big", "ok") and mc.get("plc:after-big") == "ok", (
        "connection unusable after a large value"
    )


def check_flush(mc):
    keys = [f"plc:flush:{i}" for i in range(50)]
    assert not mc.set_multi({k: k for k in keys}), "set_multi before flush"
    mc.flush_all()
    assert mc.get_multi(keys) == {}, "keys survived flush_all"
    assert mc.set("plc:after-flush", "v") and mc.get("plc:after-flush") == "v", "set after flush"


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
    mc = pylibmc.Client(
        [address],
        binary=True,
        behaviors={"cas": True, "connect_timeout": 5000, "tcp_nodelay": True},
    )
    mc.flush_all()  # the checks assume an empty cache
    return run("pylibmc", mc, CHECKS)


if __name__ == "__main__":
    sys.exit(main())
