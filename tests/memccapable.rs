//! Conformance: libmemcached's `memccapable` runs its 27 binary-protocol checks (`-b`: every
//! opcode with its quiet variant, flush, version, stat) and its 27 text-protocol checks (`-a`:
//! every command with and without `noreply`, multi-get, large values, stat) against a server
//! started with two worker threads, and the server then stops cleanly on SIGTERM.
//!
//! `memccapable` comes from Debian's `libmemcached-tools`, which `.ci/run` installs. Without
//! it this test fails rather than passing vacuously.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{run_with_timeout, Server};

const MEMCCAPABLE: &str = "/usr/bin/memccapable";
const EXPECTED_TESTS: usize = 27;
/// memccapable's own per-operation I/O timeout, in seconds.
const IO_TIMEOUT_SECS: &str = "5";
/// The whole run takes well under a second against memcached.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Tally of memccapable's per-test lines: `binary set          [pass]`, `ascii get   [pass]`.
#[derive(Debug, Default)]
struct Tally {
    passed: Vec<String>,
    failed: Vec<String>,
    skipped: Vec<String>,
}

fn parse(output: &str, prefix: &str) -> Tally {
    let mut tally = Tally::default();
    for line in output.lines() {
        let line = line.trim();
        let Some(name) = line.strip_prefix(prefix) else {
            continue;
        };
        let name = name.split_whitespace().next().unwrap_or("").to_string();
        if line.ends_with("[pass]") {
            tally.passed.push(name);
        } else if line.ends_with("[FAIL]") {
            tally.failed.push(name);
        } else if line.ends_with("[skipped]") {
            tally.skipped.push(name);
        }
    }
    tally
}

#[test]
fn memccapable_binary_suite_passes() {
    run_suite("-b", "binary ");
}

#[test]
fn memccapable_ascii_suite_passes() {
    run_suite("-a", "ascii ");
}

fn run_suite(flag: &str, prefix: &str) {
    assert!(
        Path::new(MEMCCAPABLE).exists(),
        "{MEMCCAPABLE} not found: install Debian's libmemcached-tools (.ci/run does)"
    );

    let server = Server::start(&["-t", "2"]);
    let port = server.port().to_string();
    let (status, output) = run_with_timeout(
        Command::new(MEMCCAPABLE).args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            flag,
            "-t",
            IO_TIMEOUT_SECS,
        ]),
        RUN_TIMEOUT,
    );
    println!("memccapable {flag} output:\n{output}");

    let tally = parse(&output, prefix);
    let status = status.unwrap_or_else(|| {
        panic!(
            "memccapable did not finish within {RUN_TIMEOUT:?}; tally so far {tally:?}\n{output}"
        )
    });
    assert!(
        tally.failed.is_empty(),
        "memccapable {flag}: {} test(s) failed: {:?}\n{output}",
        tally.failed.len(),
        tally.failed
    );
    assert_eq!(
        tally.passed.len(),
        EXPECTED_TESTS,
        "memccapable {flag}: expected {EXPECTED_TESTS} tests to pass; \
         passed {:?}, skipped {:?}\n{output}",
        tally.passed,
        tally.skipped
    );
    assert!(
        output.contains("All tests passed"),
        "memccapable did not report `All tests passed`\n{output}"
    );
    assert!(
        status.success(),
        "memccapable exited with {status}\n{output}"
    );

    let exit = server.stop();
    assert!(exit.success(), "server did not exit 0 on SIGTERM: {exit}");
}
