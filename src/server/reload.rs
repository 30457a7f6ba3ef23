//! SIGHUP: read the command line's `--config` file again and apply what can change while
//! the node runs.
//!
//! | setting | applied live |
//! | --- | --- |
//! | `log-level`, `verbose` | the logger's level (RUST_LOG, when set, still wins) |
//! | `memory-limit` | each core's share, sent to it by message; a smaller limit evicts (cache mode) or refuses writes (store mode) as new items come |
//! | `fsync` | each core's log is synced, then follows the new policy |
//! | `merge-dead-fraction`, `merge-min-dead`, `merge-max-live` | each core's shard, by message: the next merge it plans follows them (one under way finishes with its inputs) |
//!
//! Any other changed setting is logged as needing a restart and left as it was; a file that
//! cannot be read or parsed, or holds a bad value, changes nothing (the error, naming the
//! setting, is logged).

use std::ffi::OsString;
use std::sync::atomic::Ordering::Relaxed;

use super::control::{Control, Handle};
use super::notify;
use crate::config::Config;

pub fn reload(handle: &Handle, args: &[OsString]) {
    notify::reloading();
    match Config::load(args) {
        Ok(new) => apply(handle, new),
        Err(e) => log::error!("SIGHUP: the configuration was not reloaded, nothing changed: {e}"),
    }
    notify::ready("serving");
}

fn apply(handle: &Handle, new: Config) {
    if let Err(e) = new.validate() {
        log::error!("SIGHUP: the configuration was not reloaded, nothing changed: {e}");
        return;
    }
    let old = handle.config();
    let mut now = old.clone();
    let changed: Vec<(String, String, String)> = new
        .settings()
        .iter()
        .filter_map(|(name, after)| {
            let before = old.settings().iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default();
            (before != *after).then(|| (name.clone(), before, after.clone()))
        })
        .collect();
    if changed.is_empty() {
        log::info!("SIGHUP: configuration read again, nothing changed");
        return;
    }
    let cores = handle.cores();
    for (name, before, after) in &changed {
        let applied = match name.as_str() {
            "log-level" | "verbose" => {
                now.log_level = new.log_level;
                now.verbose = new.verbose;
                crate::logging::set_level(new.log_level());
                true
            }
            "memory-limit" => {
                let bytes = new.memory_limit_bytes();
                if new.max_item_size > bytes {
                    log::error!("SIGHUP: memory-limit {after} MiB is below the item size limit; not applied");
                    false
                } else {
                    report(handle.broadcast(|| Control::MemoryLimit(bytes / cores)), name);
                    handle.node.memory_limit.store(bytes, Relaxed);
                    now.memory_limit_mib = new.memory_limit_mib;
                    true
                }
            }
            "fsync" => {
                let policy = new.fsync;
                report(handle.broadcast(|| Control::Fsync(policy)), name);
                now.fsync = new.fsync;
                true
            }
            "merge-dead-fraction" | "merge-min-dead" | "merge-max-live" => {
                now.merge_dead_fraction = new.merge_dead_fraction;
                now.merge_min_dead = new.merge_min_dead;
                now.merge_max_live = new.merge_max_live;
                let policy = now.merge_policy();
                report(handle.broadcast(|| Control::MergePolicy(policy)), name);
                true
            }
            _ => false,
        };
        if applied {
            log::info!("SIGHUP: {name} changed from {before:?} to {after:?}");
            if let Some(entry) = now.settings.iter_mut().find(|(n, _)| n == name) {
                entry.1 = after.clone();
            }
        } else {
            log::warn!("SIGHUP: {name} changed from {before:?} to {after:?}: this takes a restart; not applied");
        }
    }
    handle.set_config(now);
}

fn report(result: Result<(), Vec<usize>>, name: &str) {
    if let Err(cores) = result {
        log::error!("SIGHUP: cores {cores:?} did not take the new {name}");
    }
}
