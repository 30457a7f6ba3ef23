//! Client compatibility: Python clients of both protocols, each driven by a script in
//! `tests/clients/` against a server of its own.
//!
//! - `test_pylibmc.py`: pylibmc, the libmemcached C client, with `binary=True`.
//! - `test_bmemcached.py`: python-binary-memcached, a pure-Python client.
//! - `test_pymemcache.py`: pymemcache, a pure-Python client of the text protocol.
//! - `test_python_memcached.py`: python-memcached, the classic text-protocol client.
//!
//! Each script gets `127.0.0.1:PORT`, runs every check, prints one line per check and exits
//! non-zero if any failed. The python is `$CASKADE_PYTHON`, else `python3`: `tools/test.sh`
//! makes a virtual environment with the pinned libraries and points `CASKADE_PYTHON` at it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{run_with_timeout, Server};

/// pylibmc's TOUCH stalls for its 5 s poll timeout against memcached, twice; the whole
/// script still takes well under this.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// `$CASKADE_PYTHON`, else `python3` from the PATH.
fn python() -> std::ffi::OsString {
    std::env::var_os("CASKADE_PYTHON").filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into())
}

fn run_client_script(script: &str) {
    let server = Server::start(&["-m", "64", "-I", "1m"]);
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let (status, output) = run_with_timeout(
        Command::new(python())
            .arg(&path)
            .arg(server.host_port())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1"),
        SCRIPT_TIMEOUT,
    );
    println!("{script} output:\n{output}");
    match status {
        None => panic!("{script} did not finish within {SCRIPT_TIMEOUT:?}\n{output}"),
        Some(status) => assert!(
            status.success(),
            "{script} exited with {status} under {:?} (if it could not import its client \
             library: tools/test.sh installs them in a virtual environment and sets \
             CASKADE_PYTHON)\n{output}",
            python()
        ),
    }
}

#[test]
fn pylibmc_binary_protocol() {
    run_client_script("test_pylibmc.py");
}

#[test]
fn bmemcached_binary_protocol() {
    run_client_script("test_bmemcached.py");
}

#[test]
fn pymemcache_text_protocol() {
    run_client_script("test_pymemcache.py");
}

#[test]
fn python_memcached_text_protocol() {
    run_client_script("test_python_memcached.py");
}
