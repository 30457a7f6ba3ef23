//! Several real caskade processes started from one cluster file, on free loopback ports.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{free_port, Server};

pub const SECRET: &str = "test-secret-0123456789abcdef";

/// A cluster file and the peer ports it names; each node keeps its data directory across
/// restarts.
pub struct ClusterFiles {
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
    pub ids: Vec<String>,
    pub peer_ports: Vec<u16>,
}

impl ClusterFiles {
    pub fn new(ids: &[&str]) -> ClusterFiles {
        ClusterFiles::with(ids, "test", SECRET)
    }

    pub fn with(ids: &[&str], name: &str, secret: &str) -> ClusterFiles {
        ClusterFiles::with_settings(ids, name, secret, "")
    }

    /// A cluster file with `settings` (TOML lines of `[cluster]`) added.
    pub fn with_settings(ids: &[&str], name: &str, secret: &str, settings: &str) -> ClusterFiles {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("secret"), secret).expect("write the secret");
        let peer_ports: Vec<u16> = ids.iter().map(|_| free_port()).collect();
        let mut text = format!("[cluster]\nname = \"{name}\"\nsecret_file = \"secret\"\nforward_timeout_ms = 1000\n{settings}");
        for (id, port) in ids.iter().zip(&peer_ports) {
            // The client and admin ports come from the harness's flags, which win.
            text += &format!("[[cluster.node]]\nid = \"{id}\"\nclient = \"127.0.0.1:1\"\npeer = \"127.0.0.1:{port}\"\n");
        }
        let file = dir.path().join("cluster.toml");
        std::fs::write(&file, text).expect("write the cluster file");
        for id in ids {
            std::fs::create_dir_all(dir.path().join(format!("data-{id}"))).expect("a data directory");
        }
        ClusterFiles { dir, file, ids: ids.iter().map(|s| s.to_string()).collect(), peer_ports }
    }

    pub fn data_dir(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("data-{id}"))
    }

    /// Starts node `id` with `extra` flags and waits until it answers.
    pub fn start(&self, id: &str, extra: &[&str]) -> Server {
        let file = self.file.display().to_string();
        let data = self.data_dir(id).display().to_string();
        let mut args = vec!["--cluster", &file, "--node", id, "--data-dir", &data];
        args.extend_from_slice(extra);
        Server::start_caskade(&args, &[])
    }

    /// Starts every node, and waits until each sees all the others up.
    pub fn start_all(&self, extra: &[&str]) -> Vec<Server> {
        let nodes: Vec<Server> = self.ids.iter().map(|id| self.start(id, extra)).collect();
        for node in &nodes {
            wait_until("every node sees the others up", Duration::from_secs(20), || {
                let stats = cluster_stats(node);
                self.ids.iter().all(|id| matches!(stat(&stats, &format!("node:{id}:state")).as_deref(), Some("up" | "self")))
            });
        }
        nodes
    }

    pub fn path(&self) -> &Path {
        &self.file
    }
}

/// Sends `request` on a fresh text connection and reads until `end` ends the reply.
pub fn text_round_trip(server: &Server, request: &[u8], end: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(server.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    s.write_all(request).expect("send");
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while !out.ends_with(end) {
        let n = s.read(&mut buf).expect("a reply within 20 s");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// `stats cluster` of `server` as name/value pairs.
pub fn cluster_stats(server: &Server) -> Vec<(String, String)> {
    let reply = text_round_trip(server, b"stats cluster\r\n", b"END\r\n");
    String::from_utf8_lossy(&reply)
        .lines()
        .filter_map(|l| l.strip_prefix("STAT "))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn stat(stats: &[(String, String)], name: &str) -> Option<String> {
    stats.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// Polls `check` every 20 ms until it holds, for at most `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Keys whose partitions node `node` (an index in the map's id order) is primary for.
pub fn keys_on(ids: &[&str], node: &str, n: usize, prefix: &str) -> Vec<String> {
    use caskade::cluster::map::{ClusterMap, MapNode};
    let map = ClusterMap::derive("", ids.iter().map(|id| MapNode { id: id.to_string(), peer: String::new() }).collect(), 1);
    let index = map.node_index(node).expect("a node of the cluster");
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|k| map.primary(caskade::cluster::partition_of(k.as_bytes())) == index)
        .take(n)
        .collect()
}
