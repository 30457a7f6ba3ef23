//! caskadectl: poke at a caskade (or any memcached binary-protocol server) from a shell.
//!
//! ```text
//! caskadectl [--server HOST:PORT] [--admin HOST:PORT] COMMAND
//!   stats [--watch]          the server's counters as a table; --watch: every second, with rates
//!   get KEY                  print the value (flags on stderr)
//!   set KEY VALUE [--flags N] [--ttl SECS]
//!   delete KEY
//!   flush                    invalidate every item
//!   dump FILE                every live item, with flags and TTL, into FILE (caskade's admin /dump)
//!   restore FILE             check FILE's checksum, then SET every item into --server
//!   cluster status           the cluster's nodes as --server sees them: state, since when,
//!                            partitions each is primary for, forwarded requests, errors;
//!                            with replicas, each backup's streams: state, lag, resyncs
//!   cluster verify           compare the node's primary partitions with their backups
//!                            (digests), wait for the round, report what differed
//! ```
//!
//! Errors are one line on stderr and exit code 1 (2 for a bad command line).

mod backup;
mod client;
mod stats;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "caskadectl", version, about = "Poke at a caskade or any memcached binary-protocol server")]
struct Cli {
    /// The server's data port.
    #[arg(short = 's', long = "server", default_value = "127.0.0.1:11211", global = true)]
    server: String,

    /// caskade's admin HTTP address (for dump).
    #[arg(short = 'a', long = "admin", default_value = "127.0.0.1:11212", global = true)]
    admin: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The server's counters as a table.
    Stats {
        /// Refresh every second, with rates per second.
        #[arg(short = 'w', long = "watch")]
        watch: bool,
        /// With --watch: stop after this many refreshes.
        #[arg(long = "count", value_name = "N")]
        count: Option<u64>,
    },
    /// Print a key's value on stdout (and its flags on stderr).
    Get { key: String },
    /// Store a value.
    Set {
        key: String,
        value: String,
        #[arg(long = "flags", default_value_t = 0)]
        flags: u32,
        /// Seconds to live (0: forever).
        #[arg(long = "ttl", default_value_t = 0)]
        ttl: u32,
    },
    /// Delete a key.
    Delete { key: String },
    /// Invalidate every item.
    Flush,
    /// Save every live item (flags and expiry included) to FILE, from caskade's admin port.
    Dump {
        file: std::path::PathBuf,
        /// Replace FILE if it exists.
        #[arg(short = 'f', long = "force")]
        force: bool,
    },
    /// Check FILE, then load its items into --server with SETs.
    Restore { file: std::path::PathBuf },
    /// The cluster as the node at --server sees it.
    Cluster {
        #[command(subcommand)]
        what: ClusterCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Nodes, their state (up / unreachable, since when), partitions each is primary for.
    Status,
    /// Compare every partition this node is primary for with its backups' copies (through
    /// --admin of the same node), wait for the round, and report what differed (repaired by
    /// a resync of those partitions).
    Verify,
}

/// `caskadectl cluster status`: a table from `stats cluster`.
fn cluster_status(server: &str) -> Result<(), String> {
    let stats = client::Client::connect(server)?.stats_group(b"cluster")?;
    let get = |name: &str| stats.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let Some(name) = get("cluster_name") else {
        return Err(format!("{server} is a single node, not part of a cluster"));
    };
    println!(
        "cluster {name}, asked node {}, map revision {} checksum {}",
        get("cluster_node").unwrap_or("?"),
        get("cluster_map_revision").unwrap_or("?"),
        get("cluster_map_checksum").unwrap_or("?")
    );
    println!("{:<12} {:<12} {:>8} {:>10} {:>12} {:>8} {:>9} {:>8}  peer", "node", "state", "since", "primaries", "forwarded", "errors", "in flight", "rtt µs");
    let ids: Vec<&str> = stats.iter().filter_map(|(k, _)| k.strip_prefix("node:")?.strip_suffix(":state")).collect();
    for id in ids {
        let f = |what: &str| get(&format!("node:{id}:{what}")).unwrap_or("-").to_string();
        let since = match f("since_seconds").as_str() {
            "0" | "-" => "-".to_string(),
            s => format!("{s}s"),
        };
        println!(
            "{:<12} {:<12} {:>8} {:>10} {:>12} {:>8} {:>9} {:>8}  {}",
            id, f("state"), since, f("primary_partitions"), f("forwarded"), f("errors"), f("in_flight"), f("rtt_mean_us"), f("peer")
        );
    }
    let replicas = get("cluster_replicas").unwrap_or("0");
    if replicas != "0" {
        println!();
        println!(
            "replication: {replicas} backup(s) per partition; streams from the asked node to each backup, backlog {} bytes",
            get("cluster_replication_backlog_bytes").unwrap_or("?")
        );
        println!(
            "{:<12} {:<12} {:>10} {:>9} {:>10} {:>12} {:>11} {:>8} {:>8} {:>9} {:>11} {:>11}",
            "backup", "state", "partitions", "lag max", "lag total", "unacked B", "ack age ms", "resyncs", "partial", "backfills", "lag p50 us", "lag p99 us"
        );
        let ids: Vec<&str> = stats.iter().filter_map(|(k, _)| k.strip_prefix("node:")?.strip_suffix(":repl_state")).collect();
        for id in &ids {
            let f = |what: &str| get(&format!("node:{id}:{what}")).unwrap_or("-").to_string();
            // A quantile is the bound of its bucket: "<= 500" means at most 500 us.
            let q = |what: &str| match f(what).as_str() {
                "0" => "-".to_string(),
                v => format!("<= {v}"),
            };
            println!(
                "{:<12} {:<12} {:>10} {:>9} {:>10} {:>12} {:>11} {:>8} {:>8} {:>9} {:>11} {:>11}",
                id,
                f("repl_state"),
                f("repl_partitions"),
                f("repl_lag_max"),
                f("repl_lag_sum"),
                f("repl_unacked_bytes"),
                f("repl_ack_age_ms"),
                f("repl_resyncs"),
                f("repl_partial_catchups"),
                f("repl_backfills"),
                q("repl_lag_p50_us"),
                q("repl_lag_p99_us")
            );
        }
        for id in &ids {
            let worst = get(&format!("node:{id}:repl_worst_partitions")).unwrap_or("");
            if !worst.is_empty() {
                println!("  worst partitions toward {id} (partition:changes behind): {}", worst.replace(',', " "));
            }
        }
    }
    Ok(())
}

/// `caskadectl cluster verify`: starts a verification round on the node and waits for it.
fn cluster_verify(server: &str, admin: &str) -> Result<(), String> {
    let url = format!("http://{admin}/cluster/verify");
    let body = ureq::get(&url).call().map_err(|e| format!("{url}: {e}"))?.body_mut().read_to_string().map_err(|e| format!("{url}: {e}"))?;
    let round: u64 = body.trim().strip_prefix("round ").and_then(|r| r.parse().ok()).ok_or(format!("{url}: answered {body:?}"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let stats = client::Client::connect(server)?.stats_group(b"cluster")?;
        let get = |name: &str| stats.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let ids: Vec<String> = stats.iter().filter_map(|(k, _)| Some(k.strip_prefix("node:")?.strip_suffix(":repl_verified_round")?.to_string())).collect();
        let done = ids.iter().all(|id| get(&format!("node:{id}:repl_verified_round")).and_then(|r| r.parse::<u64>().ok()).is_some_and(|r| r >= round));
        if done {
            println!("verification round {round} done");
            for id in &ids {
                let f = |what: &str| get(&format!("node:{id}:{what}")).unwrap_or_else(|| "-".into());
                println!("backup {id}: {} partitions compared in all, {} found different (each resynced)", f("repl_verified_partitions"), f("repl_mismatches"));
            }
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("verification round {round} not done within 120 s (a backup down or resyncing?)"));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Stats { watch, count } => stats::run(&cli.server, watch, count),
        Command::Get { key } => {
            let mut c = client::Client::connect(&cli.server)?;
            match c.get(key.as_bytes())? {
                Some((value, flags)) => {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    out.write_all(&value).and_then(|()| out.write_all(b"\n")).map_err(|e| e.to_string())?;
                    eprintln!("flags {flags}");
                    Ok(())
                }
                None => Err(format!("{key}: not found")),
            }
        }
        Command::Set { key, value, flags, ttl } => {
            client::Client::connect(&cli.server)?.set(key.as_bytes(), value.as_bytes(), flags, ttl)
        }
        Command::Delete { key } => match client::Client::connect(&cli.server)?.delete(key.as_bytes())? {
            true => Ok(()),
            false => Err(format!("{key}: not found")),
        },
        Command::Flush => client::Client::connect(&cli.server)?.flush_all(),
        Command::Dump { file, force } => backup::dump(&cli.admin, &file, force),
        Command::Restore { file } => backup::restore(&cli.server, &file),
        Command::Cluster { what: ClusterCommand::Status } => cluster_status(&cli.server),
        Command::Cluster { what: ClusterCommand::Verify } => cluster_verify(&cli.server, &cli.admin),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("caskadectl: {e}");
            ExitCode::FAILURE
        }
    }
}
