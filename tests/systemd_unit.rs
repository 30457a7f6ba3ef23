//! The systemd unit: the keys the README documents are there with their values, the example
//! config file is one caskade accepts, and `systemd-analyze verify` (where systemd is
//! installed; CI installs it) finds nothing wrong with the unit.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/systemd/caskade.service");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/systemd/caskade.toml");

/// `section.key` -> values, in order.
fn parse_unit(text: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
        out.entry(format!("{section}.{}", k.trim())).or_default().push(v.trim().to_string());
    }
    out
}

#[test]
fn the_unit_has_the_documented_keys() {
    let unit = parse_unit(&std::fs::read_to_string(UNIT).unwrap());
    let one = |k: &str| -> &str {
        let v = unit.get(k).unwrap_or_else(|| panic!("{k} missing"));
        assert_eq!(v.len(), 1, "{k} given {} times", v.len());
        &v[0]
    };
    for (key, value) in [
        ("Service.Type", "notify"),
        ("Service.ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Service.Restart", "on-failure"),
        ("Service.StateDirectory", "caskade"),
        ("Service.NoNewPrivileges", "yes"),
        ("Service.ProtectSystem", "strict"),
        ("Service.ProtectHome", "yes"),
        ("Service.KillSignal", "SIGTERM"),
        ("Install.WantedBy", "multi-user.target"),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    assert!(one("Service.LimitNOFILE").parse::<u64>().unwrap() >= 65536);
    // The data directory is the StateDirectory, and the config file is read.
    let exec = one("Service.ExecStart");
    assert!(exec.contains("--data-dir /var/lib/caskade"), "{exec}");
    assert!(exec.contains("--config /etc/caskade/caskade.toml"), "{exec}");
}

#[test]
fn the_example_config_is_accepted() {
    let args: Vec<std::ffi::OsString> = ["caskade", "--config", CONFIG].iter().map(Into::into).collect();
    let c = caskade::config::Config::load(&args).unwrap_or_else(|e| panic!("{CONFIG}: {e}"));
    assert_eq!(c.port, 11211);
    assert_eq!(c.admin.to_string(), "127.0.0.1:11212");
}

#[test]
fn systemd_analyze_verify() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: only the keys were checked");
        return;
    };
    assert!(version.status.success());
    // Verify a copy whose ExecStart names the binary cargo built (verify checks it exists).
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(UNIT).unwrap().replace("/usr/local/bin/caskade", env!("CARGO_BIN_EXE_caskade"));
    let copy = dir.path().join("caskade.service");
    std::fs::write(&copy, text).unwrap();
    let (status, out) = common::run_with_timeout(
        Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&copy).env("SYSTEMD_LOG_LEVEL", "notice"),
        Duration::from_secs(60),
    );
    let status = status.expect("systemd-analyze did not finish");
    // Outside a booted systemd, verify may complain about the machine (no D-Bus, no
    // /etc/machine-id): only remarks about our unit count.
    let ours: Vec<&str> = out.lines().filter(|l| l.contains("caskade.service")).collect();
    assert!(ours.is_empty(), "systemd-analyze verify:\n{out}");
    assert!(status.success() || !Path::new("/run/systemd/system").exists(), "systemd-analyze verify failed:\n{out}");
}
