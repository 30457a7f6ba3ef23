//! `caskadectl stats`: the general STAT list as a table; with `--watch`, refreshed every
//! second with each running total's rate per second. Works against memcached too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::client::Client;

/// Levels, not running totals: no rate is shown for them.
const LEVELS: &[&str] = &[
    "pid", "uptime", "time", "version", "pointer_size", "max_connections", "curr_connections", "curr_items", "bytes",
    "limit_maxbytes", "threads", "segments", "disk_bytes", "dead_bytes", "libevent", "rusage_user", "rusage_system",
];

pub fn run(server: &str, watch: bool, count: Option<u64>) -> Result<(), String> {
    let mut client = Client::connect(server)?;
    if !watch {
        print!("{}", table(server, &client.stats()?, None));
        return Ok(());
    }
    let mut before: Option<(Instant, HashMap<String, f64>)> = None;
    let mut shown = 0u64;
    loop {
        let now = Instant::now();
        let stats = client.stats()?;
        let rates = before.as_ref().map(|(at, old)| {
            let secs = now.duration_since(*at).as_secs_f64().max(1e-3);
            stats
                .iter()
                .filter(|(k, _)| !LEVELS.contains(&k.as_str()))
                .filter_map(|(k, v)| Some((k.clone(), (v.parse::<f64>().ok()? - old.get(k)?) / secs)))
                .collect::<HashMap<_, _>>()
        });
        // Clear the screen and go home, then draw.
        print!("\x1b[2J\x1b[H{}", table(server, &stats, rates.as_ref()));
        shown += 1;
        if count.is_some_and(|n| shown >= n) {
            return Ok(());
        }
        before = Some((now, stats.iter().filter_map(|(k, v)| Some((k.clone(), v.parse().ok()?))).collect()));
        std::thread::sleep(Duration::from_secs(1).saturating_sub(now.elapsed()));
    }
}

fn table(server: &str, stats: &[(String, String)], rates: Option<&HashMap<String, f64>>) -> String {
    let get = |k: &str| stats.iter().find(|(n, _)| n == k).map_or("?", |(_, v)| v.as_str());
    let mut out = format!("{server}  version {}  uptime {} s  threads {}\n\n", get("version"), get("uptime"), get("threads"));
    let width = stats.iter().map(|(k, _)| k.len()).max().unwrap_or(10);
    match rates {
        Some(_) => out.push_str(&format!("{:<width$}  {:>20}  {:>12}\n", "stat", "value", "per second")),
        None => out.push_str(&format!("{:<width$}  {:>20}\n", "stat", "value")),
    }
    for (k, v) in stats {
        match rates {
            Some(r) => {
                let rate = r.get(k).map_or(String::new(), |x| format!("{x:.1}"));
                out.push_str(&format!("{k:<width$}  {v:>20}  {rate:>12}\n"));
            }
            None => out.push_str(&format!("{k:<width$}  {v:>20}\n")),
        }
    }
    out
}
