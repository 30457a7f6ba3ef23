//! systemd's readiness protocol (`sd_notify`): one datagram per state change to the unix
//! socket named by `$NOTIFY_SOCKET`, when there is one (under `Type=notify`). A path
//! starting with `@` names a socket in the abstract namespace. Without the variable every
//! call does nothing, so the server runs the same outside systemd.
//!
//! The server sends `STATUS=` while it starts and recovers (with `EXTEND_TIMEOUT_USEC=` once a
//! second while recovery runs), `READY=1` once the listeners are
//! bound and every shard is recovered, `RELOADING=1` … `READY=1` around a SIGHUP reload,
//! and `STOPPING=1` when it starts to stop.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (newline-separated `KEY=value` lines) to systemd; failures are logged at
/// debug and otherwise ignored, as a missing manager must never stop the server.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    if let Err(e) = send(&path, state) {
        log::debug!("sd_notify to {}: {e}", path.to_string_lossy());
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

pub fn status(text: &str) {
    notify(&format!("STATUS={text}"));
}

/// A recovery still running after `secs` seconds: says so, and pushes systemd's start
/// timeout 5 s further, so a long recovery that makes progress is not killed as a hung start.
pub fn recovering(secs: u64) {
    notify(&format!("STATUS=recovering, {secs} s so far\nEXTEND_TIMEOUT_USEC=5000000"));
}

pub fn ready(status: &str) {
    notify(&format!("READY=1\nSTATUS={status}\nMAINPID={}", std::process::id()));
}

pub fn reloading() {
    // MONOTONIC_USEC lets `Type=notify-reload` units match the reload (systemd >= 253).
    let mut ts: libc::timespec = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the struct we pass and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}

pub fn stopping() {
    notify("STOPPING=1\nSTATUS=stopping");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_and_to_an_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("caskade-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
