//! One thread's event loop: a `mio::Poll` over its connections. After every readable
//! event the responses are decoded and checked, then the connection is topped up to its
//! pipeline depth with one `write()`. The clock is read once per read and once per refill,
//! not per request.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use caskade::protocol::binary::{Opcode, Request, RequestExtras, Response, Status};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::conn::{Conn, Fault, InFlight, Op, Plan, ReadOutcome};
use crate::keys::{format_key, Rng, KEY_CAP};
use crate::text;
use crate::ycsb::{self, Chooser, YcsbOp};

const _: () = assert!(ycsb::KEY_LEN_MAX <= KEY_CAP);

/// After the deadline, how long answers to requests already sent are awaited.
const DRAIN: Duration = Duration::from_secs(2);
/// How often a rate-limited run looks for requests that became due.
const RATE_TICK: Duration = Duration::from_micros(200);

/// The longest the loop sleeps without looking at the clock.
const MAX_POLL_WAIT: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The histogram tracks 1 ns … 60 s with 3 significant digits.
const HIST_MAX_NS: u64 = 60_000_000_000;

/// What a thread counted. Requests lost with a connection, unanswered at the end, or
/// answered wrongly are errors; a GET miss is not.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub gets: u64,
    pub hits: u64,
    pub misses: u64,
    pub sets: u64,
    /// Responses with a status other than success (or, for GET, not-found).
    pub status_errors: u64,
    /// Frames that broke the protocol; the connection is dropped.
    pub protocol_errors: u64,
    /// Connections the server closed or reset.
    pub closed: u64,
    /// Requests in flight on a connection that was dropped.
    pub lost: u64,
    /// Requests still unanswered when the drain time ran out.
    pub timeouts: u64,
    /// Connections that could not be opened.
    pub connect_errors: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.gets += o.gets;
        self.hits += o.hits;
        self.misses += o.misses;
        self.sets += o.sets;
        self.status_errors += o.status_errors;
        self.protocol_errors += o.protocol_errors;
        self.closed += o.closed;
        self.lost += o.lost;
        self.timeouts += o.timeouts;
        self.connect_errors += o.connect_errors;
    }

    /// Requests answered (successfully or not).
    pub fn completed(&self) -> u64 {
        self.gets + self.sets
    }

    pub fn errors(&self) -> u64 {
        self.status_errors
            + self.protocol_errors
            + self.closed
            + self.lost
            + self.timeouts
            + self.connect_errors
    }
}

/// What the measured run sends.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    pub sets: u32,
    pub total: u32,
    pub keys: u64,
    /// `(K, T)`: only keys that caskade `-t T` places on core K.
    pub only_core: Option<(usize, usize)>,
}

/// One phase of the event loop.
#[derive(Clone, Copy, Debug)]
struct Phase {
    depth: usize,
    /// Stop sending at this instant.
    deadline: Instant,
    /// `Plan::Mix` connections stop sending when the thread has sent this many.
    budget: u64,
    /// Whether latencies go into the histogram.
    record: bool,
    /// `Plan::Mix` requests per second this thread may send, counted from `start`.
    rate: Option<f64>,
    start: Instant,
}

pub struct Worker {
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    rng: Rng,
    mix: Mix,
    /// YCSB's operation and key choice instead of `mix`'s (keys named YCSB's way).
    ycsb: Option<Chooser>,
    value: Vec<u8>,
    /// Speak the text protocol instead of the binary one.
    text: bool,
    pub hist: Histogram<u64>,
    pub counters: Counters,
}

impl Worker {
    /// Opens `n` connections to `addr`. Those that fail are counted, not fatal.
    pub fn connect(
        addr: SocketAddr,
        n: usize,
        depth: usize,
        mix: Mix,
        value_size: usize,
        seed: u64,
        text: bool,
    ) -> io::Result<Worker> {
        let poll = Poll::new()?;
        let mut counters = Counters::default();
        // A GET hit carries 4 bytes of flags and the value; room for a whole window.
        let frame = 24 + 8 + KEY_CAP + value_size;
        let rbuf_len = (frame * depth).clamp(64 << 10, 4 << 20);
        let wbuf_len = frame * depth;
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            match open(addr) {
                Ok(stream) => {
                    let mut conn = Conn::new(stream, depth, rbuf_len, wbuf_len);
                    let token = Token(conns.len());
                    poll.registry().register(
                        &mut conn.stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    conns.push(conn);
                }
                Err(e) => {
                    log::warn!("connect to {addr}: {e}");
                    counters.connect_errors += 1;
                }
            }
        }
        Ok(Worker {
            poll,
            events: Events::with_capacity(1024),
            conns,
            rng: Rng::new(seed),
            mix,
            ycsb: None,
            value: (0..value_size).map(|i| b'a' + (i % 26) as u8).collect(),
            text,
            hist: Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("static histogram bounds"),
            counters,
        })
    }

    /// Sends YCSB's operations and keys instead of `mix`'s.
    pub fn with_ycsb(mut self, chooser: Option<Chooser>) -> Worker {
        self.ycsb = chooser;
        self
    }

    /// Connections that were opened (some may have been dropped since).
    pub fn opened(&self) -> usize {
        self.conns.len()
    }

    /// SETs every key of `keys` once, the range split over this thread's connections.
    pub fn prefill(&mut self, keys: std::ops::Range<u64>, depth: usize, timeout: Duration) {
        let live: Vec<usize> = (0..self.conns.len())
            .filter(|&i| self.conns[i].alive)
            .collect();
        let n = live.len() as u64;
        let span = keys.end - keys.start;
        for (j, &i) in live.iter().enumerate() {
            let j = j as u64;
            let start = keys.start + span * j / n;
            let end = keys.start + span * (j + 1) / n;
            self.conns[i].plan = Plan::Range { next: start, end };
        }
        let phase = Phase {
            depth,
            deadline: Instant::now() + timeout,
            budget: 0,
            record: false,
            rate: None,
            start: Instant::now(),
        };
        self.run(phase);
        for c in &mut self.conns {
            if let Plan::Range { next, end } = c.plan {
                // Keys never sent: the phase timed out or the connection died.
                self.counters.timeouts += end - next;
            }
            c.plan = Plan::Mix;
        }
    }

    /// The measured run: random keys and operations until `duration` or `budget` requests.
    /// With `rate`, at most that many requests per second (from this thread).
    pub fn measure(&mut self, depth: usize, duration: Duration, budget: u64, rate: Option<f64>) {
        let phase = Phase {
            depth,
            deadline: Instant::now() + duration,
            budget,
            record: true,
            rate,
            start: Instant::now(),
        };
        self.run(phase);
    }

    fn run(&mut self, phase: Phase) {
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        let drain_deadline = phase.deadline + DRAIN;
        let mut issued = 0u64;
        let now = Instant::now();
        for i in 0..self.conns.len() {
            self.top_up(i, &phase, &mut issued, now);
        }
        loop {
            let now = Instant::now();
            let sending = now < phase.deadline;
            let busy = self.conns.iter().any(|c| {
                c.alive
                    && (!c.inflight.is_empty()
                        || sending
                            && match c.plan {
                                Plan::Mix => issued < phase.budget,
                                Plan::Range { next, end } => next < end,
                            })
            });
            if !busy {
                break;
            }
            if now >= drain_deadline {
                for c in &mut self.conns {
                    if c.alive {
                        self.counters.timeouts += c.inflight.len() as u64;
                        c.inflight.clear();
                    }
                }
                break;
            }
            let until = if sending {
                phase.deadline
            } else {
                drain_deadline
            };
            let mut wait = until.saturating_duration_since(now).min(MAX_POLL_WAIT);
            if phase.rate.is_some() {
                // Requests become due with time, not only with replies.
                wait = wait.min(RATE_TICK);
            }
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("poll: {e}");
                break;
            }
            for event in events.iter() {
                let i = event.token().0;
                if !self.conns[i].alive {
                    continue;
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    if let Err(fault) = self.on_readable(i, &phase) {
                        self.drop_conn(i, fault);
                        continue;
                    }
                }
                if event.is_writable() {
                    if let Err(fault) = self.conns[i].flush() {
                        self.drop_conn(i, fault);
                        continue;
                    }
                }
                self.top_up(i, &phase, &mut issued, Instant::now());
            }
            if phase.rate.is_some() {
                let now = Instant::now();
                for i in 0..self.conns.len() {
                    self.top_up(i, &phase, &mut issued, now);
                }
            }
        }
        self.events = events;
    }

    /// Reads until the socket is drained, decoding and checking every whole response.
    fn on_readable(&mut self, i: usize, phase: &Phase) -> Result<(), Fault> {
        loop {
            let conn = &mut self.conns[i];
            match conn.read_some() {
                ReadOutcome::Closed => return Err(Fault::Closed),
                ReadOutcome::WouldBlock => return Ok(()),
                ReadOutcome::Data { drained } => {
                    let now = Instant::now();
                    let hist = phase.record.then_some(&mut self.hist);
                    if self.text {
                        decode_text_responses(conn, &mut self.counters, hist, now)?;
                    } else {
                        decode_responses(conn, &mut self.counters, hist, now)?;
                    }
                    if drained {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Encodes requests until `depth` are in flight and sends them with one write.
    fn top_up(&mut self, i: usize, phase: &Phase, issued: &mut u64, now: Instant) {
        let sending = now < phase.deadline;
        let conn = &mut self.conns[i];
        if !conn.alive || !sending {
            return;
        }
        let mut key = [0u8; KEY_CAP];
        let mut queued = false;
        while conn.inflight.len() < phase.depth {
            let (op, k, then_set) = match &mut conn.plan {
                Plan::Range { next, end } => {
                    if *next >= *end {
                        break;
                    }
                    *next += 1;
                    (Op::Set, *next - 1, None)
                }
                Plan::Mix => {
                    if *issued >= phase.budget {
                        break;
                    }
                    if phase.rate.is_some_and(|r| *issued as f64 >= r * now.duration_since(phase.start).as_secs_f64()) {
                        break;
                    }
                    *issued += 1;
                    if let Some(k) = conn.due_sets.pop_front() {
                        (Op::Set, k, None)
                    } else if let Some(chooser) = &mut self.ycsb {
                        match chooser.next(&mut self.rng) {
                            YcsbOp::Read(k) => (Op::Get, k, None),
                            YcsbOp::Update(k) | YcsbOp::Insert(k) => (Op::Set, k, None),
                            YcsbOp::ReadModifyWrite(k) => (Op::Get, k, Some(k)),
                        }
                    } else {
                        let op = if self.rng.below(self.mix.total as u64) < self.mix.sets as u64 {
                            Op::Set
                        } else {
                            Op::Get
                        };
                        // Rejection sampling, bounded: a key space with no key on that core
                        // falls back to any key rather than spinning.
                        let mut k = self.rng.below(self.mix.keys);
                        if let Some((core, cores)) = self.mix.only_core {
                            for _ in 0..64 * cores {
                                let len = format_key(k, &mut key);
                                if caskade::cluster::core_of(&key[..len], cores) == core {
                                    break;
                                }
                                k = self.rng.below(self.mix.keys);
                            }
                        }
                        (op, k, None)
                    }
                }
            };
            let key_len = if self.ycsb.is_some() { ycsb::format_key(k, &mut key) } else { format_key(k, &mut key) };
            let opaque = conn.take_opaque();
            if self.text {
                match op {
                    Op::Get => text::encode_get(&mut conn.wbuf, &key[..key_len]),
                    Op::Set => text::encode_set(&mut conn.wbuf, &key[..key_len], &self.value),
                }
                conn.inflight.push_back(InFlight { opaque, op, sent: now, then_set });
                queued = true;
                continue;
            }
            let (opcode, extras, value) = match op {
                Op::Get => (Opcode::Get, RequestExtras::None, &[][..]),
                Op::Set => (
                    Opcode::Set,
                    RequestExtras::Store {
                        flags: 0,
                        exptime: 0,
                    },
                    &self.value[..],
                ),
            };
            Request {
                opcode,
                data_type: 0,
                vbucket: 0,
                opaque,
                cas: 0,
                extras,
                key: &key[..key_len],
                value,
                durability: None,
            }
            .encode(&mut conn.wbuf);
            conn.inflight.push_back(InFlight {
                opaque,
                op,
                sent: now,
                then_set,
            });
            queued = true;
        }
        if queued {
            if let Err(fault) = conn.flush() {
                self.drop_conn(i, fault);
            }
        }
    }

    fn drop_conn(&mut self, i: usize, fault: Fault) {
        let conn = &mut self.conns[i];
        if !conn.alive {
            return;
        }
        conn.alive = false;
        match fault {
            Fault::Closed => self.counters.closed += 1,
            Fault::Protocol => self.counters.protocol_errors += 1,
        }
        self.counters.lost += conn.inflight.len() as u64;
        conn.inflight.clear();
        if let Err(e) = self.poll.registry().deregister(&mut conn.stream) {
            log::debug!("deregister: {e}");
        }
        let _ = conn.stream.shutdown(std::net::Shutdown::Both);
    }
}

fn open(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(TcpStream::from_std(stream))
}

/// Decodes every whole response in the read buffer and checks it against the request at
/// the head of the in-flight queue: responses to non-quiet requests come back in order.
fn decode_responses(
    conn: &mut Conn,
    counters: &mut Counters,
    mut hist: Option<&mut Histogram<u64>>,
    now: Instant,
) -> Result<(), Fault> {
    loop {
        let (resp, used) = match Response::decode(&conn.rbuf[conn.rstart..conn.rend]) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => {
                log::warn!("undecodable response: {e:?}");
                return Err(Fault::Protocol);
            }
        };
        let Some(req) = conn.inflight.pop_front() else {
            log::warn!(
                "response with opaque {} and no request in flight",
                resp.opaque
            );
            return Err(Fault::Protocol);
        };
        let expected = match req.op {
            Op::Get => Opcode::Get,
            Op::Set => Opcode::Set,
        };
        if resp.opaque != req.opaque || resp.opcode != expected {
            log::warn!(
                "response {:?}/opaque {} does not answer {:?}/opaque {}",
                resp.opcode,
                resp.opaque,
                expected,
                req.opaque
            );
            return Err(Fault::Protocol);
        }
        if let Some(h) = hist.as_deref_mut() {
            h.saturating_record(now.saturating_duration_since(req.sent).as_nanos() as u64);
        }
        match (req.op, resp.status) {
            (Op::Get, Status::NoError) if resp.extras.len() == 4 => {
                counters.gets += 1;
                counters.hits += 1;
                conn.due_sets.extend(req.then_set);
            }
            (Op::Get, Status::KeyNotFound) => {
                counters.gets += 1;
                counters.misses += 1;
                conn.due_sets.extend(req.then_set);
            }
            (Op::Get, status) => {
                counters.gets += 1;
                counters.status_errors += 1;
                log::debug!("GET answered {status:?}");
            }
            (Op::Set, Status::NoError) => counters.sets += 1,
            (Op::Set, status) => {
                counters.sets += 1;
                counters.status_errors += 1;
                log::debug!("SET answered {status:?}");
            }
        }
        conn.rstart += used;
    }
}

/// The text protocol's replies, in request order (text replies carry no opaque).
fn decode_text_responses(
    conn: &mut Conn,
    counters: &mut Counters,
    mut hist: Option<&mut Histogram<u64>>,
    now: Instant,
) -> Result<(), Fault> {
    loop {
        let Some(req) = conn.inflight.front().copied() else {
            if conn.rstart < conn.rend {
                log::warn!("text reply with no request in flight");
                return Err(Fault::Protocol);
            }
            return Ok(());
        };
        let (reply, used) = match text::decode(&conn.rbuf[conn.rstart..conn.rend], req.op == Op::Get) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(()) => {
                log::warn!("undecodable text reply");
                return Err(Fault::Protocol);
            }
        };
        conn.inflight.pop_front();
        if let Some(h) = hist.as_deref_mut() {
            h.saturating_record(now.saturating_duration_since(req.sent).as_nanos() as u64);
        }
        match (req.op, reply) {
            (Op::Get, text::Reply::Hit) => {
                counters.gets += 1;
                counters.hits += 1;
                conn.due_sets.extend(req.then_set);
            }
            (Op::Get, text::Reply::Miss) => {
                counters.gets += 1;
                counters.misses += 1;
                conn.due_sets.extend(req.then_set);
            }
            (Op::Set, text::Reply::Stored) => counters.sets += 1,
            (Op::Get, _) => {
                counters.gets += 1;
                counters.status_errors += 1;
            }
            (Op::Set, _) => {
                counters.sets += 1;
                counters.status_errors += 1;
            }
        }
        conn.rstart += used;
    }
}
