//! The fault proxy: a userspace TCP proxy in front of each node's peer port.
//!
//! The cluster file's `peer` address of node B is the proxy's; B itself listens elsewhere
//! (`--peer-listen`). Every node dials B's peer address from the same file (the map's
//! checksum covers the addresses, so the files must be the same), so one listener per
//! destination takes all of B's incoming links; the proxy learns which node dialled from
//! the link's first frame, the HELLO, whose key is the initiator's node id (sent in the
//! clear, `protocol-spec/peer-protocol.md`). Faults apply to the bytes flowing from one node
//! to another (a directed flow), on every connection between the two.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::rng::Rng;

/// What happens to the bytes flowing from one node to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkFault {
    /// Connections are closed and new ones refused (a firewall's REJECT).
    Cut,
    /// Nothing is read or passed on (a one-way partition: TCP would retransmit until it heals).
    Hold,
    /// Each chunk waits this long before it is passed on.
    Delay(Duration),
    /// Each chunk, with this probability in percent, waits 200-500 ms: what retransmissions
    /// after losses look like from above TCP.
    Lossy(u8),
}

#[derive(Default)]
pub struct Faults {
    flows: Mutex<HashMap<(usize, usize), LinkFault>>,
    pub stop: AtomicBool,
}

impl Faults {
    pub fn get(&self, from: usize, to: usize) -> Option<LinkFault> {
        self.flows.lock().ok().and_then(|f| f.get(&(from, to)).copied())
    }

    pub fn set(&self, from: usize, to: usize, fault: LinkFault) {
        if let Ok(mut f) = self.flows.lock() {
            f.insert((from, to), fault);
        }
    }

    pub fn heal(&self) {
        if let Ok(mut f) = self.flows.lock() {
            f.clear();
        }
    }
}

/// Starts the proxy for destination `to` on `listen`, forwarding to `upstream`.
pub fn start(listen: SocketAddr, upstream: SocketAddr, to: usize, ids: Vec<String>, faults: Arc<Faults>) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    thread::Builder::new().name(format!("proxy-{}", ids[to])).spawn(move || {
        let mut seed = to as u64;
        while !faults.stop.load(Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    seed += 1000;
                    let (faults, ids) = (faults.clone(), ids.clone());
                    let _ = thread::Builder::new().name("proxy-link".into()).spawn(move || {
                        let _ = serve(stream, upstream, to, &ids, faults, seed);
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(10)),
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    })?;
    Ok(())
}

fn serve(client: TcpStream, upstream: SocketAddr, to: usize, ids: &[String], faults: Arc<Faults>, seed: u64) -> io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(Duration::from_secs(2)))?;
    let (hello, from_id) = read_hello(&client)?;
    let Some(from) = ids.iter().position(|id| id.as_bytes() == from_id.as_slice()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "a HELLO from an unknown node"));
    };
    if faults.get(from, to) == Some(LinkFault::Cut) || faults.get(to, from) == Some(LinkFault::Cut) {
        return client.shutdown(Shutdown::Both);
    }
    let server = TcpStream::connect_timeout(&upstream, Duration::from_secs(1))?;
    server.set_nodelay(true)?;
    client.set_nodelay(true)?;
    (&server).write_all(&hello)?;
    let (c2, s2) = (client.try_clone()?, server.try_clone()?);
    let f2 = faults.clone();
    thread::Builder::new().name("proxy-pump".into()).spawn(move || pump(s2, c2, (to, from), f2, seed + 1))?;
    pump(client, server, (from, to), faults, seed);
    Ok(())
}

/// Reads the link's first frame (a HELLO: 24-byte header, extras, key = the initiator's id).
fn read_hello(mut s: &TcpStream) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut header = [0u8; 24];
    s.read_exact(&mut header)?;
    let key_len = u16::from_be_bytes([header[2], header[3]]) as usize;
    let extras_len = header[4] as usize;
    let body_len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    if header[0] != 0x80 || body_len > 4096 || extras_len + key_len > body_len {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a HELLO"));
    }
    let mut body = vec![0u8; body_len];
    s.read_exact(&mut body)?;
    let id = body[extras_len..extras_len + key_len].to_vec();
    let mut frame = header.to_vec();
    frame.extend_from_slice(&body);
    Ok((frame, id))
}

/// Passes bytes from `src` to `dst` (the flow `flow`) under its fault, until either end closes.
fn pump(mut src: TcpStream, mut dst: TcpStream, flow: (usize, usize), faults: Arc<Faults>, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let _ = src.set_read_timeout(Some(Duration::from_millis(20)));
    while !faults.stop.load(Relaxed) {
        let fault = faults.get(flow.0, flow.1);
        match fault {
            Some(LinkFault::Cut) => break,
            Some(LinkFault::Hold) => {
                thread::sleep(Duration::from_millis(20));
                continue;
            }
            _ => {}
        }
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        match fault {
            Some(LinkFault::Delay(d)) => thread::sleep(d),
            Some(LinkFault::Lossy(pct)) if rng.below(100) < pct as u64 => {
                thread::sleep(Duration::from_millis(200 + rng.below(300)));
            }
            _ => {}
        }
        if dst.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = src.shutdown(Shutdown::Both);
    let _ = dst.shutdown(Shutdown::Both);
}
