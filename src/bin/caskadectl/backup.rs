//! `caskadectl dump` and `restore`.
//!
//! The memcached protocol cannot list keys, so a dump comes from caskade's admin port:
//! `GET /dump` streams every live item, core by core, in the dump format (`caskade::dump`,
//! `protocol-spec/dump-format.md`). The stream is checked as it arrives (structure, item
//! count, CRC-32C) and written to `FILE.partial`, which becomes `FILE` only once the trailer
//! has matched. A restore reads the whole file once to check it and refuses a damaged one
//! before it sends anything; then it sends plain quiet SETs (SETQ, a NOOP after each batch),
//! so any memcached binary-protocol server can take a dump. Expiry times are absolute in
//! the file: an item already expired is skipped, the others get the time they have left.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use caskade::dump::{self, DumpError};
use indicatif::{ProgressBar, ProgressStyle};

use super::client::Client;

/// memcached reads an exptime above 30 days as an absolute unix time.
const RELATIVE_EXPTIME_MAX: u32 = 60 * 60 * 24 * 30;
/// Quiet SETs sent before a NOOP asks for the failures.
const BATCH_ITEMS: u32 = 512;
const BATCH_BYTES: usize = 1 << 20;

fn bar(total: u64, verb: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let template = format!("{verb} {{bar:40}} {{pos}}/{{len}} items ({{per_sec}}, {{elapsed}})");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

fn unix_now() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}

/// Copies what it reads into a file.
struct Tee<R, W> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

pub fn dump(admin: &str, file: &Path, force: bool) -> Result<(), String> {
    if file.exists() && !force {
        return Err(format!("{} exists (use --force to replace it)", file.display()));
    }
    let url = format!("http://{admin}/dump");
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_recv_response(Some(Duration::from_secs(30)))
            .build(),
    );
    let response = agent.get(&url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => format!("{url}: the server answered HTTP {code}"),
        other => format!("{url}: {other}"),
    })?;
    let expected = response
        .headers()
        .get("X-Caskade-Items")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let partial = partial_path(file);
    let out = File::create(&partial).map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let result = (|| {
        let tee = Tee { inner: BufReader::with_capacity(1 << 16, response.into_body().into_reader()), copy: BufWriter::new(out) };
        let mut reader = dump::Reader::new(tee).map_err(|e| format!("{url}: {e}"))?;
        let progress = bar(expected, "dump");
        while reader.next().map_err(|e| format!("{url}: {e}"))?.is_some() {
            progress.inc(1);
            if progress.position() > progress.length().unwrap_or(0) {
                progress.set_length(progress.position());
            }
        }
        progress.finish_and_clear();
        let items = reader.items();
        let bytes = reader.offset();
        let Tee { copy, .. } = reader.into_inner();
        let file = copy.into_inner().map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
        file.sync_all().map_err(|e| format!("cannot sync {}: {e}", partial.display()))?;
        Ok::<_, String>((items, bytes))
    })();
    match result {
        Ok((items, bytes)) => {
            std::fs::rename(&partial, file).map_err(|e| format!("cannot rename {} to {}: {e}", partial.display(), file.display()))?;
            eprintln!("dumped {items} items ({bytes} bytes) to {}", file.display());
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    file.with_file_name(name)
}

fn open(file: &Path) -> Result<dump::Reader<BufReader<File>>, String> {
    let f = File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    dump::Reader::new(BufReader::with_capacity(1 << 16, f)).map_err(|e| refuse(file, e))
}

fn refuse(file: &Path, e: DumpError) -> String {
    format!("{}: {e}; nothing restored", file.display())
}

pub fn restore(server: &str, file: &Path) -> Result<(), String> {
    // First the whole file, so that a damaged one is refused before anything is sent.
    let mut check = open(file)?;
    while check.next().map_err(|e| refuse(file, e))?.is_some() {}
    let total = check.items();

    let mut client = Client::connect(server)?;
    let mut reader = open(file)?;
    let progress = bar(total, "restore");
    let (mut sent, mut expired, mut failed) = (0u64, 0u64, Vec::<String>::new());
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let now = unix_now();
    loop {
        let item = reader.next().map_err(|e| refuse(file, e))?;
        if let Some(item) = &item {
            let exptime = match item.expiry {
                0 => Some(0),
                at if at <= now => None,
                at if at - now <= RELATIVE_EXPTIME_MAX => Some(at - now),
                at => Some(at),
            };
            match exptime {
                None => expired += 1,
                Some(exptime) => {
                    client.queue_set(&item.key, &item.value, item.flags, exptime, batch.len() as u32);
                    batch.push(item.key.clone());
                }
            }
            progress.inc(1);
        }
        if !batch.is_empty() && (item.is_none() || batch.len() as u32 >= BATCH_ITEMS || client.queued_bytes() >= BATCH_BYTES) {
            let errors = client.sync()?;
            sent += (batch.len() - errors.len()) as u64;
            for (opaque, error) in errors {
                let key = batch.get(opaque as usize).map_or("?".into(), |k| String::from_utf8_lossy(k).into_owned());
                failed.push(format!("{key}: {error}"));
            }
            batch.clear();
        }
        if item.is_none() {
            break;
        }
    }
    progress.finish_and_clear();
    eprintln!("restored {sent} of {total} items into {server}{}", if expired > 0 { format!(" ({expired} had expired)") } else { String::new() });
    if let Some(first) = failed.first() {
        return Err(format!("{} items were refused by {server} (the first: {first})", failed.len()));
    }
    Ok(())
}
