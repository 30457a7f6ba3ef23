"""Client compatibility: pymemcache, a pure-Python client of the text protocol.

Run as `python3 test_pymemcache.py HOST:PORT`; exits non-zero if any check fails.
pymemcache raises on an unexpected reply (MemcacheUnknownError, MemcacheClientError, …)
and on a closed connection, so a check passes only on the exact replies it expects.
"""

import sys

from pymemcache.client.base import Client

from harness import LARGE_VALUE_LEN, run, server_address, wait_until_gone


def check_set_get(mc):
    assert mc.set("greeting", b"hello") is True
    assert mc.get("greeting") == b"hello"
    assert mc.get("absent") is None
    assert mc.set("empty", b"") is True
    assert mc.get("empty") == b""
    assert mc.set("crlf", b"a\r\nb\r\n") is True
    assert mc.get("crlf") == b"a\r\nb\r\n"


def check_flags(mc):
    # pymemcache returns (value, flags) with this call.
    assert mc.set("flagged", b"v", flags=0xDEADBEEF) is True
    assert mc.get("flagged", default=None) == b"v"
    line = mc.raw_command(b"get flagged", b"END")
    assert line.startswith(b"VALUE flagged 3735928559 1"), line


def check_get_many(mc):
    mc.set_many({"m1": b"one", "m2": b"two", "m3": b"three"})
    got = mc.get_many(["m1", "m2", "missing", "m3"])
    assert got == {"m1": b"one", "m2": b"two", "m3": b"three"}, got
    # Enough keys to spread over every core and to make one long line.
    many = {f"many:{i:04d}": str(i).encode() for i in range(500)}
    assert mc.set_many(many) == []
    assert mc.get_many(list(many)) == many


def check_add_replace_append_prepend(mc):
    mc.delete("ar")
    assert mc.add("ar", b"1", noreply=False) is True
    assert mc.add("ar", b"2", noreply=False) is False
    assert mc.replace("ar", b"3", noreply=False) is True
    assert mc.replace("absent-ar", b"3", noreply=False) is False
    assert mc.append("ar", b"4", noreply=False) is True
    assert mc.prepend("ar", b"0", noreply=False) is True
    assert mc.get("ar") == b"034"


def check_gets_cas(mc):
    mc.set("casd", b"v1")
    value, cas = mc.gets("casd")
    assert value == b"v1" and cas is not None
    assert mc.cas("casd", b"v2", cas, noreply=False) is True
    assert mc.cas("casd", b"v3", cas, noreply=False) is False  # EXISTS
    assert mc.get("casd") == b"v2"
    assert mc.cas("absent-cas", b"v", 1, noreply=False) is None  # NOT_FOUND
    got = mc.gets_many(["casd", "absent"])
    assert list(got) == ["casd"] and got["casd"][0] == b"v2"


def check_incr_decr(mc):
    mc.set("counter", b"10")
    assert mc.incr("counter", 5, noreply=False) == 15
    assert mc.decr("counter", 20, noreply=False) == 0
    assert mc.incr("counter", 2**64 - 1, noreply=False) == 2**64 - 1
    assert mc.incr("counter", 1, noreply=False) == 0  # wraps at 2^64
    assert mc.incr("absent-counter", 1, noreply=False) is None
    mc.set("text", b"abc")
    try:
        mc.incr("text", 1, noreply=False)
    except Exception as e:  # MemcacheClientError: non-numeric value
        assert "non-numeric" in str(e), e
    else:
        raise AssertionError("incr of a non-numeric value did not fail")


def check_touch_and_expiry(mc):
    mc.set("ttl", b"v", expire=1)
    assert mc.touch("ttl", expire=100, noreply=False) is True
    assert mc.touch("absent-touch", expire=100, noreply=False) is False
    mc.set("short", b"v", expire=1)
    wait_until_gone(mc.get, "short")
    assert mc.get("ttl") == b"v"


def check_gat(mc):
    # pymemcache 4.0 has no gat method: its raw_command sends the line on its connection.
    mc.set("gat", b"v")
    got = mc.raw_command(b"gat 100 gat absent", b"END\r\n")
    assert got == b"VALUE gat 0 1\r\nv\r\n", got
    got = mc.raw_command(b"gats 100 gat", b"END\r\n")
    assert got.startswith(b"VALUE gat 0 1 ") and got.endswith(b"\r\nv\r\n"), got


def check_delete(mc):
    mc.set("del", b"v")
    assert mc.delete("del", noreply=False) is True
    assert mc.delete("del", noreply=False) is False
    assert mc.get("del") is None


def check_noreply_pipeline(mc):
    # pymemcache's default is noreply=True for storage commands: replies never come, and
    # a following command still gets its own.
    for i in range(100):
        mc.set(f"nr:{i}", str(i).encode())
    assert mc.get("nr:99") == b"99"
    assert mc.get_many([f"nr:{i}" for i in range(100)]) == {f"nr:{i}": str(i).encode() for i in range(100)}


def check_large_value(mc):
    big = bytes(range(256)) * (LARGE_VALUE_LEN // 256)
    assert mc.set("large", big, noreply=False) is True
    assert mc.get("large") == big
    try:
        mc.set("too-large", b"x" * (2 * 1024 * 1024), noreply=False)
    except Exception as e:  # MemcacheServerError: object too large for cache
        assert "too large" in str(e), e
    else:
        raise AssertionError("a 2 MiB value was stored under -I 1m")
    assert mc.get("too-large") is None


def check_stats_version(mc):
    stats = mc.stats()
    assert stats[b"cmd_get"] > 0, stats
    assert b"curr_items" in stats
    settings = mc.stats("settings")
    assert settings[b"item_size_max"] == 1024 * 1024, settings
    assert mc.version().startswith(b"1.6.")


def check_flush(mc):
    mc.set("f1", b"v")
    mc.set("f2", b"v")
    assert mc.flush_all(noreply=False) is True
    assert mc.get_many(["f1", "f2"]) == {}


CHECKS = [
    check_set_get,
    check_flags,
    check_get_many,
    check_add_replace_append_prepend,
    check_gets_cas,
    check_incr_decr,
    check_touch_and_expiry,
    check_gat,
    check_delete,
    check_noreply_pipeline,
    check_large_value,
    check_stats_version,
    check_flush,
]


if __name__ == "__main__":
    host, port = server_address(sys.argv).rsplit(":", 1)
    client = Client((host, int(port)), connect_timeout=5, timeout=10)
    sys.exit(run("pymemcache", client, CHECKS))
