"""A three-node cluster seen through clients that each know ONE node.

Usage: cluster_check.py A_HOST:PORT B_HOST:PORT C_HOST:PORT

pylibmc (binary protocol) writes through node a; pymemcache (text protocol) reads through
b and c. Prints one line per check; exits 1 if any failed.
"""
import sys
import time

import pylibmc
from pymemcache.client.base import Client

failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + str(detail)))
    if not ok:
        failures.append(name)


def text_client(hp):
    host, port = hp.rsplit(":", 1)
    return Client((host, int(port)), connect_timeout=10, timeout=20)


a_hp, b_hp, c_hp = sys.argv[1:4]
a = pylibmc.Client([a_hp], binary=True, behaviors={"tcp_nodelay": True})
b, c = text_client(b_hp), text_client(c_hp)
a_text = text_client(a_hp)

N = 10000
# pylibmc stores str as flags 0, int as flags 2 (its own encoding): both must come back.
for i in range(N):
    a.set("k:%d" % i, ("v%d" % i) * (1 + i % 7) if i % 2 else i)
bad = []
for i in range(N):
    expect_flags = 0 if i % 2 else 2
    expect_value = (("v%d" % i) * (1 + i % 7)).encode() if i % 2 else str(i).encode()
    for name, cl in (("b", b), ("c", c)):
        value, cas = cl.gets("k:%d" % i)
        # pymemcache without a serde returns bytes; flags are read back with meta below.
        if value != expect_value:
            bad.append((name, i, value))
check("10000 keys written through a (binary) read through b and c (text)", not bad, bad[:3])

# Flags and CAS are the same whichever node answers.
same = True
for i in range(0, N, 97):
    key = "k:%d" % i
    lines = []
    for cl in (a_text, b, c):
        r = cl.raw_command(("mg %s f c v" % key).encode(), b"\r\n")
        lines.append(r)
    if not (lines[0] == lines[1] == lines[2]):
        same = False
        print(lines)
        break
check("flags and CAS (meta mg f c) agree on a, b and c", same)
flag_line = b.raw_command(b"mg k:2 f", b"\r\n")
# pylibmc's flag for an int (FLAG_INTEGER).
check("an int stored by pylibmc has its flags through b", flag_line == b"HD f4", flag_line)

# Deletes, incr, append, CAS conflicts and touch through a are seen through b and c.
a.delete("k:1")
check("delete through a is seen through b", b.get("k:1") is None)
a.set("counter", 10)
a.incr("counter", 5)
check("incr through a is seen through c", c.get("counter") == b"15", c.get("counter"))
b.incr("counter", 1)
check("incr through b is seen through a", a.get("counter") == 16, a.get("counter"))
a.set("app", "base")
a.append("app", "+tail")
a.prepend("app", "head+")
check("append/prepend through a are seen through c", c.get("app") == b"head+base+tail", c.get("app"))
value, cas = b.gets("app")
a.set("app", "changed")
check("a CAS taken through b conflicts after a write through a", b.cas("app", b"x", cas, noreply=False) is False)
value, cas = c.gets("app")
check("a fresh CAS through c succeeds", c.cas("app", b"mine", cas, noreply=False) is True)
check("... and a sees it", a.get("app") == b"mine", a.get("app"))
a.set("short", "lived", time=100)
check("touch through a", a.touch("short", 1))
deadline = time.time() + 10
while b.get("short") is not None and time.time() < deadline:
    time.sleep(0.05)
check("the 1 s TTL a's touch set expires the key as seen through b", b.get("short") is None)
check("add of an existing key through b fails", b.add("counter", b"1", noreply=False) is False)
check("replace of a missing key through c fails", c.replace("missing-key", b"1", noreply=False) is False)
check("decr below zero through c stops at 0", c.decr("counter", 1000) == 0)

# A multi-get through one node of keys on all three.
keys = ["k:%d" % i for i in range(2, 202, 2)]
got = c.get_many(keys)
check("get_many of 100 keys through c returns them all", len(got) == 100, len(got))
got_b = a.get_multi(keys)
check("get_multi (binary) of 100 keys through a returns them all", len(got_b) == 100, len(got_b))

# flush_all through one node empties every node.
check("flush_all through b", b.flush_all(noreply=False))
check("... and a's keys are gone from c", c.get("k:4") is None and a.get("k:6") is None)

print("%d failed" % len(failures))
sys.exit(1 if failures else 0)
