"""Client compatibility: python-memcached (`import memcache`), the classic pure-Python client
of the text protocol.

Run as `python3 test_python_memcached.py HOST:PORT`; exits non-zero if any check fails.
This client turns most server errors and a dead connection into 0/None rather than raising,
so every check also asserts what a working server would make it return, and `check_alive`
fails loudly if the connection died.
"""

import sys

import memcache

from harness import LARGE_VALUE_LEN, run, server_address, wait_until_gone


def check_alive(mc):
    assert mc.set("alive", "yes") is True, "the server does not answer"
    assert mc.get("alive") == "yes"


def check_set_get(mc):
    assert mc.set("greeting", "hello") is True
    assert mc.get("greeting") == "hello"
    assert mc.get("absent") is None
    # Non-string values go through the client's flags (pickle, int).
    assert mc.set("number", 42) is True
    assert mc.get("number") == 42
    assert mc.set("struct", {"a": [1, 2]}) is True
    assert mc.get("struct") == {"a": [1, 2]}
    assert mc.set("bytes", b"\x00\x01\r\n") is True
    assert mc.get("bytes") == b"\x00\x01\r\n"


def check_get_multi(mc):
    assert mc.set_multi({"m1": "one", "m2": "two", "m3": "three"}) == []
    got = mc.get_multi(["m1", "m2", "missing", "m3"])
    assert got == {"m1": "one", "m2": "two", "m3": "three"}, got
    many = {f"many:{i:04d}": str(i) for i in range(500)}
    assert mc.set_multi(many) == []
    assert mc.get_multi(list(many)) == many
    assert mc.delete_multi(["m1", "m2"]) == 1  # python-memcached returns 1 on success
    assert mc.get_multi(["m1", "m2", "m3"]) == {"m3": "three"}


def check_add_replace_append_prepend(mc):
    mc.delete("ar")
    assert mc.add("ar", "1")
    assert not mc.add("ar", "2")
    assert mc.replace("ar", "3")
    assert not mc.replace("absent-ar", "3")
    assert mc.append("ar", "4")
    assert mc.prepend("ar", "0")
    assert mc.get("ar") == "034"


def check_gets_cas(mc):
    mc.set("casd", "v1")
    assert mc.gets("casd") == "v1"
    assert mc.cas("casd", "v2") is True
    # Another writer changes the item: the next cas of the stale id fails.
    assert mc.gets("casd") == "v2"
    other = memcache.Client(mc.servers[0].address and [f"{mc.servers[0].ip}:{mc.servers[0].port}"], cache_cas=True)
    other.set("casd", "theirs")
    assert mc.cas("casd", "mine") is False
    assert mc.get("casd") == "theirs"


def check_incr_decr(mc):
    mc.set("counter", "10")
    assert mc.incr("counter", 5) == 15
    assert mc.decr("counter", 20) == 0
    assert mc.incr("counter") == 1
    assert mc.incr("absent-counter") is None
    assert mc.decr("absent-counter") is None


def check_touch_and_expiry(mc):
    mc.set("ttl", "v", time=1)
    assert mc.touch("ttl", 100)
    assert not mc.touch("absent-touch", 100)
    mc.set("short", "v", time=1)
    wait_until_gone(mc.get, "short")
    assert mc.get("ttl") == "v"


def check_delete(mc):
    mc.set("del", "v")
    assert mc.delete("del") == 1
    assert mc.get("del") is None
    assert mc.delete("del") == 0  # NOT_FOUND


def check_large_value(mc):
    big = "x" * LARGE_VALUE_LEN
    assert mc.set("large", big) is True
    assert mc.get("large") == big


def check_stats(mc):
    [(_, stats)] = mc.get_stats()
    assert int(stats["cmd_get"]) > 0, stats
    assert "curr_items" in stats
    [(_, settings)] = mc.get_stats("settings")
    assert settings["item_size_max"] == str(1024 * 1024), settings


def check_flush(mc):
    mc.set("f1", "v")
    mc.set("f2", "v")
    mc.flush_all()
    assert mc.get_multi(["f1", "f2"]) == {}
    check_alive(mc)


CHECKS = [
    check_alive,
    check_set_get,
    check_get_multi,
    check_add_replace_append_prepend,
    check_gets_cas,
    check_incr_decr,
    check_touch_and_expiry,
    check_delete,
    check_large_value,
    check_stats,
    check_flush,
]


if __name__ == "__main__":
    address = server_address(sys.argv)
    client = memcache.Client([address], cache_cas=True, dead_retry=0, socket_timeout=10)
    sys.exit(run("python-memcached", client, CHECKS))
