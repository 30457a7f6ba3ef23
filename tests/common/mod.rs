//! Harness for integration tests: start a real server process on a free loopback port, wait
//! until it answers a binary-protocol NOOP, and stop it with SIGTERM when the test is done.
//!
//! By default the server is the `caskade` binary that cargo built for this test run. With
//! `CASKADE_TEST_SERVER=memcached` in the environment the same tests run against Debian's
//! memcached (`/usr/bin/memcached`), which takes the same flags; that is how the tests
//! themselves are checked against the reference implementation.
//!
//! The server's stdout and stderr go to a temporary log file. When a test panics while a
//! `Server` is alive, the log is printed so that the failure comes with the server's side of
//! the story; otherwise the file is removed.

#![allow(dead_code)]

pub mod cluster;

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Environment variable that picks the server implementation under test.
pub const SERVER_ENV: &str = "CASKADE_TEST_SERVER";

const MEMCACHED_PATH: &str = "/usr/bin/memcached";
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// How often readiness is probed, and for how long, before giving up.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(10);
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server gets to exit after SIGTERM before it is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// A server that exits before it is ready may have lost a race for its port; it is started
/// again on a fresh port this many times in all before the test fails.
const START_ATTEMPTS: usize = 3;

/// Binary protocol constants used by the readiness probe.
const HEADER_LEN: usize = 24;
const MAGIC_REQUEST: u8 = 0x80;
const MAGIC_RESPONSE: u8 = 0x81;
const OPCODE_NOOP: u8 = 0x0a;

/// Which server implementation the tests run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    Caskade,
    Memcached,
}

impl ServerKind {
    /// Reads `CASKADE_TEST_SERVER`: unset, empty or `caskade` means caskade, `memcached`
    /// means Debian's memcached. Anything else is a mistake and panics.
    pub fn from_env() -> ServerKind {
        match std::env::var(SERVER_ENV) {
            Err(_) => ServerKind::Caskade,
            Ok(v) if v.is_empty() || v == "caskade" => ServerKind::Caskade,
            Ok(v) if v == "memcached" => ServerKind::Memcached,
            Ok(v) => panic!("{SERVER_ENV}={v:?}: expected `caskade` or `memcached`"),
        }
    }

    fn program(self) -> PathBuf {
        match self {
            ServerKind::Caskade => PathBuf::from(env!("CARGO_BIN_EXE_caskade")),
            ServerKind::Memcached => PathBuf::from(MEMCACHED_PATH),
        }
    }

    /// Flags that one implementation needs and the other does not know or need.
    fn implementation_args(self) -> Vec<String> {
        match self {
            ServerKind::Caskade => Vec::new(),
            ServerKind::Memcached => {
                // No UDP listener; memcached also refuses to run as root without `-u`.
                let mut args = vec!["-U".to_string(), "0".to_string()];
                // SAFETY: geteuid has no preconditions and cannot fail.
                if unsafe { libc::geteuid() } == 0 {
                    args.extend(["-u".to_string(), "root".to_string()]);
                }
                args
            }
        }
    }
}

/// A running server process, stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
pub struct Server {
    child: Option<Child>,
    kind: ServerKind,
    port: u16,
    log_path: PathBuf,
    command_line: String,
    /// A data directory made for this server when the test named none; removed on drop.
    _data_dir: Option<tempfile::TempDir>,
    /// caskade's admin HTTP port (a free one unless the test passed `--admin`).
    admin_port: Option<u16>,
}

impl Server {
    /// Starts the server under test with `-l 127.0.0.1 -p PORT` plus `extra_args` (`-l HOST`
    /// among them replaces `-l 127.0.0.1`; HOST must include 127.0.0.1), and
    /// returns once it answers a binary NOOP. Panics with the server's output if it does
    /// not come up within 10 s.
    pub fn start(extra_args: &[&str]) -> Server {
        Server::start_kind(ServerKind::from_env(), extra_args, &[])
    }

    /// Starts caskade whatever `CASKADE_TEST_SERVER` says, with `env` added to its
    /// environment (for the tests of caskade's own operations: admin HTTP, systemd, reload).
    pub fn start_caskade(extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_kind(ServerKind::Caskade, extra_args, env)
    }

    pub fn start_kind(kind: ServerKind, extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            match Server::try_start(kind, extra_args, env) {
                Ok(server) => return server,
                Err(StartFailure::Exited(msg)) => last_failure = msg,
                Err(StartFailure::NotReady(msg)) => panic!("{msg}"),
            }
        }
        panic!("{last_failure}");
    }

    fn try_start(kind: ServerKind, extra_args: &[&str], env: &[(&str, &str)]) -> Result<Server, StartFailure> {
        let mut server = Server::spawn(kind, extra_args, env);
        server.wait_until_ready()?;
        Ok(server)
    }

    /// Starts caskade as [`start_caskade`](Self::start_caskade) does, but returns at once,
    /// without waiting for it to serve: for the tests of what happens before it does (a
    /// long recovery). [`wait_ready`](Self::wait_ready) waits for the rest.
    pub fn launch_caskade(extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::spawn(ServerKind::Caskade, extra_args, env)
    }

    /// Waits until a launched server answers a NOOP (up to `timeout`), or panics with its log.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                panic!("server exited with {status} before it served\n{}", self.describe());
            }
            if noop_round_trip(self.addr(), READY_POLL_INTERVAL * 10).is_ok() {
                return;
            }
            if Instant::now() >= deadline {
                panic!("server did not answer a NOOP within {timeout:?}\n{}", self.describe());
            }
            thread::sleep(READY_POLL_INTERVAL);
        }
    }

    /// The exit status once the process has exited by itself, polled every 10 ms for up to
    /// `timeout`; `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(READY_POLL_INTERVAL);
        }
    }

    fn spawn(kind: ServerKind, extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let log_path = log_path(port);
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("cannot create server log {}: {e}", log_path.display()));
        let log_for_stdout = log.try_clone().expect("cannot duplicate server log handle");

        let program = kind.program();
        let mut args: Vec<String> = vec!["-p".into(), port.to_string()];
        if !extra_args.iter().any(|a| *a == "-l" || *a == "--listen") {
            args.extend(["-l".to_string(), LOOPBACK.to_string()]);
        }
        args.extend(kind.implementation_args());
        args.extend(extra_args.iter().map(|a| a.to_string()));
        // Each caskade gets a data directory of its own unless the test chose one.
        let named = extra_args.iter().any(|a| *a == "--data-dir" || *a == "--in-memory");
        let data_dir = (kind == ServerKind::Caskade && !named)
            .then(|| tempfile::tempdir().expect("cannot create a temporary data directory"));
        if let Some(dir) = &data_dir {
            args.extend(["--data-dir".to_string(), dir.path().display().to_string()]);
        }
        // The admin port: the test's, or a free one (the default, 11212, would be shared by
        // every server of the run).
        let admin_port = match extra_args.iter().position(|a| *a == "--admin") {
            Some(i) => extra_args.get(i + 1).and_then(|a| a.rsplit(':').next()?.parse().ok()),
            None if kind == ServerKind::Caskade => {
                let port = free_port();
                args.extend(["--admin".to_string(), format!("{LOOPBACK}:{port}")]);
                Some(port)
            }
            None => None,
        };
        let command_line = format!("{} {}", program.display(), args.join(" "));

        let child = Command::new(&program)
            .args(&args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_for_stdout))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn `{command_line}`: {e}"));

        Server { child: Some(child), kind, port, log_path, command_line, _data_dir: data_dir, admin_port }
    }

    /// Probes every 10 ms until a NOOP is answered; fails early if the process exits.
    fn wait_until_ready(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.try_wait() {
                return Err(StartFailure::Exited(format!(
                    "server exited with {status} before it was ready\n{}",
                    self.describe()
                )));
            }
            match noop_round_trip(self.addr(), READY_POLL_INTERVAL * 10) {
                Ok(()) => {
                    // The answer must have come from our process, not from one that held
                    // the port while ours failed to bind.
                    if let Some(status) = self.try_wait() {
                        return Err(StartFailure::Exited(format!(
                            "server exited with {status} right after a NOOP was answered \
                             on its port\n{}",
                            self.describe()
                        )));
                    }
                    return Ok(());
                }
                Err(last_error) if Instant::now() >= deadline => {
                    let msg = format!(
                        "server did not answer a binary NOOP within {READY_TIMEOUT:?} \
                         (last probe: {last_error})\n{}",
                        self.describe()
                    );
                    self.kill_now();
                    return Err(StartFailure::NotReady(msg));
                }
                Err(_) => {}
            }
            thread::sleep(READY_POLL_INTERVAL);
        }
    }

    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((LOOPBACK, self.port))
    }

    /// `127.0.0.1:PORT`, the form client libraries take.
    pub fn host_port(&self) -> String {
        self.addr().to_string()
    }

    /// caskade's admin HTTP address, `127.0.0.1:PORT`.
    pub fn admin(&self) -> String {
        format!("{LOOPBACK}:{}", self.admin_port.expect("this server has no admin port"))
    }

    /// `GET path` on the admin port: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build(),
        );
        let url = format!("http://{}{path}", self.admin());
        let mut response = agent.get(&url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_else(|e| panic!("GET {url}: body: {e}"));
        (status, body)
    }

    /// `GET path` on the admin port, or `None` while nothing listens there yet.
    pub fn try_http_get(&self, path: &str) -> Option<(u16, String)> {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build(),
        );
        let mut response = agent.get(&format!("http://{}{path}", self.admin())).call().ok()?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().ok()?;
        Some((status, body))
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: `pid` is our own child, not yet reaped, so it names that process.
        unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
    }

    /// Polls `check` every 10 ms until it is true; panics with the server's log after
    /// `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !check() {
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for {what}\n{}", self.describe());
            }
            thread::sleep(READY_POLL_INTERVAL);
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server already stopped").id()
    }

    /// Everything the server has written to stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log_path.display()))
    }

    /// Sends SIGTERM and waits for the exit status. A server still running after 5 s is
    /// SIGKILLed, and the status then says so; tests assert `status.success()`.
    pub fn stop(mut self) -> ExitStatus {
        let status = self.terminate();
        if !status.success() {
            eprintln!("server stopped with {status}\n{}", self.describe());
        }
        status
    }

    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server already stopped");
        if let Some(status) = child.try_wait().expect("try_wait on server") {
            return status;
        }
        let pid = child.id() as libc::pid_t;
        // SAFETY: `pid` is our own child, not yet reaped, so it names that process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("try_wait on server") {
                return status;
            }
            thread::sleep(READY_POLL_INTERVAL);
        }
        eprintln!("server pid {pid} still running {STOP_TIMEOUT:?} after SIGTERM; sending SIGKILL");
        let _ = child.kill();
        child.wait().expect("wait on killed server")
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("try_wait on server"))
    }

    /// SIGKILL, now (a crash), and waits for the process to be gone.
    pub fn kill(&mut self) {
        self.kill_now();
    }

    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn describe(&self) -> String {
        format!(
            "command: {}\n--- server output ({}) ---\n{}\n--- end of server output ---",
            self.command_line,
            self.log_path.display(),
            self.log()
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
        if thread::panicking() {
            eprintln!(
                "test failed while this server was running:\n{}",
                self.describe()
            );
        } else {
            let _ = fs::remove_file(&self.log_path);
        }
    }
}

enum StartFailure {
    /// The process exited: worth another try on a fresh port.
    Exited(String),
    /// The process runs but does not answer: a real failure.
    NotReady(String),
}

/// A loopback port that was free a moment ago and that no other test in this process has
/// been given.
///
/// Chosen below the kernel's ephemeral range: a port the OS hands out on its own (an
/// outgoing connection, or a node told `-p 0`) can then never take a port given here in
/// the moment between this check and the server's bind (a CI run once lost a peer port that
/// way).
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    let (low, high) = fixed_port_range();
    let span = u64::from(high - low);
    // Spread test binaries over the range so one does not meet another's lingering ports.
    let mut next = u64::from(std::process::id()).wrapping_mul(2_654_435_761) ^ std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    for _ in 0..10_000 {
        next = next.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let port = low + ((next >> 33) % span) as u16;
        if handed_out.contains(&port) {
            continue;
        }
        if TcpListener::bind((LOOPBACK, port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high}");
}

/// Ports below the kernel's ephemeral range (`ip_local_port_range`), above the well-known ones.
fn fixed_port_range() -> (u16, u16) {
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|w| w.parse::<u16>().ok()))
        .unwrap_or(32768);
    if ephemeral_low > 12_000 {
        (10_000, ephemeral_low)
    } else {
        (ephemeral_low.saturating_sub(8_000).max(2_000), ephemeral_low)
    }
}

fn log_path(port: u16) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "caskade-test-{}-{}-{}.log",
        std::process::id(),
        port,
        n
    ))
}

/// The Python that runs the client scripts: `$CASKADE_PYTHON` (the virtual environment
/// `tools/test.sh` makes), else `python3` from the PATH.
pub fn python() -> std::ffi::OsString {
    std::env::var_os("CASKADE_PYTHON").filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into())
}

/// Connects, sends one binary NOOP and reads one 24-byte response header.
pub fn noop_round_trip(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("set timeout: {e}"))?;
    let mut request = [0u8; HEADER_LEN];
    request[0] = MAGIC_REQUEST;
    request[1] = OPCODE_NOOP;
    request[12..16].copy_from_slice(&0xC0FF_EE00u32.to_be_bytes()); // opaque
    stream
        .write_all(&request)
        .map_err(|e| format!("send NOOP: {e}"))?;
    let mut response = [0u8; HEADER_LEN];
    stream
        .read_exact(&mut response)
        .map_err(|e| format!("read NOOP response: {e}"))?;
    if response[0] != MAGIC_RESPONSE || response[1] != OPCODE_NOOP {
        return Err(format!("unexpected NOOP response header {response:02x?}"));
    }
    Ok(())
}

/// Runs `command` with stdout and stderr captured, killing it if it runs past `timeout`.
/// Returns the exit status (None if it was killed) and stdout followed by stderr.
pub fn run_with_timeout(command: &mut Command, timeout: Duration) -> (Option<ExitStatus>, String) {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {description}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(READY_POLL_INTERVAL);
    };
    let mut output = stdout.join().expect("stdout reader");
    let err = stderr.join().expect("stderr reader");
    if !err.is_empty() {
        output.push_str("--- stderr ---\n");
        output.push_str(&err);
    }
    (status, output)
}

fn drain<R: Read + Send + 'static>(mut source: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = source.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// SIGSTOP, and wait until every thread of the process has stopped (the signal is delivered
/// asynchronously: a thread in the middle of a turn may finish it, and answer, first).
pub fn sigstop(server: &Server) {
    server.signal(libc::SIGSTOP);
    let tasks = format!("/proc/{}/task", server.pid());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stopped = std::fs::read_dir(&tasks).is_ok_and(|dir| {
            dir.flatten().all(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
            })
        });
        if stopped {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "pid {} not stopped within 10 s", server.pid());
        std::thread::sleep(Duration::from_millis(5));
    }
}
