//! The admin HTTP server: `--admin ADDR:PORT` (default `127.0.0.1:11212`, `off` to disable).
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /stats` | JSON: every counter, the settings, latency percentiles per command (µs) |
//! | `GET /metrics` | Prometheus text exposition format 0.0.4, names prefixed `caskade_` |
//! | `GET /health` | 200 `serving` once the node serves; 503 `starting`, `recovering` or `stopping` |
//! | `GET /dump` | every live item in the dump format (`crate::dump`), streamed core by core |
//! | another path | 404; another method on these paths: 405; a malformed request: 400 |
//!
//! HTTP is tiny_http's: this module only routes. The server runs on threads of its own and
//! reaches the cores only by message ([`crate::server::Handle`]), so nothing it does can
//! stall the data path for longer than a core takes to copy its histograms or one dump
//! chunk. It starts before recovery, so `/health` can say `recovering`.

mod dump_stream;
mod json;
pub mod metrics;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

use crate::server::{Handle, Lifecycle, Phase};

/// How long a request waits for the cores' answers (histograms, a dump chunk).
pub const CORE_TIMEOUT: Duration = Duration::from_secs(2);

/// The running admin server; stopped when dropped.
pub struct Admin {
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
    pub addr: SocketAddr,
}

/// Binds `addr` and serves on a thread of its own.
pub fn start(addr: SocketAddr, life: Arc<Lifecycle>) -> io::Result<Admin> {
    let server = Server::http(addr)
        .map_err(|e| io::Error::new(io::ErrorKind::AddrInUse, format!("admin: cannot listen on {addr}: {e}")))?;
    let server = Arc::new(server);
    let bound = server.server_addr().to_ip().unwrap_or(addr);
    let dumping = Arc::new(AtomicBool::new(false));
    let thread = {
        let server = server.clone();
        std::thread::Builder::new().name("caskade-admin".into()).spawn(move || {
            for request in server.incoming_requests() {
                serve(request, &life, &dumping);
            }
        })?
    };
    Ok(Admin { server, thread: Some(thread), addr: bound })
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("ASCII header")
}

fn text(status: u16, body: impl Into<String>) -> Response<io::Cursor<Vec<u8>>> {
    Response::from_string(body.into())
        .with_status_code(StatusCode(status))
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

fn serve(request: Request, life: &Arc<Lifecycle>, dumping: &Arc<AtomicBool>) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let known = matches!(path.as_str(), "/stats" | "/metrics" | "/health" | "/dump" | "/cluster/verify");
    if !known {
        let _ = request.respond(text(404, "not found: try /stats, /metrics, /health or /dump\n"));
        return;
    }
    if *request.method() != Method::Get && *request.method() != Method::Head {
        let _ = request.respond(text(405, "only GET\n").with_header(header("Allow", "GET, HEAD")));
        return;
    }
    if path == "/health" {
        let phase = life.phase();
        let code = if phase == Phase::Serving { 200 } else { 503 };
        let _ = request.respond(text(code, format!("{}\n", phase.name())));
        return;
    }
    let Some(handle) = life.handle().filter(|_| life.phase() == Phase::Serving).cloned() else {
        let _ = request.respond(text(503, format!("{}\n", life.phase().name())));
        return;
    };
    match path.as_str() {
        "/stats" => {
            let body = json::stats(&handle, life.phase());
            let _ = request.respond(
                Response::from_string(body).with_header(header("Content-Type", "application/json")),
            );
        }
        "/metrics" => {
            let body = metrics::render(&handle);
            let _ = request.respond(
                Response::from_string(body).with_header(header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")),
            );
        }
        "/dump" => dump(request, handle, dumping),
        "/cluster/verify" => {
            // A new verification round: every stream from this node compares its partitions'
            // digests with its backup's once it has sent all it has (`stats cluster`:
            // `node:ID:repl_verified_round` reaches this round, `repl_mismatches` counts).
            let answer = match handle.node.cluster.as_deref() {
                Some(c) if c.map.replicas() > 0 => text(200, format!("round {}\n", c.verify_requested.fetch_add(1, SeqCst) + 1)),
                _ => text(409, "no backups to verify (not a cluster, or replicas = 0)\n"),
            };
            let _ = request.respond(answer);
        }
        _ => unreachable!("routed above"),
    }
}

/// Streams a dump on a thread of its own, so that `/health` and `/metrics` still answer
/// during a long one; one dump at a time.
fn dump(request: Request, handle: Arc<Handle>, dumping: &Arc<AtomicBool>) {
    if dumping.swap(true, SeqCst) {
        let _ = request.respond(text(409, "a dump is already running\n"));
        return;
    }
    let flag = dumping.clone();
    let spawned = std::thread::Builder::new().name("caskade-dump".into()).spawn(move || {
        let stream = dump_stream::DumpStream::new(handle.clone());
        let items = stream.expected_items();
        let response = Response::new(
            StatusCode(200),
            vec![
                header("Content-Type", "application/octet-stream"),
                header("X-Caskade-Items", &items.to_string()),
            ],
            stream,
            None,
            None,
        );
        if let Err(e) = request.respond(response) {
            log::warn!("admin: dump not completed: {e}");
        }
        flag.store(false, SeqCst);
    });
    if let Err(e) = spawned {
        dumping.store(false, SeqCst);
        log::warn!("admin: cannot start a dump thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(5))).build(),
        );
        let mut r = agent.get(&format!("http://{addr}{path}")).call().unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }

    #[test]
    fn before_serving_health_says_why_and_the_rest_waits() {
        let life = Arc::new(Lifecycle::default());
        let admin = start("127.0.0.1:0".parse().unwrap(), life.clone()).unwrap();
        assert_eq!(get(admin.addr, "/health"), (503, "starting\n".into()));
        life.set_phase(Phase::Recovering);
        assert_eq!(get(admin.addr, "/health"), (503, "recovering\n".into()));
        assert_eq!(get(admin.addr, "/stats"), (503, "recovering\n".into()));
        assert_eq!(get(admin.addr, "/metrics").0, 503);
        assert_eq!(get(admin.addr, "/dump").0, 503);
        assert_eq!(get(admin.addr, "/elsewhere").0, 404);
        life.set_phase(Phase::Stopping);
        assert_eq!(get(admin.addr, "/health"), (503, "stopping\n".into()));
        drop(admin);
    }
}
