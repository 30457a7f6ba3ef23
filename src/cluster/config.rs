//! The cluster file: the same on every node.
//!
//! ```toml
//! [cluster]
//! name = "prod"                       # a node refuses peers of another cluster
//! secret_file = "/etc/caskade/secret" # relative paths are relative to this file
//! forward_timeout_ms = 1000           # a forwarded request's answer, at the latest
//! max_in_flight = 4096                # per peer link; past it, temporary failure at once
//! replicas = 1                        # backups per partition (0..=3; at most nodes - 1)
//! replication_backlog_mb = 64         # recent mutations kept per core for partial catch-up
//! purge_interval_s = 3600             # deletions kept this long for backfills (within a quarter of the backlog's size)
//! durability = "none"                 # none | majority | persist_majority: when a write is acknowledged
//! durability_timeout_ms = 2000        # a durable write not acknowledged by then: "sync write ambiguous"
//! verify_interval_s = 300             # compare primaries' and backups' digests this often (0: only on demand)
//! read_fallback = "none"              # "replica": a GET whose primary is unreachable reads a backup (maybe stale)
//! [[cluster.node]]
//! id = "a"
//! client = "127.0.0.1:11211"          # the memcached port
//! peer = "127.0.0.1:11311"            # the peer port
//! admin = "127.0.0.1:11212"           # optional
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::map::{ClusterMap, MapNode};

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    pub id: String,
    pub client: SocketAddr,
    pub peer: SocketAddr,
    pub admin: Option<SocketAddr>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct ClusterFile {
    pub path: PathBuf,
    pub name: String,
    /// The shared secret peers authenticate with (the file's bytes, a trailing newline cut).
    pub secret: Vec<u8>,
    pub nodes: Vec<NodeEntry>,
    pub forward_timeout: Duration,
    pub max_in_flight: usize,
    /// Backups per partition, as asked (the map uses at most one per other node).
    pub replicas: usize,
    /// Bytes of recent mutations each core keeps for backups that fall behind.
    pub backlog_bytes: usize,
    /// How long deletions are kept for backfills (`purge_interval_s`).
    pub purge_interval: Duration,
    /// When a write's reply may leave (every write's default).
    pub durability: Durability,
    pub durability_timeout: Duration,
    /// A GET whose primary cannot be reached is answered from a backup (possibly stale).
    pub read_fallback_replica: bool,
    /// How often a verification round runs by itself (`None`: only when asked).
    pub verify_interval: Option<Duration>,
}

pub use crate::protocol::Durability;

impl std::fmt::Debug for ClusterFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterFile")
            .field("path", &self.path)
            .field("name", &self.name)
            .field("secret", &"<hidden>")
            .field("nodes", &self.nodes)
            .field("forward_timeout", &self.forward_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("replicas", &self.replicas)
            .field("backlog_bytes", &self.backlog_bytes)
            .field("purge_interval", &self.purge_interval)
            .field("durability", &self.durability)
            .field("durability_timeout", &self.durability_timeout)
            .field("read_fallback_replica", &self.read_fallback_replica)
            .field("verify_interval", &self.verify_interval)
            .finish()
    }
}

impl ClusterFile {
    pub fn load(path: &Path) -> Result<ClusterFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        ClusterFile::parse(&text, path).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str, path: &Path) -> Result<ClusterFile, String> {
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().to_string())?;
        for key in doc.keys() {
            if key != "cluster" {
                return Err(format!("unknown section [{key}] (only [cluster] and [[cluster.node]])"));
            }
        }
        let cluster = doc.get("cluster").and_then(|v| v.as_table()).ok_or("no [cluster] section")?;
        let str_of = |t: &toml::Table, k: &str| -> Result<Option<String>, String> {
            match t.get(k) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("{k} must be a string")),
            }
        };
        let int_of = |k: &str, default: i64, range: std::ops::RangeInclusive<i64>| -> Result<i64, String> {
            match cluster.get(k) {
                None => Ok(default),
                Some(toml::Value::Integer(n)) if range.contains(n) => Ok(*n),
                Some(_) => Err(format!("{k} must be an integer in {}..={}", range.start(), range.end())),
            }
        };
        for key in cluster.keys() {
            if !["name", "secret_file", "forward_timeout_ms", "max_in_flight", "replicas", "replication_backlog_mb", "purge_interval_s", "durability", "durability_timeout_ms", "read_fallback", "verify_interval_s", "node"].contains(&key.as_str()) {
                return Err(format!("unknown setting cluster.{key}"));
            }
        }
        let name = str_of(cluster, "name")?.filter(|n| !n.is_empty()).ok_or("cluster.name is missing")?;
        let secret_file = str_of(cluster, "secret_file")?.ok_or("cluster.secret_file is missing")?;
        let secret_path = match Path::new(&secret_file) {
            p if p.is_absolute() => p.to_path_buf(),
            p => path.parent().unwrap_or(Path::new(".")).join(p),
        };
        let mut secret =
            std::fs::read(&secret_path).map_err(|e| format!("secret_file {}: {e}", secret_path.display()))?;
        while secret.last().is_some_and(|b| b.is_ascii_whitespace()) {
            secret.pop();
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!("secret_file {} holds {} bytes; at least {MIN_SECRET_LEN} are needed", secret_path.display(), secret.len()));
        }
        let list = match cluster.get("node") {
            Some(toml::Value::Array(a)) => a,
            _ => return Err("no [[cluster.node]] entries".into()),
        };
        let mut nodes: Vec<NodeEntry> = Vec::new();
        for (i, v) in list.iter().enumerate() {
            let t = v.as_table().ok_or(format!("cluster.node[{i}] is not a table"))?;
            for key in t.keys() {
                if !["id", "client", "peer", "admin"].contains(&key.as_str()) {
                    return Err(format!("cluster.node[{i}]: unknown setting {key}"));
                }
            }
            let id = str_of(t, "id")?.filter(|s| !s.is_empty()).ok_or(format!("cluster.node[{i}]: id is missing"))?;
            if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                return Err(format!("node id '{id}': at most 64 of A-Z a-z 0-9 - _ ."));
            }
            let addr = |k: &str| -> Result<Option<SocketAddr>, String> {
                str_of(t, k)?
                    .map(|s| s.parse().map_err(|_| format!("node {id}: {k} '{s}' is not ADDR:PORT")))
                    .transpose()
            };
            let client = addr("client")?.ok_or(format!("node {id}: client is missing"))?;
            let peer = addr("peer")?.ok_or(format!("node {id}: peer is missing"))?;
            if nodes.iter().any(|n| n.id == id) {
                return Err(format!("node id '{id}' appears twice"));
            }
            let admin = addr("admin")?;
            nodes.push(NodeEntry { id, client, peer, admin });
        }
        if nodes.is_empty() {
            return Err("no [[cluster.node]] entries".into());
        }
        Ok(ClusterFile {
            path: path.to_path_buf(),
            name,
            secret,
            nodes,
            forward_timeout: Duration::from_millis(int_of("forward_timeout_ms", 1000, 10..=600_000)? as u64),
            max_in_flight: int_of("max_in_flight", 4096, 1..=1 << 20)? as usize,
            replicas: int_of("replicas", 1, 0..=3)? as usize,
            backlog_bytes: (int_of("replication_backlog_mb", 64, 1..=65536)? as usize) << 20,
            purge_interval: Duration::from_secs(int_of("purge_interval_s", 3600, 1..=86_400 * 30)? as u64),
            durability: match str_of(cluster, "durability")?.as_deref() {
                None | Some("none") => Durability::None,
                Some("majority") => Durability::Majority,
                Some("persist_majority") => Durability::PersistMajority,
                Some(other) => return Err(format!("durability '{other}': none, majority or persist_majority")),
            },
            durability_timeout: Duration::from_millis(int_of("durability_timeout_ms", 2000, 10..=600_000)? as u64),
            verify_interval: match int_of("verify_interval_s", 300, 0..=86_400 * 7)? {
                0 => None,
                s => Some(Duration::from_secs(s as u64)),
            },
            read_fallback_replica: match str_of(cluster, "read_fallback")?.as_deref() {
                None | Some("none") => false,
                Some("replica") => true,
                Some(other) => return Err(format!("read_fallback '{other}': none or replica")),
            },
        })
    }

    pub fn node(&self, id: &str) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The map every node derives from this file.
    pub fn map(&self) -> ClusterMap {
        let nodes = self.nodes.iter().map(|n| MapNode { id: n.id.clone(), peer: n.peer.to_string() }).collect();
        ClusterMap::derive(&self.name, nodes, self.replicas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn parses_a_three_node_file_and_refuses_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "secret", "0123456789abcdef0123\n");
        let good = r#"
[cluster]
name = "prod"
secret_file = "secret"
[[cluster.node]]
id = "a"
client = "127.0.0.1:11211"
peer = "127.0.0.1:11311"
admin = "127.0.0.1:11212"
[[cluster.node]]
id = "b"
client = "127.0.0.1:11221"
peer = "127.0.0.1:11321"
"#;
        let f = ClusterFile::load(&write(dir.path(), "c.toml", good)).unwrap();
        assert_eq!(f.name, "prod");
        assert_eq!(f.secret, b"0123456789abcdef0123");
        assert_eq!(f.nodes.len(), 2);
        assert_eq!(f.node("b").unwrap().admin, None);
        assert_eq!(f.forward_timeout, Duration::from_secs(1));
        assert_eq!(f.map().nodes().len(), 2);

        for (bad, says) in [
            (good.replace("name = \"prod\"", ""), "cluster.name is missing"),
            (good.replace("id = \"b\"", "id = \"a\""), "appears twice"),
            (good.replace("127.0.0.1:11321", "nowhere"), "is not ADDR:PORT"),
            (good.replace("secret_file = \"secret\"", "secret_file = \"short\""), "short"),
            (good.replace("[cluster]", "[cluster]\nbogus = 1"), "unknown setting cluster.bogus"),
        ] {
            write(dir.path(), "short", "tooshort");
            let e = ClusterFile::load(&write(dir.path(), "bad.toml", &bad)).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }
}
