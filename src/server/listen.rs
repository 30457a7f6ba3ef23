//! The data port's listening sockets: `-l` resolved to its addresses, each checked before
//! start-up touches the data directory, then one SO_REUSEPORT listener per core and address
//! once the shards are recovered.
//!
//! A host name listens on every address it resolves to, as memcached does (`-l localhost`:
//! `127.0.0.1` and `::1`). An address of a family this machine lacks (no IPv6) is skipped
//! with a warning when another one is left; a port in use on any of them is an error.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::ListenHost;

/// The addresses `host` resolves to on `port` that this machine can listen on, each checked
/// by a plain bind: an error names the first one in use. Nothing is left bound.
pub fn check(host: &ListenHost, port: u16) -> io::Result<Vec<SocketAddr>> {
    let resolved = host.resolve(port)?;
    let several = resolved.len() > 1;
    let mut usable = Vec::with_capacity(resolved.len());
    for addr in resolved {
        match probe(addr, several) {
            Ok(_) => usable.push(addr),
            Err(e) if several && unavailable(&e) => {
                log::warn!("-l {host}: not listening on {addr}: {e}");
            }
            Err(e) => return Err(cannot_listen(addr, e)),
        }
    }
    if usable.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("-l {host}: none of the addresses it resolves to is available here"),
        ));
    }
    Ok(usable)
}

/// `count` listeners on each of `addrs` (SO_REUSEPORT: the kernel spreads connections over
/// them), as `[core][address]`. A plain bind first makes sure no other process took the port
/// since [`check`], since SO_REUSEPORT would otherwise let us share it silently. Port 0 is
/// the port the first address got, on every address.
pub fn bind(addrs: &[SocketAddr], count: usize) -> io::Result<Vec<Vec<TcpListener>>> {
    let several = addrs.len() > 1;
    let mut port = None;
    let mut fixed = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let mut addr = addr;
        if let Some(p) = port {
            addr.set_port(p);
        }
        let probe = probe(addr, several).map_err(|e| cannot_listen(addr, e))?;
        if addr.port() == 0 {
            addr = probe.local_addr()?.as_socket().unwrap_or(addr);
        }
        port = Some(addr.port());
        fixed.push(addr);
    }
    (0..count)
        .map(|_| {
            fixed
                .iter()
                .map(|&addr| {
                    let socket = socket(addr, several)?;
                    socket.set_reuse_port(true)?;
                    socket.set_nonblocking(true)?;
                    socket.bind(&addr.into()).map_err(|e| cannot_listen(addr, e))?;
                    socket.listen(1024)?;
                    Ok(socket.into())
                })
                .collect()
        })
        .collect()
}

/// A plain bind (SO_REUSEADDR only, so that connections of a previous run in TIME_WAIT do
/// not count): it fails if any other socket listens there.
fn probe(addr: SocketAddr, several: bool) -> io::Result<Socket> {
    let socket = socket(addr, several)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// A TCP socket for `addr` with SO_REUSEADDR; an IPv6 one listens on IPv6 only when `-l`
/// gave several addresses (`::` alone keeps Linux's dual stack).
fn socket(addr: SocketAddr, several: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if several && addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

/// The machine has no such address or family: skipped when `-l` resolved to others too.
fn unavailable(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::AddrNotAvailable || e.raw_os_error() == Some(libc::EAFNOSUPPORT)
}

fn cannot_listen(addr: SocketAddr, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_addresses_share_the_first_one_s_port() {
        // Linux answers on all of 127.0.0.0/8: two addresses, as a host name may give.
        let addrs: Vec<SocketAddr> = vec!["127.0.0.1:0".parse().unwrap(), "127.0.0.2:0".parse().unwrap()];
        let cores = bind(&addrs, 2).unwrap();
        assert_eq!(cores.len(), 2);
        let port = cores[0][0].local_addr().unwrap().port();
        for core in &cores {
            let got: Vec<SocketAddr> = core.iter().map(|l| l.local_addr().unwrap()).collect();
            assert_eq!(got, vec![SocketAddr::new(addrs[0].ip(), port), SocketAddr::new(addrs[1].ip(), port)]);
        }
        // Taken now, on either address: `check` names the first one in use.
        let host: ListenHost = "127.0.0.2".parse().unwrap();
        let err = check(&host, port).unwrap_err().to_string();
        assert!(err.contains(&format!("cannot listen on 127.0.0.2:{port}")), "{err}");
    }
}
