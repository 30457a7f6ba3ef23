//! The caskade processes under test: the generated cluster file, start, readiness, kill -9,
//! SIGSTOP/SIGCONT and stop, each by its own pid.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Node {
    pub id: String,
    pub client: SocketAddr,
    pub admin: SocketAddr,
    /// The address in the cluster file (the proxy's), and where the node really listens.
    pub peer_map: SocketAddr,
    pub peer_real: SocketAddr,
    pub data: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    pub paused: bool,
}

/// What the generated cluster file says beyond the nodes.
#[derive(Clone, Debug)]
pub struct FileSettings {
    pub forward_timeout_ms: u64,
    pub replicas: usize,
    pub durability: String,
    pub durability_timeout_ms: u64,
    /// Known-bad: node a gets a cluster file without the last node, so its map makes it
    /// primary of partitions another node owns (a split brain on purpose).
    pub rogue_map: bool,
}

/// Per (partition, epoch), the nodes whose logs say they wrote it as primary.
pub type Claims = BTreeMap<(u16, u64), BTreeSet<usize>>;

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub settings: FileSettings,
    /// `None` for a single node (no `--cluster`).
    pub file: Option<PathBuf>,
    /// Node a's cluster file under `rogue_map`.
    pub rogue_file: Option<PathBuf>,
    pub binary: PathBuf,
    pub server_args: Vec<String>,
}

/// A loopback port free now, never handed out before by this process, and below the
/// kernel's ephemeral range. Binding port 0 and releasing it is not enough: the kernel may
/// hand out the same port again (run 26 of a soak, seed 726, gave 36089 to node a's proxy
/// and to node b's client port, and b could not listen), and a port in the ephemeral range
/// can be taken by an outgoing connection before the node binds it.
pub fn free_port() -> std::io::Result<u16> {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    let (low, high) = fixed_port_range();
    let span = u64::from(high - low);
    // Spread over the range by pid and time, so that two harnesses rarely meet.
    let mut next = u64::from(std::process::id()).wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::from(d.subsec_nanos()));
    for _ in 0..10_000 {
        next = next.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let port = low + ((next >> 33) % span) as u16;
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, format!("no free loopback port in {low}..{high}")))
}

/// Ports below the kernel's ephemeral range (`ip_local_port_range`), above the well-known ones.
fn fixed_port_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|w| w.parse::<u16>().ok()))
        .unwrap_or(32768);
    if ephemeral_low > 12_000 {
        (10_000, ephemeral_low)
    } else {
        (ephemeral_low.saturating_sub(8_000).max(2_000), ephemeral_low)
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Cluster {
    /// Lays out `n` nodes under `dir` (ids a, b, c, ...) and writes the cluster file if n > 1.
    pub fn new(dir: &Path, n: usize, binary: PathBuf, server_args: Vec<String>, settings: FileSettings) -> std::io::Result<Cluster> {
        let mut nodes = Vec::new();
        for i in 0..n {
            let id = ((b'a' + i as u8) as char).to_string();
            let data = dir.join(format!("data-{id}"));
            std::fs::create_dir_all(&data)?;
            nodes.push(Node {
                client: loopback(free_port()?),
                admin: loopback(free_port()?),
                peer_map: loopback(free_port()?),
                peer_real: loopback(free_port()?),
                log: dir.join(format!("{id}.log")),
                id,
                data,
                child: None,
                paused: false,
            });
        }
        let (file, rogue_file) = if n > 1 {
            std::fs::write(dir.join("secret"), "chaos-secret-0123456789abcdef\n")?;
            let path = dir.join("cluster.toml");
            std::fs::write(&path, cluster_file(&nodes, &settings, false))?;
            let rogue = if settings.rogue_map {
                let rogue = dir.join("cluster-rogue.toml");
                std::fs::write(&rogue, cluster_file(&nodes, &settings, true))?;
                Some(rogue)
            } else {
                None
            };
            (Some(path), rogue)
        } else {
            (None, None)
        };
        Ok(Cluster { nodes, settings, file, rogue_file, binary, server_args })
    }

    /// The map the nodes derive from the file (partition placement: primaries and backups).
    pub fn map(&self) -> caskade::cluster::ClusterMap {
        if self.file.is_none() {
            return caskade::cluster::ClusterMap::single();
        }
        let nodes = self.nodes.iter().map(|n| caskade::cluster::map::MapNode { id: n.id.clone(), peer: n.peer_map.to_string() }).collect();
        caskade::cluster::ClusterMap::derive("chaos", nodes, self.settings.replicas)
    }

    pub fn start(&mut self, i: usize) -> std::io::Result<()> {
        let node = &self.nodes[i];
        let mut args: Vec<String> = vec![
            "-l".into(), "127.0.0.1".into(),
            "-p".into(), node.client.port().to_string(),
            "--admin".into(), node.admin.to_string(),
            "--data-dir".into(), node.data.display().to_string(),
            "--threads".into(), "1".into(),
        ];
        let file = if i == 0 { self.rogue_file.as_ref().or(self.file.as_ref()) } else { self.file.as_ref() };
        if let Some(file) = file {
            args.extend(["--cluster".into(), file.display().to_string(), "--node".into(), node.id.clone()]);
            args.extend(["--peer-listen".into(), node.peer_real.to_string()]);
        }
        args.extend(self.server_args.iter().cloned());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log)?;
        let mut command = Command::new(&self.binary);
        command.args(&args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        // The split-brain audit: each partition's first write as primary, per epoch.
        command.env("RUST_LOG", format!("{}=debug", caskade::cluster::claims::TARGET));
        // SAFETY: prctl(2) only, between fork and exec: if the harness dies (a test's timeout
        // kills it), its nodes die with it instead of holding their ports.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn()?;
        self.nodes[i].child = Some(child);
        self.nodes[i].paused = false;
        Ok(())
    }

    /// Waits until node `i` answers `/health` with 200, or `timeout`.
    pub fn wait_ready(&mut self, i: usize, timeout: Duration) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(child) = self.nodes[i].child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("node {} exited: {status} (see {})", self.nodes[i].id, self.nodes[i].log.display()));
                }
            }
            if http_status(self.nodes[i].admin, "/health") == Some(200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("node {} not ready after {timeout:?}", self.nodes[i].id))
    }

    /// Waits until every node sees every other up (`stats cluster`), or `timeout`.
    pub fn wait_connected(&self, timeout: Duration) -> Result<(), String> {
        // Under a rogue map node a's links are refused for good (the maps differ).
        if self.file.is_none() || self.rogue_file.is_some() {
            return Ok(());
        }
        let started = Instant::now();
        'poll: while started.elapsed() < timeout {
            for node in &self.nodes {
                let stats = text_stats(node.client, "stats cluster").unwrap_or_default();
                for other in &self.nodes {
                    let line = format!("STAT node:{}:state ", other.id);
                    let up = stats.lines().any(|l| l.starts_with(&line) && (l.ends_with(" up") || l.ends_with(" self")));
                    if !up {
                        std::thread::sleep(Duration::from_millis(50));
                        continue 'poll;
                    }
                }
            }
            return Ok(());
        }
        Err(format!("the nodes did not all see each other up within {timeout:?}"))
    }

    /// What the nodes' logs say they wrote as primary (every start of each node).
    pub fn claims(&self) -> Claims {
        let mut claims = Claims::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let Ok(bytes) = std::fs::read(&node.log) else { continue };
            for line in String::from_utf8_lossy(&bytes).lines() {
                if let Some(claim) = caskade::cluster::claims::parse(line) {
                    claims.entry(claim).or_default().insert(i);
                }
            }
        }
        claims
    }

    pub fn pid(&self, i: usize) -> Option<i32> {
        self.nodes[i].child.as_ref().map(|c| c.id() as i32)
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.nodes[i].paused = false;
    }

    pub fn signal(&mut self, i: usize, signal: libc::c_int) {
        if let Some(pid) = self.pid(i) {
            // SAFETY: kill(2) on the pid of a child this harness started and has not reaped.
            unsafe { libc::kill(pid, signal) };
        }
        self.nodes[i].paused = signal == libc::SIGSTOP;
    }

    /// SIGCONT, then SIGTERM; SIGKILL if it is not gone in 10 s.
    pub fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.signal(i, libc::SIGCONT);
            self.signal(i, libc::SIGTERM);
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(10) {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()
}

fn text_stats(addr: SocketAddr, command: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while !out.ends_with(b"END\r\n") {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(out).ok()
}

/// The cluster file's text; the rogue one leaves the last node out, so that node a's map
/// (partition p on node p mod N, the nodes ordered by id) has other primaries.
fn cluster_file(nodes: &[Node], settings: &FileSettings, rogue: bool) -> String {
    let FileSettings { forward_timeout_ms, replicas, durability, durability_timeout_ms, .. } = settings;
    let mut text = format!(
        "[cluster]\nname = \"chaos\"\nsecret_file = \"secret\"\nforward_timeout_ms = {forward_timeout_ms}\n\
         replicas = {replicas}\ndurability = \"{durability}\"\ndurability_timeout_ms = {durability_timeout_ms}\n"
    );
    for node in &nodes[..nodes.len() - usize::from(rogue)] {
        text += &format!(
            "[[cluster.node]]\nid = \"{}\"\nclient = \"{}\"\npeer = \"{}\"\nadmin = \"{}\"\n",
            node.id, node.client, node.peer_map, node.admin
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run takes 4 ports a node, a soak hundreds: never one twice, none in the ephemeral range.
    #[test]
    fn ports_are_never_handed_out_twice() {
        let (low, high) = fixed_port_range();
        let ports: Vec<u16> = (0..400).map(|_| free_port().expect("a free port")).collect();
        assert_eq!(ports.iter().collect::<HashSet<_>>().len(), ports.len());
        assert!(ports.iter().all(|p| (low..high).contains(p)), "{low}..{high}: {ports:?}");
    }
}

