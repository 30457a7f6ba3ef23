//! Logging through `log` and `env_logger`, with a level a reload can change.
//!
//! env_logger fixes its filter when it is built, so the installed logger holds one behind a
//! lock and a reload swaps in a new one. `RUST_LOG`, when set, is applied over the level
//! each time, so it always wins (as at start). Log calls take a read lock, uncontended but
//! for the moment of a swap; nothing on the data path logs above `debug` in normal service.

use std::sync::{OnceLock, RwLock};

use log::{LevelFilter, Log, Metadata, Record};

struct Reloadable {
    inner: RwLock<env_logger::Logger>,
}

static LOGGER: OnceLock<Reloadable> = OnceLock::new();

fn build(level: LevelFilter) -> env_logger::Logger {
    env_logger::Builder::new().filter_level(level).parse_env("RUST_LOG").build()
}

impl Log for Reloadable {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.read().is_ok_and(|l| l.enabled(metadata))
    }

    fn log(&self, record: &Record<'_>) {
        if let Ok(l) = self.inner.read() {
            l.log(record);
        }
    }

    fn flush(&self) {
        if let Ok(l) = self.inner.read() {
            l.flush();
        }
    }
}

/// Installs the logger at `level` (`RUST_LOG` overrides). Later calls change the level.
pub fn init(level: LevelFilter) {
    let logger = build(level);
    let max = logger.filter();
    let mut fresh = false;
    let installed = LOGGER.get_or_init(|| {
        fresh = true;
        Reloadable { inner: RwLock::new(build(level)) }
    });
    if fresh {
        if log::set_logger(installed).is_err() {
            return;
        }
    } else if let Ok(mut l) = installed.inner.write() {
        *l = logger;
    }
    log::set_max_level(max);
}

/// Changes the level of the installed logger (a reload).
pub fn set_level(level: LevelFilter) {
    init(level);
}

/// The most verbose level that can currently pass.
pub fn level() -> LevelFilter {
    log::max_level()
}
