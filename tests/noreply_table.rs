//! The text and meta commands the protocol lets a client silence (issue 18): `noreply` on
//! the classic commands, `q` on the meta ones. Each row is a command with the reply it gets
//! when the key holds an item and when it does not; the test sends it as it is and silenced,
//! followed by `mn`, so a reply where none belongs shows up before `MN`.
//!
//! `noreply` silences every outcome, errors included (memcached's rule), except a disk that
//! cannot take the record (`SERVER_ERROR storage error`: the client must not believe a
//! write stored). `q` silences only the nominal outcome: `HD` of `ms`, `md`, `ma`, and a
//! miss of `mg`.
//!
//! The rows are checked against the codec: every row decodes, silenced, to a request whose
//! `noreply` or `q` is set, and [`kind`] (a `match` with no catch-all over the request type)
//! makes every kind of request that can be silenced have a row.

mod gate;
mod text_wire;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use caskade::protocol::text::{decode, Request, StoreKind};
use caskade::protocol::Limits;
use gate::Node;
use text_wire::Text;

/// A command (`{k}` is the key), its reply on a hit and on a miss, when not silenced.
struct Row {
    cmd: &'static str,
    hit: &'static str,
    miss: &'static str,
}

const fn row(cmd: &'static str, hit: &'static str, miss: &'static str) -> Row {
    Row { cmd, hit, miss }
}

/// The item every hit finds: `10`, with flags 0.
const ROWS: &[Row] = &[
    row("set {k} 0 0 1\r\nx", "STORED", "STORED"),
    row("add {k} 0 0 1\r\nx", "NOT_STORED", "STORED"),
    row("replace {k} 0 0 1\r\nx", "STORED", "NOT_STORED"),
    row("append {k} 0 0 1\r\nx", "STORED", "NOT_STORED"),
    row("prepend {k} 0 0 1\r\nx", "STORED", "NOT_STORED"),
    row("cas {k} 0 0 1 1\r\nx", "EXISTS", "NOT_FOUND"),
    row("delete {k}", "DELETED", "NOT_FOUND"),
    row("incr {k} 1", "11", "NOT_FOUND"),
    row("decr {k} 1", "9", "NOT_FOUND"),
    row("touch {k} 0", "TOUCHED", "NOT_FOUND"),
    row("flush_all", "OK", "OK"),
    row("verbosity 1", "OK", "OK"),
    row("ms {k} 1\r\nx", "HD", "HD"),
    row("ms {k} 1 C1\r\nx", "EX", "NF"),
    row("ms {k} 1 MA\r\nx", "HD", "NS"),
    row("md {k}", "HD", "NF"),
    row("ma {k}", "HD", "NF"),
    row("mg {k} v", "VA 2\r\n10", "EN"),
    row("mg {k}", "HD", "EN"),
];

/// Whether the silenced command (meta: `q`) still answers `reply`.
fn silenced_reply(cmd: &str, reply: &'static str) -> &'static str {
    let meta = cmd.starts_with('m');
    match reply {
        // `q` hides only the nominal outcome; a hit of `mg` is its value, not silenced.
        "HD" if meta && !cmd.starts_with("mg") => "",
        "EN" if meta => "",
        _ if meta => reply,
        // `noreply` hides everything.
        _ => "",
    }
}

fn silenced(cmd: &str) -> String {
    let (line, block) = cmd.split_once("\r\n").map_or((cmd, None), |(l, b)| (l, Some(b)));
    let flag = if cmd.starts_with('m') { " q" } else { " noreply" };
    match block {
        Some(b) => format!("{line}{flag}\r\n{b}"),
        None => format!("{line}{flag}"),
    }
}

/// The kind of a request, for the coverage check; `None` for those that cannot be silenced.
fn kind(req: &Request<'_>) -> Option<(&'static str, bool)> {
    Some(match *req {
        Request::Store { kind, noreply, .. } => (
            match kind {
                StoreKind::Set => "set",
                StoreKind::Add => "add",
                StoreKind::Replace => "replace",
                StoreKind::Append => "append",
                StoreKind::Prepend => "prepend",
                StoreKind::Cas => "cas",
            },
            noreply,
        ),
        Request::Delete { noreply, .. } => ("delete", noreply),
        Request::Arith { incr, noreply, .. } => (if incr { "incr" } else { "decr" }, noreply),
        Request::Touch { noreply, .. } => ("touch", noreply),
        Request::FlushAll { noreply, .. } => ("flush_all", noreply),
        Request::Verbosity { noreply, .. } => ("verbosity", noreply),
        Request::MetaGet { flags, .. } => ("mg", flags.quiet),
        Request::MetaSet { flags, .. } => ("ms", flags.quiet),
        Request::MetaDelete { flags, .. } => ("md", flags.quiet),
        Request::MetaArith { flags, .. } => ("ma", flags.quiet),
        Request::Get { .. }
        | Request::Version
        | Request::Quit
        | Request::Stats { .. }
        | Request::Metadump
        | Request::Watch { .. }
        | Request::Shutdown { .. }
        | Request::MetaNoop
        | Request::MetaDebug { .. } => return None,
    })
}

fn line_of(reply: &str) -> String {
    if reply.is_empty() {
        String::new()
    } else {
        format!("{reply}\r\n")
    }
}

#[test]
fn every_silenceable_command_has_a_row_and_decodes_silenced() {
    let limits = Limits { max_value_len: 1 << 20 };
    let mut covered = BTreeSet::new();
    for r in ROWS {
        let bytes = format!("{}\r\n", silenced(&r.cmd.replace("{k}", "key")));
        let (req, _) = decode(bytes.as_bytes(), &limits).expect("decodes").expect("whole");
        let (name, quiet) = kind(&req).unwrap_or_else(|| panic!("{:?} cannot be silenced", r.cmd));
        assert!(quiet, "{bytes:?} decodes without its noreply/q");
        covered.insert(name);
    }
    let all = ["set", "add", "replace", "append", "prepend", "cas", "delete", "incr", "decr", "touch", "flush_all", "verbosity", "mg", "ms", "md", "ma"];
    for name in all {
        assert!(covered.contains(name), "{name} has no row");
    }
}

#[test]
fn silenced_commands_answer_only_what_the_protocol_says() {
    let node = Node::start(1, "always");
    let mut c = Text::connect(node.addr);
    for (i, r) in ROWS.iter().enumerate() {
        for silence in [false, true] {
            for hit in [true, false] {
                let key = format!("t{i}-{silence}-{hit}");
                if hit {
                    c.send(format!("set {key} 0 0 2\r\n10\r\n"));
                    c.expect("STORED\r\n");
                }
                let cmd = r.cmd.replace("{k}", &key);
                let cmd = if silence { silenced(&cmd) } else { cmd };
                let reply = if hit { r.hit } else { r.miss };
                let want = if silence { silenced_reply(r.cmd, reply) } else { reply };
                c.send(format!("{cmd}\r\nmn\r\n"));
                c.expect(format!("{}MN\r\n", line_of(want)));
            }
        }
    }
}

#[test]
fn a_storage_error_is_answered_even_when_silenced() {
    let node = Node::start(1, "always");
    let mut c = Text::connect(node.addr);
    c.send("set k 0 0 2\r\n10\r\n");
    c.expect("STORED\r\n");
    node.gate.fail();
    c.send("set trigger 0 0 1\r\nx\r\n");
    c.expect("SERVER_ERROR storage error\r\n");
    for cmd in ["set k 0 0 1 noreply\r\nx", "delete k noreply", "incr k 1 noreply", "touch k 0 noreply", "ms k 1 q\r\nx", "md k q", "ma k q"] {
        c.send(format!("{cmd}\r\nmn\r\n"));
        c.expect("SERVER_ERROR storage error\r\nMN\r\n");
    }
    node.gate.open();
    let deadline = Instant::now() + gate::PATIENCE;
    loop {
        c.send("set k 0 0 1\r\ny\r\n");
        if c.line() == "STORED" {
            break;
        }
        assert!(Instant::now() < deadline, "writes still refused after the disk healed");
        std::thread::sleep(Duration::from_millis(10));
    }
}
