//! `stats conns`: every client connection and listener of the node, as memcached lists them.
//!
//! Connections belong to the core that accepted them, and no other thread reads a core's
//! connection table. Each core publishes a copy of what `stats conns` shows of its own
//! connections (address, listener, state, last command) when a connection opens or closes
//! (at most once per event-loop turn) and once a second (for `secs_since_last_cmd`); the copy
//! holds at most [`MAX_PER_CORE`] connections, so publishing stays bounded. `stats conns`
//! reads every core's copy: a snapshot up to a second old, in which the asking connection is
//! always listed as it is now.

use std::net::SocketAddr;
use std::sync::Mutex;

/// The most connections a core lists.
pub const MAX_PER_CORE: usize = 4096;

/// One line group of `stats conns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnEntry {
    pub fd: i32,
    /// The client's address, or the listener's own for a listener.
    pub addr: Option<SocketAddr>,
    /// The listener a client connected to; `None` for a listener.
    pub listen_addr: Option<SocketAddr>,
    /// memcached's state name: `conn_listening`, `conn_read` (waiting for a command),
    /// `conn_nread` (discarding a refused data block), `conn_mwrite` (replies being written),
    /// `conn_parse_cmd` (the asking connection, running `stats conns`).
    pub state: &'static str,
    /// Unix seconds of the last bytes read (a listener: when the node started).
    pub last_cmd: u32,
}

/// One core's published connections.
#[derive(Debug, Default)]
pub struct ConnTable(Mutex<Vec<ConnEntry>>);

impl ConnTable {
    pub fn publish(&self, entries: Vec<ConnEntry>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = entries;
    }

    pub fn snapshot(&self) -> Vec<ConnEntry> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The `stats conns` lines of `entries` (every core's, with `asker` as it is now), by fd as
/// memcached lists them.
pub fn list(mut entries: Vec<ConnEntry>, asker: ConnEntry, now: u32) -> Vec<(String, String)> {
    entries.retain(|e| e.fd != asker.fd);
    entries.push(asker);
    entries.sort_by_key(|e| e.fd);
    let addr = |a: Option<SocketAddr>| a.map_or("tcp:?".to_string(), |a| format!("tcp:{a}"));
    let mut out = Vec::with_capacity(entries.len() * 4);
    for e in entries {
        out.push((format!("{}:addr", e.fd), addr(e.addr)));
        if e.listen_addr.is_some() {
            out.push((format!("{}:listen_addr", e.fd), addr(e.listen_addr)));
        }
        out.push((format!("{}:state", e.fd), e.state.to_string()));
        out.push((format!("{}:secs_since_last_cmd", e.fd), now.saturating_sub(e.last_cmd).to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_by_fd_with_the_asker_as_it_is_now() {
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let l: SocketAddr = "127.0.0.1:11211".parse().unwrap();
        let entry = |fd, state, last_cmd| ConnEntry { fd, addr: Some(a), listen_addr: Some(l), state, last_cmd };
        let listener = ConnEntry { fd: 3, addr: Some(l), listen_addr: None, state: "conn_listening", last_cmd: 90 };
        let table = ConnTable::default();
        table.publish(vec![entry(9, "conn_read", 95), listener, entry(7, "conn_read", 99)]);
        let lines = list(table.snapshot(), entry(7, "conn_parse_cmd", 100), 100);
        let text: Vec<String> = lines.iter().map(|(n, v)| format!("{n} {v}")).collect();
        assert_eq!(
            text,
            [
                "3:addr tcp:127.0.0.1:11211",
                "3:state conn_listening",
                "3:secs_since_last_cmd 10",
                "7:addr tcp:127.0.0.1:5000",
                "7:listen_addr tcp:127.0.0.1:11211",
                "7:state conn_parse_cmd",
                "7:secs_since_last_cmd 0",
                "9:addr tcp:127.0.0.1:5000",
                "9:listen_addr tcp:127.0.0.1:11211",
                "9:state conn_read",
                "9:secs_since_last_cmd 5",
            ]
        );
    }
}
