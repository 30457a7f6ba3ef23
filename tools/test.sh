#!/usr/bin/env bash
# The project's test command, on a fresh Debian machine with Rust and Python as on one that
# has run it before (it only installs what is missing, and says what):
#
#   1. Debian packages: memcached (the reference server), libmemcached-tools (memccapable),
#      libmemcached-dev and zlib1g-dev (to build pylibmc), systemd (systemd-analyze checks
#      the unit) and prometheus (promtool lints /metrics), python3-venv where `python3 -m
#      venv` needs it. With sudo when not root. A service a package starts here is stopped.
#   2. A Python virtual environment, target/test-venv (CASKADE_VENV to put it elsewhere),
#      with the pinned client libraries; the tests run its python (CASKADE_PYTHON).
#   3. cargo clippy --all-targets -- -D warnings.
#   4. The client tests against memcached, to check the tests themselves.
#   5. cargo test --release, with any arguments given to this script.
#
# .ci/run runs this same command.
set -euo pipefail

cd "$(dirname "$0")/.."
started=$SECONDS
step() { printf '\n=== %s (%ds)\n' "$*" "$((SECONDS - started))"; }

# Pinned: the bmemcached script reaches into that client's connection for the requests it
# has no method for.
PYTHON_CLIENTS=(pylibmc==1.6.3 python-binary-memcached==0.33.0 pymemcache==4.0.0 python-memcached==1.62)
VENV=${CASKADE_VENV:-target/test-venv}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "tools/test.sh: need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# A service the package just installed may have started (memcached on 11211, prometheus):
# the tests use free ports of their own, but nothing of ours should be left running.
stop_service() {
    if [ -x "/etc/init.d/$1" ]; then
        as_root invoke-rc.d "$1" stop >/dev/null 2>&1 || as_root "/etc/init.d/$1" stop >/dev/null 2>&1 || true
    fi
}

step "Debian packages"
if command -v dpkg-query >/dev/null && command -v apt-get >/dev/null; then
    wanted=(memcached libmemcached-tools libmemcached-dev zlib1g-dev)
    # Without recommends: no exporters, no web UI.
    wanted_bare=(systemd prometheus)
    # Debian's python3 makes virtual environments only with python3-venv (ensurepip), and
    # builds pylibmc only with its headers.
    if [ "$(command -v python3)" = /usr/bin/python3 ]; then
        /usr/bin/python3 -c 'import ensurepip' 2>/dev/null || wanted+=(python3-venv)
        /usr/bin/python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
            || wanted+=(python3-dev)
    fi
    missing=() missing_bare=()
    for p in "${wanted[@]}"; do installed "$p" || missing+=("$p"); done
    for p in "${wanted_bare[@]}"; do installed "$p" || missing_bare+=("$p"); done
    if [ ${#missing[@]} -eq 0 ] && [ ${#missing_bare[@]} -eq 0 ]; then
        echo "all there: ${wanted[*]} ${wanted_bare[*]}"
    else
        echo "installing: ${missing[*]} ${missing_bare[*]}"
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get update -qq
        if [ ${#missing[@]} -gt 0 ]; then
            as_root apt-get install -y -qq "${missing[@]}" >/dev/null
        fi
        if [ ${#missing_bare[@]} -gt 0 ]; then
            as_root apt-get install -y -qq --no-install-recommends "${missing_bare[@]}" >/dev/null
        fi
        for p in "${missing[@]}" "${missing_bare[@]}"; do
            case $p in
                memcached) stop_service memcached ;;
                prometheus) stop_service prometheus; stop_service prometheus-node-exporter ;;
            esac
        done
    fi
else
    echo "not Debian: install memcached, memccapable (libmemcached), the libmemcached and zlib headers," \
        "systemd-analyze and promtool yourself"
fi
for tool in memcached memccapable; do
    command -v "$tool" >/dev/null || { echo "tools/test.sh: $tool is missing" >&2; exit 1; }
done

step "Python client libraries in $VENV"
stamp="$VENV/.caskade-clients"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${PYTHON_CLIENTS[*]}" ] \
    && "$VENV/bin/python" -c 'import pylibmc, bmemcached, pymemcache, memcache' 2>/dev/null; then
    echo "all there: ${PYTHON_CLIENTS[*]}"
else
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    echo "installing: ${PYTHON_CLIENTS[*]}"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PYTHON_CLIENTS[@]}"
    "$VENV/bin/python" -c 'import pylibmc, bmemcached, pymemcache, memcache'
    echo "${PYTHON_CLIENTS[*]}" >"$stamp"
fi
CASKADE_PYTHON="$(cd "$VENV" && pwd)/bin/python"
export CASKADE_PYTHON

step "cargo clippy --all-targets -- -D warnings"
if ! cargo clippy --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null; then
        echo "installing: the clippy component (rustup)"
        rustup component add clippy
    else
        echo "tools/test.sh: cargo clippy is missing (rustup component add clippy)" >&2
        exit 1
    fi
fi
cargo clippy --all-targets --quiet -- -D warnings

step "Client tests against memcached (checks the tests themselves)"
CASKADE_TEST_SERVER=memcached cargo test --release \
    --test memccapable --test memcache_crate --test python_clients --test text_commands --test text_pipeline \
    --test memcached_edges --test meta_item_state --test watch

step "cargo test --release $*"
cargo test --release "$@"

step "done"
