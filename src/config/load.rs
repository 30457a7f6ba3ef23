//! Where the configuration comes from: the command line, and under it the TOML file that
//! `--config` names.
//!
//! The file holds any flag under its long name (`memory-limit = 2048`, `fsync = "always"`,
//! `admin = "off"`; `verbose = 1` for `-v`), with the values the flag takes. Flags given on
//! the command line win over the file. The file's values go through the same parsers as the
//! flags (they are turned into flags before the command line), so the two cannot drift: a
//! flag added to [`Config`] is a file setting too. An unknown setting is an error.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};

use super::Config;

/// `--admin`: an address, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminAddr(pub Option<SocketAddr>);

impl FromStr for AdminAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<AdminAddr, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(AdminAddr(None));
        }
        s.parse::<SocketAddr>()
            .map(|a| AdminAddr(Some(a)))
            .map_err(|_| format!("'{s}' is not ADDR:PORT (such as 127.0.0.1:11212) or off"))
    }
}

impl fmt::Display for AdminAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("off"),
        }
    }
}

/// Why no configuration could be made.
#[derive(Debug)]
pub enum LoadError {
    /// A bad command line, or `--help` / `--version`: clap prints it and picks the exit code.
    Args(clap::Error),
    /// The config file cannot be read or holds a bad setting.
    File(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Args(e) => write!(f, "{}", e.to_string().trim_end()),
            LoadError::File(msg) => f.write_str(msg),
        }
    }
}

impl Config {
    /// The configuration from `args` (the program name first) and the `--config` file they
    /// name, if any. Called at start and again by a SIGHUP reload, with the same `args`.
    pub fn load(args: &[OsString]) -> Result<Config, LoadError> {
        let cli = Config::command().try_get_matches_from(args).map_err(LoadError::Args)?;
        let file = cli.get_one::<std::path::PathBuf>("config").cloned();
        let Some(path) = file else { return Config::from_matches(cli) };
        let file_args = file_args(&path, &cli)?;
        let program = args.first().cloned().unwrap_or_else(|| "caskade".into());
        // The file alone first, so that a bad value is reported as the file's.
        let mut alone = vec![program.clone()];
        alone.extend(file_args.iter().cloned());
        Config::command()
            .try_get_matches_from(&alone)
            .map_err(|e| LoadError::File(format!("{}: {}", path.display(), first_line(&e))))?;
        let mut all = vec![program];
        all.extend(file_args);
        all.extend(args.iter().skip(1).cloned());
        let matches = Config::command().try_get_matches_from(&all).map_err(LoadError::Args)?;
        Config::from_matches(matches)
    }

    fn from_matches(matches: clap::ArgMatches) -> Result<Config, LoadError> {
        let mut config = Config::from_arg_matches(&matches).map_err(LoadError::Args)?;
        if let (Some(path), Some(node)) = (config.cluster.clone(), config.node.clone()) {
            let file = crate::cluster::config::ClusterFile::load(&path).map_err(LoadError::File)?;
            let Some(entry) = file.node(&node).cloned() else {
                return Err(LoadError::File(format!("{}: no node '{node}' (the file has {})", path.display(),
                    file.nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>().join(", "))));
            };
            // The node's entry gives the addresses a flag does not.
            let default = |id: &str| matches!(matches.value_source(id), None | Some(ValueSource::DefaultValue));
            if default("listen") {
                config.listen = super::ListenHost::Ip(entry.client.ip());
            }
            if default("port") {
                config.port = entry.client.port();
            }
            if default("admin") {
                if let Some(admin) = entry.admin {
                    config.admin = AdminAddr(Some(admin));
                }
            }
            config.cluster_file = Some(file);
        }
        config.settings = settings_of(&matches);
        // The settings whose default is worked out show the value in force, not "", and the
        // cluster file's addresses show where they are in force.
        let in_force = [
            ("threads", config.threads().to_string()),
            ("log-level", config.log_level().as_str().to_ascii_lowercase()),
            ("port", config.port.to_string()),
            ("listen", config.listen.to_string()),
            ("admin", config.admin.to_string()),
        ];
        for (name, value) in in_force {
            if let Some(entry) = config.settings.iter_mut().find(|(k, _)| k == name) {
                entry.1 = value;
            }
        }
        Ok(config)
    }

    /// Every flag under its long name with the value in force (defaults included), in
    /// `--help` order: what `/stats` shows as settings and what a reload compares.
    pub fn settings(&self) -> &[(String, String)] {
        &self.settings
    }

    /// The log level the flags ask for: `--log-level`, else `-v`'s count.
    pub fn log_level(&self) -> log::LevelFilter {
        self.log_level.unwrap_or(match self.verbose {
            0 => log::LevelFilter::Info,
            1 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        })
    }
}

/// The name a setting has: the flag's long name, or its id (`verbose` for `-v`).
fn setting_name(arg: &clap::Arg) -> String {
    arg.get_long().map(str::to_string).unwrap_or_else(|| arg.get_id().as_str().replace('_', "-"))
}

fn settings_of(matches: &clap::ArgMatches) -> Vec<(String, String)> {
    let cmd = Config::command();
    let mut out = Vec::new();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        let value = match arg.get_action() {
            ArgAction::Count => matches.get_count(id).to_string(),
            ArgAction::SetTrue => matches.get_flag(id).to_string(),
            _ => matches
                .get_raw(id)
                .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect::<Vec<_>>().join(","))
                .unwrap_or_default(),
        };
        out.push((setting_name(arg), value));
    }
    out
}

/// The file's settings as flags, leaving out those the command line gives.
fn file_args(path: &Path, cli: &clap::ArgMatches) -> Result<Vec<OsString>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::File(format!("cannot read {}: {e}", path.display())))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        LoadError::File(format!("{}: {}", path.display(), e.to_string().trim_end().replace('\n', " ")))
    })?;
    let cmd = Config::command();
    let mut out = Vec::new();
    for (key, value) in &table {
        let wanted = key.replace('_', "-");
        let arg = cmd
            .get_arguments()
            .find(|a| setting_name(a) == wanted && !matches!(a.get_id().as_str(), "help" | "version" | "config"))
            .ok_or_else(|| {
                LoadError::File(format!(
                    "{}: unknown setting '{key}' (settings are the long flags of `caskade --help`, and verbose)",
                    path.display()
                ))
            })?;
        let id = arg.get_id().as_str();
        if cli.value_source(id) == Some(ValueSource::CommandLine) {
            continue;
        }
        let flag = match arg.get_long() {
            Some(long) => format!("--{long}"),
            None => format!("-{}", arg.get_short().unwrap_or('v')),
        };
        let bad = |what: &str| LoadError::File(format!("{}: '{key}' {what}", path.display()));
        match (arg.get_action(), value) {
            (ArgAction::SetTrue, toml::Value::Boolean(on)) => {
                if *on {
                    out.push(flag.into());
                }
            }
            (ArgAction::SetTrue, _) => return Err(bad("takes true or false")),
            (ArgAction::Count, toml::Value::Integer(n)) if (0..=8).contains(n) => {
                out.extend((0..*n).map(|_| OsString::from(&flag)));
            }
            (ArgAction::Count, _) => return Err(bad("takes a small number")),
            (_, toml::Value::String(s)) => out.push(format!("{flag}={s}").into()),
            (_, toml::Value::Integer(n)) => out.push(format!("{flag}={n}").into()),
            (_, toml::Value::Float(f)) => out.push(format!("{flag}={f}").into()),
            (_, toml::Value::Boolean(b)) => out.push(format!("{flag}={b}").into()),
            (_, _) => return Err(bad("takes a string or a number")),
        }
    }
    Ok(out)
}

fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    text.lines().next().unwrap_or("").trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn setting<'c>(c: &'c Config, name: &str) -> &'c str {
        &c.settings().iter().find(|(k, _)| k == name).unwrap_or_else(|| panic!("no setting {name}")).1
    }

    #[test]
    fn admin_addresses() {
        assert_eq!("off".parse::<AdminAddr>(), Ok(AdminAddr(None)));
        assert_eq!("127.0.0.1:9".parse::<AdminAddr>().unwrap().to_string(), "127.0.0.1:9");
        assert!("nowhere".parse::<AdminAddr>().is_err());
        let c = Config::load(&args(&["caskade"])).unwrap();
        assert_eq!(c.admin.to_string(), "127.0.0.1:11212");
    }

    #[test]
    fn the_file_fills_in_and_the_command_line_wins() {
        let f = file("merge-dead-fraction = 0.3\nport = 4000\nmemory-limit = 64\nfsync = \"always\"\nin_memory = true\nverbose = 1\nadmin = \"off\"\n");
        let path = f.path().to_str().unwrap();
        let c = Config::load(&args(&["caskade", "--config", path])).unwrap();
        assert_eq!((c.port, c.memory_limit_mib, c.in_memory, c.verbose), (4000, 64, true, 1));
        assert_eq!(c.admin, AdminAddr(None));
        assert_eq!(setting(&c, "fsync"), "always");
        assert_eq!(c.merge_dead_fraction, 0.3);
        assert_eq!(c.log_level(), log::LevelFilter::Debug);
        let c = Config::load(&args(&["caskade", "--config", path, "-p", "5000", "-vv", "-m", "128"])).unwrap();
        assert_eq!((c.port, c.memory_limit_mib, c.verbose), (5000, 128, 2));
    }

    #[test]
    fn every_flag_is_a_setting() {
        let c = Config::load(&args(&["caskade", "-t", "3"])).unwrap();
        for arg in Config::command().get_arguments() {
            if !matches!(arg.get_id().as_str(), "help" | "version") {
                let name = setting_name(arg);
                assert!(c.settings().iter().any(|(k, _)| *k == name), "{name} missing");
            }
        }
        assert_eq!(setting(&c, "threads"), "3");
        assert_eq!(setting(&c, "memory-limit"), "1024");
        assert_eq!(setting(&c, "in-memory"), "false");
        assert_eq!(setting(&c, "log-level"), "info");
        let c = Config::load(&args(&["caskade", "-v"])).unwrap();
        assert_eq!(setting(&c, "log-level"), "debug");
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let cases = [
            ("no-such-setting = 1\n", "unknown setting 'no-such-setting'"),
            ("port = \"x\"\n", "--port"),
            ("merge-dead-fraction = 2.0\n", "--merge-dead-fraction"),
            ("in-memory = 3\n", "true or false"),
            ("port = [1]\n", "string or a number"),
            ("port = \n", "TOML"),
        ];
        for (text, want) in cases {
            let f = file(text);
            let err = Config::load(&args(&["caskade", "--config", f.path().to_str().unwrap()])).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, LoadError::File(_)), "{text}: {msg}");
            assert!(msg.contains(want) || (want == "TOML" && msg.contains(f.path().to_str().unwrap())), "{text}: {msg}");
        }
        let err = Config::load(&args(&["caskade", "--config", "/nonexistent/caskade.toml"])).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
}
