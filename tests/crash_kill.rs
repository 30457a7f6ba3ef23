//! Crash test (issue 3): the real server with `--fsync always` takes SETs from several
//! pipelining connections, is killed with SIGKILL at a random moment, and restarts on the
//! same data directory; every SET it acknowledged must be there with its latest value.
//!
//! Each key is written by one connection only, with values that carry a sequence number, so
//! a key may hold its last acknowledged value or the value of a later SET that was in flight
//! when the server died, and nothing else. Small segments make rolls (and hint files written
//! in the background) happen while the kills land; values from 1 KiB up are compressed.
//!
//! `CASKADE_CRASH_ROUNDS` sets the number of kills (20 by default, about 10 to 20 s); a soak
//! run: `CASKADE_CRASH_ROUNDS=1000 cargo test --release --test crash_kill -- --nocapture`.

mod common;
mod durable;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use caskade::protocol::binary::Status;
use common::{Server, ServerKind};
use durable::client::{get_request, set_request, Client};

const WRITERS: usize = 4;
const KEYS_PER_WRITER: u64 = 400;
/// SETs in flight per connection.
const WINDOW: usize = 24;

/// What is known of one key.
#[derive(Clone, Copy, Debug, Default)]
struct KeyState {
    /// The sequence number of the last SET acknowledged (or of the value found at the last
    /// restart), if any.
    durable: Option<u64>,
    /// The highest sequence number ever sent.
    sent: u64,
}

/// One writer's keys: `w<writer>:<n>`.
type Keys = HashMap<String, KeyState>;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `key#seq#` then filler: repetitive (compressible) or not, 10 bytes to 8 KiB.
fn value(key: &str, seq: u64) -> Vec<u8> {
    let mut v = format!("{key}#{seq}#").into_bytes();
    let mut r = Rng(seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let len = match r.below(4) {
        0 => r.below(8192),
        _ => r.below(300),
    } as usize;
    if r.below(2) == 0 {
        v.extend((0..len).map(|i| b'a' + (i % 5) as u8));
    } else {
        v.extend((0..len).map(|_| b'a' + r.below(26) as u8));
    }
    v
}

/// The sequence number a stored value carries, checking that it belongs to `key` and is
/// intact.
fn seq_of(key: &str, stored: &[u8]) -> Result<u64, String> {
    let text = String::from_utf8_lossy(stored);
    let mut parts = text.splitn(3, '#');
    let (k, seq) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if k != key {
        return Err(format!("holds a value of {k:?}"));
    }
    let seq: u64 = seq.parse().map_err(|_| format!("holds a damaged value {:?}", &text[..text.len().min(40)]))?;
    if value(key, seq) != stored {
        return Err(format!("holds a damaged value for sequence {seq}"));
    }
    Ok(seq)
}

/// Sends windows of SETs over one connection until the server dies; books each
/// acknowledgement.
fn write(server_addr: std::net::SocketAddr, writer: usize, mut keys: Keys, seed: u64, stop: Arc<AtomicBool>) -> (Keys, u64) {
    let mut rng = Rng(seed | 1);
    let mut acked = 0u64;
    let Ok(mut client) = Client::connect(server_addr) else { return (keys, acked) };
    'conn: while !stop.load(SeqCst) {
        let mut batch = Vec::new();
        let mut in_flight = Vec::with_capacity(WINDOW);
        let window = 1 + rng.below(WINDOW as u64) as usize;
        for i in 0..window {
            let key = format!("w{writer}:{}", rng.below(KEYS_PER_WRITER));
            let state = keys.entry(key.clone()).or_default();
            state.sent += 1;
            batch.extend_from_slice(&set_request(key.as_bytes(), &value(&key, state.sent), 0, i as u32));
            in_flight.push((key, state.sent));
        }
        if !client.send(&batch) {
            break;
        }
        for (i, (key, seq)) in in_flight.into_iter().enumerate() {
            let Some(reply) = client.recv() else { break 'conn };
            assert_eq!(reply.opaque, i as u32, "replies out of order");
            assert_eq!(reply.status, Status::NoError, "SET {key}");
            let state = keys.get_mut(&key).expect("a key sent");
            // Replies come in order and each key has one writer: this is the latest ack.
            state.durable = Some(seq);
            acked += 1;
        }
    }
    (keys, acked)
}

/// Reads every key back and checks it; the values found become the new durable state.
/// Returns how many keys held an acknowledged write and how many held a later one.
fn verify(server: &Server, writers: &mut [Keys], round: usize) -> (u64, u64) {
    let mut client = Client::connect(server.addr()).expect("connect after the restart");
    let (mut checked, mut newer) = (0, 0);
    let mut lost = Vec::new();
    for keys in writers.iter_mut() {
        let names: Vec<String> = keys.keys().cloned().collect();
        for chunk in names.chunks(200) {
            let mut batch = Vec::new();
            for (i, key) in chunk.iter().enumerate() {
                batch.extend_from_slice(&get_request(key.as_bytes(), i as u32));
            }
            assert!(client.send(&batch), "round {round}: the restarted server closed the connection");
            for (i, key) in chunk.iter().enumerate() {
                let reply = client.recv().unwrap_or_else(|| panic!("round {round}: connection closed while reading {key}"));
                assert_eq!(reply.opaque, i as u32);
                let state = keys.get_mut(key).unwrap();
                let found = match reply.status {
                    Status::NoError => Some(seq_of(key, &reply.value).unwrap_or_else(|e| panic!("round {round}: {key} {e}"))),
                    Status::KeyNotFound => None,
                    other => panic!("round {round}: GET {key}: {other:?}"),
                };
                match (state.durable, found) {
                    (Some(want), None) => lost.push(format!("{key} (sequence {want}) is missing")),
                    (Some(want), Some(seq)) if seq < want => lost.push(format!("{key} holds sequence {seq}, {want} was acknowledged")),
                    (_, Some(seq)) if seq > state.sent => panic!("round {round}: {key} holds sequence {seq}, never sent"),
                    (want, Some(seq)) => {
                        checked += want.is_some() as u64;
                        newer += (Some(seq) != want) as u64;
                    }
                    (None, None) => {}
                }
                // What was found is on disk now; later SETs build on it.
                state.durable = found;
                state.sent = state.sent.max(found.unwrap_or(0));
            }
        }
    }
    assert!(lost.is_empty(), "round {round}: {} acknowledged writes lost: {:?}\n{}", lost.len(), &lost[..lost.len().min(20)], server.log());
    (checked, newer)
}

fn rounds() -> usize {
    std::env::var("CASKADE_CRASH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20)
}

#[test]
fn every_acknowledged_set_survives_sigkill() {
    if ServerKind::from_env() != ServerKind::Caskade {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_string();
    let args = [
        "--data-dir", &data_dir, "--fsync", "always", "-t", "2", "-I", "32k", "--segment-size", "256k", "--compress-min", "1k",
    ];
    let seed = std::env::var("CASKADE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
    eprintln!("crash_kill: seed {seed} (CASKADE_CRASH_SEED), {} rounds (CASKADE_CRASH_ROUNDS)", rounds());
    let mut rng = Rng(seed | 1);
    let mut writers: Vec<Keys> = vec![Keys::new(); WRITERS];
    let (mut acked, mut checked, mut newer) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    let mut server = Server::start(&args);
    for round in 0..rounds() {
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = std::mem::take(&mut writers)
            .into_iter()
            .enumerate()
            .map(|(w, keys)| {
                let (addr, stop, seed) = (server.addr(), stop.clone(), rng.next());
                thread::spawn(move || write(addr, w, keys, seed, stop))
            })
            .collect();
        thread::sleep(Duration::from_millis(20 + rng.below(300)));
        // SAFETY: the pid names our own child, not yet reaped.
        unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGKILL) };
        stop.store(true, SeqCst);
        for h in handles {
            let (keys, n) = h.join().expect("a writer panicked");
            writers.push(keys);
            acked += n;
        }
        drop(server);
        server = Server::start(&args);
        let (c, n) = verify(&server, &mut writers, round);
        checked += c;
        newer += n;
    }
    assert!(server.stop().success());
    eprintln!(
        "crash_kill: {} rounds in {:.1} s: {acked} SETs acknowledged; {checked} key checks against an acknowledged write, 0 lost; {newer} keys held a later, unacknowledged write",
        rounds(),
        started.elapsed().as_secs_f64()
    );
    assert!(acked > 0, "no SET was ever acknowledged");
}
