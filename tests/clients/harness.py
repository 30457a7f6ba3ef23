"""Shared runner for the client-compatibility scripts in this folder.

Each script is run by tests/python_clients.rs as `python3 SCRIPT 127.0.0.1:PORT` against a
server that the Rust test started. A script is a list of checks: functions that take the
client and use plain `assert`s. Every check runs, even after one fails, so a single run
shows everything that is wrong; the process exits 1 if any check failed.
"""

import sys
import time
import traceback

# An item given a 1 s TTL must be gone within this many seconds.
EXPIRY_DEADLINE = 3.0
EXPIRY_POLL = 0.05

# Just under the 1 MiB item limit (-I 1m), leaving room for the key and item header.
LARGE_VALUE_LEN = 1_000_000


def server_address(argv):
    """The `HOST:PORT` argument, or exit 2 with a usage line."""
    if len(argv) != 2 or ":" not in argv[1]:
        print(f"usage: {argv[0]} HOST:PORT", file=sys.stderr)
        sys.exit(2)
    return argv[1]


def wait_until_gone(lookup, key):
    """Poll `lookup(key)` until it returns None; return the seconds that took."""
    start = time.monotonic()
    while True:
        value = lookup(key)
        elapsed = time.monotonic() - start
        if value is None:
            return elapsed
        assert elapsed < EXPIRY_DEADLINE, (
            f"{key!r} still present ({value!r:.40}) {elapsed:.2f}s after it was given a 1 s TTL"
        )
        time.sleep(EXPIRY_POLL)


def run(client_name, client, checks):
    """Run every check against `client`, print one line per check, return the exit code."""
    failed = []
    for check in checks:
        start = time.monotonic()
        try:
            check(client)
        except Exception:  # an AssertionError or anything the client library raised
            failed.append(check.__name__)
            print(f"FAIL {check.__name__}", flush=True)
            traceback.print_exc(file=sys.stdout)
        else:
            elapsed_ms = (time.monotonic() - start) * 1000
            print(f"ok   {check.__name__} ({elapsed_ms:.0f} ms)", flush=True)
    if failed:
        print(f"{client_name}: {len(failed)} of {len(checks)} checks FAILED: {', '.join(failed)}")
        return 1
    print(f"{client_name}: all {len(checks)} checks passed")
    return 0
