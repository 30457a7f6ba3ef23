//! What a start that cannot succeed does (issue 16): every port is checked before the data
//! directory is touched, the data port first, so a second server on a taken port fails at
//! once, names that port, and leaves no new data directory behind (and a locked data
//! directory of the first server is not what it reports); a file given as `--data-dir` is
//! "not a directory"; each fatal error is printed once.

mod common;

use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use common::{run_with_timeout, Server};

/// A start that fails does so in well under this (nothing is recovered).
const FAILS_WITHIN: Duration = Duration::from_secs(30);

/// Runs caskade with `args` to its exit: (status, stdout and stderr, how long it took).
fn caskade(args: &[&str]) -> (ExitStatus, String, Duration) {
    let started = Instant::now();
    let (status, output) = run_with_timeout(Command::new(env!("CARGO_BIN_EXE_caskade")).args(args), FAILS_WITHIN);
    let status = status.unwrap_or_else(|| panic!("caskade {args:?} still ran after {FAILS_WITHIN:?}\n{output}"));
    (status, output, started.elapsed())
}

/// The lines of `output` that hold `needle`: a fatal error is exactly one of them.
fn lines_with(output: &str, needle: &str) -> usize {
    output.lines().filter(|l| l.contains(needle)).count()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

#[test]
fn a_taken_data_port_is_reported_first_and_leaves_no_data_directory() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let first_dir = scratch.path().join("first");
    let first = Server::start_caskade(&["-t", "2", "--data-dir", path_str(&first_dir)], &[]);
    let port = first.port().to_string();
    let taken = format!("cannot listen on 127.0.0.1:{port}");
    let fresh = scratch.path().join("fresh");
    let fresh_dir = fresh.join("data");

    // Both of the first server's ports: the data port is named, not the admin port.
    // No admin port at all. And the first server's own, locked, data directory: the port
    // is checked before the lock is taken.
    let first_admin = first.admin();
    let cases: [(&str, Vec<&str>); 3] = [
        ("both ports taken", vec!["--admin", &first_admin, "--data-dir", path_str(&fresh_dir)]),
        ("--admin off", vec!["--admin", "off", "--data-dir", path_str(&fresh_dir)]),
        ("its data directory locked", vec!["--admin", "off", "--data-dir", path_str(&first_dir)]),
    ];
    for (case, extra) in cases {
        let mut args = vec!["-l", "127.0.0.1", "-p", &port, "-t", "2"];
        args.extend(extra);
        let (status, output, took) = caskade(&args);
        assert!(!status.success(), "{case}: a second server on a taken port started\n{output}");
        assert_eq!(lines_with(&output, &taken), 1, "{case}: the data port, named once:\n{output}");
        assert!(!output.contains("admin: cannot listen"), "{case}: the admin port was named first:\n{output}");
        assert!(!output.contains("in use by another caskade"), "{case}: the data directory was opened first:\n{output}");
        assert!(!output.contains("recovered"), "{case}: it recovered before it checked the port:\n{output}");
        assert!(!fresh.exists(), "{case}: the failed start left {} behind", fresh.display());
        assert!(took < Duration::from_secs(10), "{case}: took {took:?} to fail");
    }

    // A free data port and a taken admin port: the admin port is named, still before any
    // data directory is made.
    let (status, output, _) = caskade(&[
        "-l", "127.0.0.1", "-p", "0", "--admin", &first_admin, "--data-dir", path_str(&fresh_dir),
    ]);
    assert!(!status.success(), "{output}");
    assert_eq!(lines_with(&output, &format!("admin: cannot listen on {first_admin}")), 1, "{output}");
    assert!(!fresh.exists(), "the failed start left {} behind", fresh.display());

    assert!(first.stop().success());
}

#[test]
fn a_file_as_data_directory_is_not_a_directory() {
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    let path = path_str(file.path());
    let (status, output, _) = caskade(&["-l", "127.0.0.1", "-p", "0", "--admin", "off", "--data-dir", path]);
    assert!(!status.success(), "{output}");
    assert_eq!(lines_with(&output, &format!("--data-dir {path} is not a directory")), 1, "{output}");
    assert!(!output.contains("File exists"), "{output}");
    assert!(file.path().is_file(), "the file was touched");
}

#[test]
fn a_fatal_error_is_one_line() {
    // A data directory made for two shards, started with one: refused after the directory
    // is opened, which it was not made by this start, so it stays.
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let dir = scratch.path().join("data");
    let server = Server::start_caskade(&["-t", "2", "--data-dir", path_str(&dir)], &[]);
    assert!(server.stop().success());
    let (status, output, _) = caskade(&["-l", "127.0.0.1", "-p", "0", "--admin", "off", "-t", "1", "--data-dir", path_str(&dir)]);
    assert!(!status.success(), "{output}");
    assert_eq!(lines_with(&output, "holds 2 shards"), 1, "printed once:\n{output}");
    assert!(!output.contains("ERROR"), "the error went to the log as well:\n{output}");
    assert!(dir.join("META").is_file(), "a failed start removed a data directory it had not made");
}
