//! The server: listeners, one event-loop thread per core, and an orderly stop.

mod binary;
mod connection;
mod control;
mod core;
mod data_dir;
mod gate;
mod held;
mod listen;
mod mailbox;
mod metadump;
mod notify;
pub mod peer;
mod reload;
pub mod replicate;
mod report;
mod route;
mod text;
pub mod watch;

use std::ffi::OsString;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use mio::{Poll, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::Config;
use crate::stats::{CoreStats, NodeStats};
use crate::storage::disk::{RealFs, SharedFs};
pub use data_dir::Recovery;
pub use report::RECOVERY_STATS;
use crate::storage::{Mode, Shard, ShardConfig};

pub use control::{DumpChunk, Handle, Lifecycle, Phase};

/// What VERSION answers: the memcached protocol level first, for clients that parse it.
pub const VERSION: &str = concat!("1.6.0-caskade-", env!("CARGO_PKG_VERSION"));

/// State every core of the node reads.
pub struct Node {
    pub config: Config,
    pub stats: NodeStats,
    pub core_stats: Vec<Arc<CoreStats>>,
    pub verbosity: AtomicU32,
    /// Set by SIGTERM/SIGINT.
    pub stopping: AtomicBool,
    /// Cores still finishing their replies after a stop was asked for.
    pub cores_draining: AtomicUsize,
    /// The item memory limit in bytes (`-m`), as last reloaded.
    pub memory_limit: AtomicUsize,
    /// What start-up recovery did (all zero for `--in-memory`).
    pub recovery: Recovery,
    /// The cluster this node is part of (`--cluster`), or `None` for a single node.
    pub cluster: Option<Arc<peer::Cluster>>,
    /// The counters as `stats reset` last found them (`stats` reports what was counted since).
    pub stats_baseline: report::Baseline,
    /// The connections that sent `watch`, and the buffers of their log lines.
    pub watchers: Arc<watch::Watchers>,
}

/// What [`run_with`] takes besides the configuration.
pub struct Options {
    /// The file system the shards' logs are written through ([`RealFs`] in production; a
    /// test passes one that holds fsyncs back or fails them).
    pub fs: SharedFs,
    /// Told once the node serves: where it listens, and how to stop it.
    pub serving: Option<crossbeam_channel::Sender<Serving>>,
}

impl Default for Options {
    fn default() -> Options {
        Options { fs: Arc::new(RealFs), serving: None }
    }
}

/// A node that serves: its address (the bound port when `-p 0` was asked for), and a handle
/// that stops it as SIGTERM does.
pub struct Serving {
    pub addr: std::net::SocketAddr,
    pub stop: Stop,
}

/// Stops a node the way SIGTERM does: replies in flight are drained, the logs closed.
#[derive(Clone)]
pub struct Stop(signal_hook::iterator::Handle);

impl Stop {
    pub fn stop(&self) {
        self.0.close();
    }
}

/// Signals that came while the shards were recovering, acted on once recovery is done.
#[derive(Clone, Copy, Debug, Default)]
struct Early {
    /// SIGTERM or SIGINT: stop without serving.
    stop: Option<i32>,
    /// SIGHUP: read the configuration again once the node serves.
    reload: bool,
}

/// A node of a cluster: the partitions it is primary for (what its own `flush_all` drops).
fn primary_partitions(config: &Config) -> Option<crate::cluster::PartitionSet> {
    let (Some(file), Some(id)) = (&config.cluster_file, &config.node) else { return None };
    let map = file.map();
    let me = map.node_index(id)?;
    let mut set = crate::cluster::PartitionSet::empty();
    for p in (0..crate::cluster::PARTITIONS).filter(|&p| map.primary(p) == me) {
        set.insert(p);
    }
    Some(set)
}

/// Binds, serves until SIGTERM or SIGINT, and returns once every core has stopped. SIGHUP
/// reloads the configuration from `args` (the command line it came from) and its file.
///
/// The signal handlers are installed first of all, before the data directory is opened and
/// the shards recovered: a signal during a long recovery is then noted and acted on when
/// recovery is done (SIGHUP reloads once the node serves; SIGTERM and SIGINT stop without
/// serving, the logs closed cleanly, exit 0) instead of taking its default action, which for
/// SIGHUP is to kill the process.
pub fn run(config: Config, args: Vec<OsString>) -> io::Result<()> {
    run_with(config, args, Options::default())
}

/// [`run`], with the file system and the notice of [`Options`].
pub fn run_with(config: Config, args: Vec<OsString>, options: Options) -> io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let threads = config.threads();
    let shard_config = ShardConfig {
        memory_limit: config.memory_limit_bytes() / threads,
        max_item_size: config.max_item_size,
        mode: if config.in_memory { Mode::Cache } else { config.mode },
        primary_only: primary_partitions(&config),
        epoch: config.cluster_file.as_ref().map(|f| f.map().revision()),
    };
    let life = Arc::new(Lifecycle::default());
    notify::status("starting");
    // Every port is checked before the data directory is touched, the data port first: a
    // port in use is reported at once, not after a recovery, and leaves no directory behind.
    let listen_addrs = listen::check(&config.listen, config.port)?;
    // The admin server comes up before recovery, so that /health can say "recovering".
    let admin = match config.admin.0 {
        Some(addr) => Some(crate::admin::start(addr, life.clone())?),
        None => None,
    };
    let mut data_dir = if config.in_memory { None } else { Some(data_dir::DataDir::open(&config.data_dir, threads)?) };
    // Recover before listening: a client never sees a half-loaded node.
    life.set_phase(Phase::Recovering);
    let (shards, recovery, early) = recover(&config, &options.fs, data_dir.as_ref(), shard_config, &mut signals)?;
    if let Some(sig) = early.stop {
        log::info!("signal {sig} came during recovery: stopping without serving");
        if let Some(d) = &mut data_dir {
            d.keep();
        }
        life.set_phase(Phase::Stopping);
        notify::stopping();
        let mut failed = None;
        for (i, mut shard) in shards.into_iter().enumerate() {
            if let Err(e) = shard.close() {
                first_error(&mut failed, io::Error::new(e.kind(), format!("shard {i}: the log was not closed cleanly: {e}")));
            }
        }
        drop(admin);
        drop(data_dir);
        return match failed {
            Some(e) => Err(e),
            None => {
                log::info!("stopped");
                Ok(())
            }
        };
    }
    let listeners = listen::bind(&listen_addrs, threads)?;
    let local = listeners[0].iter().map(|l| l.local_addr().map(|a| a.to_string())).collect::<io::Result<Vec<_>>>()?.join(", ");
    // The first address listened on (a host name may resolve to several), for `run_with`.
    let first_addr = listeners[0].first().map(|l| l.local_addr()).transpose()?.ok_or_else(|| io::Error::other("no listener"))?;
    let cluster = match (&config.cluster_file, &config.node) {
        (Some(file), Some(id)) => {
            Some(Arc::new(peer::Cluster::new(file.clone(), id).map_err(io::Error::other)?))
        }
        _ => None,
    };
    let mut peer_listeners: Vec<Option<std::net::TcpListener>> = match &cluster {
        Some(c) => listen::bind(&[config.peer_listen.unwrap_or(c.peer_addrs[c.me])], threads)
            .map_err(|e| io::Error::new(e.kind(), format!("the peer port: {e}")))?
            .into_iter()
            .map(|mut l| l.pop())
            .collect(),
        None => (0..threads).map(|_| None).collect(),
    };
    let node = Arc::new(Node {
        core_stats: (0..threads).map(|_| Arc::new(CoreStats::default())).collect(),
        stats: NodeStats::default(),
        verbosity: AtomicU32::new(config.verbose as u32),
        stopping: AtomicBool::new(false),
        cores_draining: AtomicUsize::new(threads),
        memory_limit: AtomicUsize::new(config.memory_limit_bytes()),
        recovery,
        config,
        cluster,
        stats_baseline: report::Baseline::default(),
        watchers: Arc::default(),
    });

    let mut polls = Vec::with_capacity(threads);
    let mut wakers = Vec::with_capacity(threads);
    let mut senders = Vec::with_capacity(threads);
    let mut inboxes = Vec::with_capacity(threads);
    for _ in 0..threads {
        let poll = Poll::new()?;
        wakers.push(Arc::new(Waker::new(poll.registry(), core::WAKER)?));
        polls.push(poll);
        let (tx, rx) = mailbox::channel();
        senders.push(tx);
        inboxes.push(rx);
    }
    let mailboxes = mailbox::Mailboxes::new(senders, wakers);

    // Every core is made (and has published its levels) before any of them accepts.
    let mut cores = Vec::with_capacity(threads);
    for (id, (((poll, listeners), inbox), shard)) in polls.into_iter().zip(listeners).zip(inboxes).zip(shards).enumerate() {
        cores.push(core::Core::new(
            id,
            poll,
            listeners.into_iter().map(mio::net::TcpListener::from_std).collect(),
            peer_listeners[id].take().map(mio::net::TcpListener::from_std),
            inbox,
            mailboxes.clone(),
            shard,
            node.core_stats[id].clone(),
            node.clone(),
        ));
    }
    let signal_handle = signals.handle();
    let mut handles = Vec::with_capacity(threads);
    for core in cores {
        let id = core.id;
        let signal_handle = signal_handle.clone();
        let mailboxes = mailboxes.clone();
        let node = node.clone();
        handles.push(std::thread::Builder::new().name(format!("caskade-core-{id}")).spawn(move || {
            let result = core.run();
            if result.is_err() {
                log::warn!("core {id} stopped on an error; stopping the node");
                // One core down takes the node down with it, in order.
                node.stopping.store(true, Relaxed);
                mailboxes.wake_all();
                signal_handle.close();
            }
            result.map_err(|e| io::Error::new(e.kind(), format!("core {id}: {e}")))
        })?);
    }
    let handle = Arc::new(Handle::new(node.clone(), mailboxes.clone()));
    life.serve(handle.clone());
    if let Some(d) = &mut data_dir {
        d.keep();
    }
    let c = &node.config;
    log::info!(
        "caskade {} listening on {local} with {threads} cores, -m {} MiB, -c {}, -I {}, {}; admin {}{}",
        env!("CARGO_PKG_VERSION"),
        c.memory_limit_mib,
        c.max_connections,
        c.max_item_size,
        match &data_dir {
            None => "in memory".to_string(),
            Some(d) => format!("data in {} (--fsync {}, --mode {})", d.path.display(), c.fsync, c.mode),
        },
        admin.as_ref().map_or("off".to_string(), |a| format!("http://{}", a.addr)),
        c.config.as_ref().map_or(String::new(), |f| format!("; config {}", f.display())),
    );
    notify::ready(&format!("serving on {local}"));
    if let Some(tx) = &options.serving {
        let _ = tx.send(Serving { addr: first_addr, stop: Stop(signal_handle.clone()) });
    }
    if early.reload {
        reload::reload(&handle, &args);
    }

    for sig in signals.forever() {
        if sig == SIGHUP {
            reload::reload(&handle, &args);
            continue;
        }
        log::info!("signal {sig}: stopping");
        break;
    }
    life.set_phase(Phase::Stopping);
    notify::stopping();
    node.stopping.store(true, Relaxed);
    mailboxes.wake_all();
    let mut failed = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => first_error(&mut failed, e),
            Err(_) => first_error(&mut failed, io::Error::other("a core thread panicked")),
        }
    }
    drop(admin);
    drop(data_dir);
    match failed {
        Some(e) => Err(e),
        None => {
            log::info!("stopped");
            Ok(())
        }
    }
}

/// Opens every shard on a thread of its own while this one tells systemd how long recovery
/// has been running (once a second) and notes the signals that come meanwhile.
fn recover(
    config: &Config,
    fs: &SharedFs,
    dir: Option<&data_dir::DataDir>,
    shard_config: ShardConfig,
    signals: &mut Signals,
) -> io::Result<(Vec<Shard>, Recovery, Early)> {
    let mut early = Early::default();
    if dir.is_none() {
        let (shards, recovery) = data_dir::open_shards(config, fs, dir, shard_config, crate::stats::unix_now())?;
        return Ok((shards, recovery, early));
    }
    notify::status("recovering");
    let started = std::time::Instant::now();
    let (done, finished) = crossbeam_channel::bounded(1);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let _ = done.send(data_dir::open_shards(config, fs, dir, shard_config, crate::stats::unix_now()));
        });
        let mut told = 0;
        loop {
            match finished.recv_timeout(std::time::Duration::from_millis(50)) {
                Ok(result) => return result.map(|(shards, recovery)| (shards, recovery, early)),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Err(io::Error::other("recovery panicked")),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            }
            for sig in signals.pending() {
                if sig == SIGHUP {
                    if !early.reload {
                        log::info!("SIGHUP during recovery: the configuration will be read again once the node serves");
                    }
                    early.reload = true;
                } else {
                    if early.stop.is_none() {
                        log::info!(
                            "signal {sig} during recovery: stopping once recovery is done \
                             (killing the process now is safe too: the next start recovers again)"
                        );
                    }
                    early.stop = Some(sig);
                }
            }
            let secs = started.elapsed().as_secs();
            if secs > told {
                told = secs;
                notify::recovering(secs);
            }
        }
    })
}

/// Keeps the first of several errors, to be returned (and printed once, by `main`); the
/// others are logged here.
fn first_error(first: &mut Option<io::Error>, e: io::Error) {
    match first {
        None => *first = Some(e),
        Some(_) => log::error!("{e}"),
    }
}
