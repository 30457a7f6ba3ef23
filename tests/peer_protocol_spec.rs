//! `protocol-spec/peer-protocol.md` against the code: this file parses the spec's tables and
//! checks every number in them against the code's constants and against frames the codec
//! encodes (the bytes at the offsets a table names). A table or the code changed alone
//! fails here.

use std::collections::{BTreeMap, BTreeSet};

use caskade::cluster::map::MapNode;
use caskade::cluster::{ClusterMap, PARTITIONS};
use caskade::protocol::binary::{REQUEST_MAGIC, RESPONSE_MAGIC};
use caskade::protocol::peer::auth::{self, status, Hello, HelloOk, Role, Transcript};
use caskade::protocol::peer::forward::{self, code, Forwarded};
use caskade::protocol::peer::{self, write_frame, Frame, Op};
use caskade::storage::{Command, Outcome, StoreMode};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SPEC: &str = include_str!("../protocol-spec/peer-protocol.md");

type Row = Vec<String>;

/// The tables of the section whose heading contains `heading` (up to the next heading of
/// any level), each as its data rows (header and separator rows dropped).
fn tables(heading: &str) -> Vec<Vec<Row>> {
    let mut lines = SPEC.lines();
    lines
        .by_ref()
        .find(|l| l.starts_with('#') && l.contains(heading))
        .unwrap_or_else(|| panic!("no heading with {heading:?} in the spec"));
    let mut out: Vec<Vec<Row>> = Vec::new();
    let mut in_table = false;
    let mut in_code = false;
    for line in lines {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        if in_code {
            continue;
        }
        if line.starts_with('#') {
            break;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells: Row = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        if !in_table {
            // The header row.
            in_table = true;
            out.push(Vec::new());
            continue;
        }
        if cells
            .iter()
            .all(|c| c.chars().all(|ch| matches!(ch, '-' | ':' | ' ')))
        {
            continue;
        }
        out.last_mut().unwrap().push(cells);
    }
    assert!(!out.is_empty(), "no table under {heading:?}");
    out
}

fn table(heading: &str) -> Vec<Row> {
    tables(heading).swap_remove(0)
}

/// The text of the first `code` span of a cell, or the cell.
fn ident(cell: &str) -> &str {
    match cell.split('`').nth(1) {
        Some(s) if cell.contains('`') => s,
        _ => cell,
    }
}

fn num(cell: &str) -> u64 {
    let s = ident(cell).trim();
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.unwrap_or_else(|_| panic!("{cell:?} is not a number"))
}

fn decode(buf: &[u8]) -> Frame<'_> {
    let (f, used) = Frame::decode(buf, 1 << 20).unwrap().expect("a whole frame");
    assert_eq!(used, buf.len());
    f
}

fn be(bytes: &[u8]) -> u64 {
    assert!(bytes.len() <= 8);
    bytes.iter().fold(0, |acc, &b| (acc << 8) | b as u64)
}

#[derive(Debug)]
enum Want {
    Int(u64),
    Bytes(Vec<u8>),
}

/// Checks a layout table (`off | size | field`) against `bytes`: the rows cover the bytes
/// from 0 to the end without gaps, and each field holds what `want` says it should.
fn check_layout(heading: &str, nth: usize, bytes: &[u8], want: &[(&str, Want)]) {
    let rows = &tables(heading)[nth];
    let mut at = 0usize;
    let mut seen = BTreeSet::new();
    for row in rows {
        let off = num(&row[0]) as usize;
        assert_eq!(
            off, at,
            "{heading}: field {:?} at {off}, expected {at}",
            row[2]
        );
        let size = if row[1] == "rest" {
            bytes.len() - off
        } else {
            num(&row[1]) as usize
        };
        let name = ident(&row[2]);
        let field = bytes.get(off..off + size).unwrap_or_else(|| {
            panic!(
                "{heading}: {name} at {off}+{size} is past the {} bytes",
                bytes.len()
            )
        });
        match want.iter().find(|(n, _)| *n == name) {
            Some((_, Want::Int(v))) => assert_eq!(
                be(field),
                *v,
                "{heading}: {name} at offset {off}, size {size}"
            ),
            Some((_, Want::Bytes(v))) => assert_eq!(
                field,
                &v[..],
                "{heading}: {name} at offset {off}, size {size}"
            ),
            None if name == "reserved" => assert!(
                field.iter().all(|&b| b == 0),
                "{heading}: reserved bytes are 0"
            ),
            None => {
                panic!("{heading}: the spec names field {name:?}, which this test does not know")
            }
        }
        seen.insert(name.to_string());
        at = off + size;
    }
    assert_eq!(
        at,
        bytes.len(),
        "{heading}: the table covers {at} bytes, the code writes {}",
        bytes.len()
    );
    for (name, _) in want {
        assert!(seen.contains(*name), "{heading}: no row for {name}");
    }
}

fn request(cmd: &Command<&[u8]>, then_touch: Option<u32>) -> Vec<u8> {
    let mut out = Vec::new();
    forward::write_request(&mut out, 0x0123, 0x89AB_CDEF, cmd, then_touch, None);
    out
}

#[test]
fn constants() {
    let rows = table("Constants");
    let code: BTreeMap<&str, u64> = [
        ("VERSION", peer::VERSION as u64),
        ("FIRST_OPCODE", peer::FIRST_OPCODE as u64),
        ("LAST_OPCODE", peer::LAST_OPCODE as u64),
        ("NONCE_LEN", auth::NONCE_LEN as u64),
        ("PROOF_LEN", auth::PROOF_LEN as u64),
        ("PARTITIONS", PARTITIONS as u64),
        (
            "MIN_SECRET_LEN",
            caskade::cluster::config::MIN_SECRET_LEN as u64,
        ),
        (
            "BACKOFF_FIRST_MS",
            caskade::server::peer::link::BACKOFF_FIRST.as_millis() as u64,
        ),
        (
            "BACKOFF_MAX_MS",
            caskade::server::peer::link::BACKOFF_MAX.as_millis() as u64,
        ),
        (
            "DEFAULT_FORWARD_TIMEOUT_MS",
            default_cluster_file().forward_timeout.as_millis() as u64,
        ),
        (
            "DEFAULT_MAX_IN_FLIGHT",
            default_cluster_file().max_in_flight as u64,
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(rows.len(), code.len(), "one row per constant");
    for row in &rows {
        let name = ident(&row[0]);
        let want = code
            .get(name)
            .unwrap_or_else(|| panic!("unknown constant {name}"));
        assert_eq!(num(&row[1]), *want, "constant {name}");
    }
}

/// A cluster file with only the required settings, its secret in a temporary directory.
fn default_cluster_file() -> caskade::cluster::config::ClusterFile {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "0123456789abcdef\n").unwrap();
    let text = "[cluster]\nname = \"prod\"\nsecret_file = \"secret\"\n[[cluster.node]]\nid = \"a\"\nclient = \"127.0.0.1:11211\"\npeer = \"127.0.0.1:11311\"\n";
    let path = dir.path().join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    caskade::cluster::config::ClusterFile::load(&path).unwrap()
}

#[test]
fn frame_header_offsets() {
    let cmd = Command::Store {
        mode: StoreMode::Set,
        key: &b"key-17"[..],
        value: &b"value!!"[..],
        flags: 1,
        exptime: 2,
        cas: 0x0102_0304_0506_0708,
    };
    let buf = request(&cmd, None);
    let f = decode(&buf);
    let h = f.header;
    let (e, k) = (h.extras_len as usize, h.key_len as usize);
    let rows = table("Frame");
    let mut fields = BTreeSet::new();
    for row in &rows {
        let field = ident(&row[2]);
        let off = match row[0].as_str() {
            "24" => 24,
            "24+e" => 24 + e,
            "24+e+k" => 24 + e + k,
            s => num(s) as usize,
        };
        let (at, want): (usize, &[u8]) = match field {
            "extras" => (f.extras.as_ptr() as usize - buf.as_ptr() as usize, f.extras),
            "key" => (f.key.as_ptr() as usize - buf.as_ptr() as usize, f.key),
            "value" => (f.value.as_ptr() as usize - buf.as_ptr() as usize, f.value),
            _ => {
                let size = num(&row[1]) as usize;
                let want = match field {
                    "magic" => h.magic as u64,
                    "opcode" => h.opcode as u64,
                    "key_len" => h.key_len as u64,
                    "extras_len" => h.extras_len as u64,
                    "data_type" => h.data_type as u64,
                    "vbucket_or_status" => h.vbucket_or_status as u64,
                    "body_len" => h.body_len as u64,
                    "opaque" => h.opaque as u64,
                    "cas" => h.cas,
                    other => panic!("unknown header field {other}"),
                };
                assert_eq!(
                    be(&buf[off..off + size]),
                    want,
                    "header field {field} at {off}, size {size}"
                );
                fields.insert(field);
                continue;
            }
        };
        assert_eq!(at, off, "{field} starts at {off}");
        assert_eq!(&buf[off..off + want.len()], want);
    }
    assert_eq!(fields.len(), 9, "every header field has a row");
    // The request values the table names.
    assert_eq!(
        (h.vbucket_or_status, h.opaque, h.cas),
        (0x0123, 0x89AB_CDEF, 0x0102_0304_0506_0708)
    );
    let magic = rows.iter().find(|r| ident(&r[2]) == "magic").unwrap();
    assert_eq!(
        (num(&magic[3]), num(&magic[4])),
        (REQUEST_MAGIC as u64, RESPONSE_MAGIC as u64)
    );
    assert_eq!(buf[0], REQUEST_MAGIC);
    let mut resp = Vec::new();
    forward::write_outcome::<&[u8]>(&mut resp, Op::Get, 5, b"k", &Outcome::NotFound);
    assert_eq!(resp[0], RESPONSE_MAGIC);
    assert_eq!(
        be(&resp[6..8]),
        code::NOT_FOUND as u64,
        "a response's status at 6"
    );
}

/// One frame of each opcode, as the code writes it.
fn sample(op: Op) -> Vec<u8> {
    let mut out = Vec::new();
    let key = &b"some-key"[..];
    match op {
        Op::Hello => Hello {
            version: 1,
            target_core: 0,
            map_checksum: 1,
            node_id: b"a",
            nonce: [1; 16],
            cluster: b"prod",
        }
        .write(&mut out),
        Op::Auth => auth::write_auth(&mut out, &[7; 32]),
        Op::Get => out = request(&Command::Get { key }, None),
        Op::GetAndTouch => out = request(&Command::GetAndTouch { key, exptime: 5 }, None),
        Op::Touch => out = request(&Command::Touch { key, exptime: 5 }, None),
        Op::Store => {
            out = request(
                &Command::Store {
                    mode: StoreMode::Set,
                    key,
                    value: b"v",
                    flags: 0,
                    exptime: 0,
                    cas: 0,
                },
                None,
            )
        }
        Op::Delete => out = request(&Command::Delete { key, cas: 0 }, None),
        Op::Arith => {
            out = request(
                &Command::Arith {
                    incr: true,
                    key,
                    delta: 1,
                    initial: None,
                    exptime: 0,
                    cas: 0,
                },
                None,
            )
        }
        Op::Flush => out = request(&Command::Flush { delay: 0 }, None),
        Op::GetReplica => {
            out = request(&Command::Get { key }, None);
            out[1] = Op::GetReplica.to_u8();
        }
        Op::ReplOpen => {
            let mut set = caskade::cluster::PartitionSet::empty();
            set.insert(3);
            caskade::protocol::peer::repl::write_open(&mut out, 1, &set);
        }
        Op::ReplVerify => {
            let mut set = caskade::cluster::PartitionSet::empty();
            set.insert(3);
            caskade::protocol::peer::repl::write_verify(&mut out, 1, &set, 1_800_000_000);
        }
        Op::ReplChanges => {
            let mut records = Vec::new();
            caskade::protocol::peer::repl::Record {
                kind: caskade::protocol::peer::repl::RecordType::Put,
                partition: caskade::cluster::partition_of(key),
                seqno: 1,
                cas: 1,
                flags: 0,
                expiry: 0,
                key,
                value: b"v",
            }
            .write(&mut records);
            caskade::protocol::peer::repl::write_changes(&mut out, 1, false, &records);
        }
    }
    out
}

#[test]
fn opcodes() {
    let rows = table("Opcodes");
    assert_eq!(rows.len(), Op::ALL.len(), "one row per Op");
    let mut covered = BTreeSet::new();
    for row in &rows {
        let opcode = num(&row[0]) as u8;
        let op = Op::from_u8(opcode)
            .unwrap_or_else(|| panic!("the spec's opcode {opcode:#04x} is no Op"));
        assert_eq!(format!("{op:?}"), ident(&row[2]), "opcode {opcode:#04x}");
        assert_eq!(op.to_u8(), opcode);
        assert!(Op::is_peer_opcode(opcode));
        let buf = sample(op);
        let f = decode(&buf);
        assert_eq!(f.header.opcode, opcode);
        assert_eq!(
            f.extras.len() as u64,
            num(&row[3]),
            "{op:?}: request extras length"
        );
        match row[4].as_str() {
            "-" => assert!(f.key.is_empty(), "{op:?} has no key"),
            _ => assert!(!f.key.is_empty(), "{op:?} has a key"),
        }
        match row[5].as_str() {
            "-" => assert!(f.value.is_empty(), "{op:?} has no value"),
            _ => assert!(!f.value.is_empty(), "{op:?} has a value"),
        }
        if row[4] == "R" && op != Op::Hello {
            // The key is required: the same frame without it is malformed.
            let mut bare = Vec::new();
            write_frame(
                &mut bare,
                REQUEST_MAGIC,
                op,
                0,
                0,
                0,
                f.extras,
                &[],
                f.value,
            );
            assert!(
                forward::parse_request(&decode(&bare)).is_err(),
                "{op:?} without a key"
            );
            for (len, fine) in [(250, true), (251, false)] {
                let mut long = Vec::new();
                let key = vec![b'k'; len];
                write_frame(&mut long, REQUEST_MAGIC, op, 0, 0, 0, f.extras, &key, f.value);
                let parsed = forward::parse_request(&decode(&long));
                assert_eq!(parsed.is_ok(), fine, "{op:?} with a key of {len} bytes");
            }
        }
        assert!(covered.insert(opcode));
    }
    for op in Op::ALL {
        assert!(covered.contains(&op.to_u8()), "{op:?} has no row");
    }
    // Reserved ranges: no Op, inside the peer range; with the table above, exactly the range.
    for row in &tables("Opcodes")[1] {
        let (lo, hi) = row[0]
            .split_once("..=")
            .unwrap_or_else(|| panic!("range {:?}", row[0]));
        for b in num(lo)..=num(hi) {
            let b = b as u8;
            assert_eq!(Op::from_u8(b), None, "{b:#04x} is kept, yet an Op");
            assert!(Op::is_peer_opcode(b));
            assert!(covered.insert(b), "{b:#04x} twice in the tables");
        }
    }
    let all: BTreeSet<u8> = (peer::FIRST_OPCODE..=peer::LAST_OPCODE).collect();
    assert_eq!(covered, all, "the tables cover exactly the peer range");
    assert!(
        !Op::is_peer_opcode(peer::FIRST_OPCODE - 1) && !Op::is_peer_opcode(peer::LAST_OPCODE + 1)
    );
}

#[test]
fn handshake_layouts() {
    let hello = Hello {
        version: 0x0A0B,
        target_core: 0x0C0D,
        map_checksum: 0x1122_3344,
        node_id: b"node-a",
        nonce: [0x5A; 16],
        cluster: b"the-cluster",
    };
    let mut buf = Vec::new();
    hello.write(&mut buf);
    let f = decode(&buf);
    assert_eq!(f.key, b"node-a");
    check_layout(
        "HELLO request extras",
        0,
        f.extras,
        &[
            ("version", Want::Int(0x0A0B)),
            ("target_core", Want::Int(0x0C0D)),
            ("map_checksum", Want::Int(0x1122_3344)),
        ],
    );
    check_layout(
        "HELLO request extras",
        1,
        f.value,
        &[
            ("nonce", Want::Bytes(vec![0x5A; 16])),
            ("cluster", Want::Bytes(b"the-cluster".to_vec())),
        ],
    );

    let ok = HelloOk {
        version: 0x0A0B,
        cores: 0x0E0F,
        map_checksum: 0x5566_7788,
        node_id: b"node-b",
        nonce: [0xA5; 16],
        proof: [0x3C; 32],
    };
    let mut buf = Vec::new();
    ok.write(&mut buf);
    let f = decode(&buf);
    assert_eq!((f.key, f.status()), (&b"node-b"[..], status::OK));
    check_layout(
        "HELLO-ok response extras",
        0,
        f.extras,
        &[
            ("version", Want::Int(0x0A0B)),
            ("cores", Want::Int(0x0E0F)),
            ("map_checksum", Want::Int(0x5566_7788)),
        ],
    );
    check_layout(
        "HELLO-ok response extras",
        1,
        f.value,
        &[
            ("nonce", Want::Bytes(vec![0xA5; 16])),
            ("proof", Want::Bytes(vec![0x3C; 32])),
        ],
    );
    assert!(SPEC.contains("Value, exactly 48 bytes"));
    assert_eq!(f.value.len(), auth::NONCE_LEN + auth::PROOF_LEN);

    let mut buf = Vec::new();
    auth::write_auth(&mut buf, &[0x77; 32]);
    let f = decode(&buf);
    assert!(f.extras.is_empty() && f.key.is_empty());
    assert_eq!(auth::parse_auth(&f), Some(&[0x77u8; 32][..]));
}

#[test]
fn handshake_statuses() {
    let code: BTreeMap<&str, u16> = [
        ("OK", status::OK),
        ("PROTOCOL_ERROR", status::PROTOCOL_ERROR),
        ("MAP_MISMATCH", status::MAP_MISMATCH),
        ("AUTH_ERROR", status::AUTH_ERROR),
        ("VERSION_MISMATCH", status::VERSION_MISMATCH),
    ]
    .into_iter()
    .collect();
    let rows = table("Handshake statuses");
    assert_eq!(rows.len(), code.len());
    for row in &rows {
        let name = ident(&row[1]);
        assert_eq!(
            num(&row[0]),
            *code
                .get(name)
                .unwrap_or_else(|| panic!("unknown status {name}")) as u64,
            "status {name}"
        );
        if name != "OK" {
            // A refusal: the status at offset 6, the reason in the value, nothing else.
            let mut buf = Vec::new();
            auth::write_refusal(&mut buf, Op::Hello, num(&row[0]) as u16, "why");
            assert_eq!(be(&buf[6..8]), num(&row[0]));
            let f = decode(&buf);
            assert_eq!(
                (f.extras, f.key, f.value, f.header.opaque, f.header.cas),
                (&[][..], &[][..], &b"why"[..], 0, 0)
            );
            assert_eq!(HelloOk::parse(&f), None);
        }
    }
}

fn spec_proof(
    secret: &[u8],
    role: &[u8],
    cluster: &[u8],
    a: &[u8],
    b: &[u8],
    na: &[u8; 16],
    nb: &[u8; 16],
) -> [u8; 32] {
    let mut input = role.to_vec();
    for field in [cluster, a, b] {
        input.extend_from_slice(&(field.len() as u32).to_be_bytes());
        input.extend_from_slice(field);
    }
    input.extend_from_slice(na);
    input.extend_from_slice(nb);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(&input);
    mac.finalize().into_bytes().into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn proofs_are_the_hmac_the_spec_describes() {
    let roles: BTreeMap<String, String> = table("Proofs")
        .iter()
        .map(|r| (ident(&r[0]).to_string(), ident(&r[1]).to_string()))
        .collect();
    let role_of = |r: Role| match r {
        Role::Initiator => "initiator",
        Role::Responder => "responder",
    };
    let (na, nb) = ([0x01; 16], [0x02; 16]);
    let t = Transcript {
        cluster: b"prod",
        initiator: b"a",
        responder: b"b",
        nonce_initiator: na,
        nonce_responder: nb,
    };
    let worked = &tables("Proofs")[1];
    for role in [Role::Initiator, Role::Responder] {
        let name = role_of(role);
        let role_string = roles
            .get(name)
            .unwrap_or_else(|| panic!("no role string for {name}"));
        // Long enough and odd values, to be sure the lengths are prefixed as the spec says.
        let t2 = Transcript {
            cluster: b"cluster-x",
            initiator: b"node.one",
            responder: b"node_2",
            nonce_initiator: [9; 16],
            nonce_responder: [200; 16],
        };
        let secret = b"a secret of more than sixteen bytes";
        assert_eq!(
            t2.proof(secret, role),
            spec_proof(
                secret,
                role_string.as_bytes(),
                b"cluster-x",
                b"node.one",
                b"node_2",
                &[9; 16],
                &[200; 16]
            ),
            "{name}'s proof is not HMAC-SHA256 over the spec's input"
        );
        let row = worked
            .iter()
            .find(|r| ident(&r[0]) == name)
            .unwrap_or_else(|| panic!("no worked proof for {name}"));
        assert_eq!(
            hex(&t.proof(b"0123456789abcdef", role)),
            ident(&row[1]),
            "worked example, {name}"
        );
    }
}

#[test]
fn map_checksum_input() {
    let nodes = vec![
        MapNode {
            id: "c".into(),
            peer: "[::1]:11331".into(),
        },
        MapNode {
            id: "a".into(),
            peer: "127.0.0.1:11311".into(),
        },
        MapNode {
            id: "b".into(),
            peer: "127.0.0.1:11321".into(),
        },
    ];
    let map = ClusterMap::derive("prod", nodes.clone(), 1);
    let mut sorted = nodes;
    sorted.sort_by(|x, y| x.id.cmp(&y.id));
    let mut input = Vec::new();
    let field = |input: &mut Vec<u8>, b: &[u8]| {
        input.extend_from_slice(&(b.len() as u32).to_be_bytes());
        input.extend_from_slice(b);
    };
    field(&mut input, b"prod");
    assert!(SPEC.contains("`00000008 0000000000000001`"));
    field(&mut input, &1u64.to_be_bytes());
    assert_eq!(map.revision(), 1);
    for n in &sorted {
        field(&mut input, n.id.as_bytes());
        field(&mut input, n.peer.as_bytes());
    }
    for p in 0..PARTITIONS {
        input.extend_from_slice(&((p as usize % sorted.len()) as u16).to_be_bytes());
        assert_eq!(map.primary(p), p as usize % sorted.len());
    }
    field(&mut input, &1u32.to_be_bytes());
    let n = sorted.len();
    for p in 0..PARTITIONS as usize {
        let backup = (p % n + 1 + (p / n) % (n - 1)) % n;
        input.extend_from_slice(&(backup as u16).to_be_bytes());
        assert_eq!(map.backups(p as u16), &[backup as u16]);
    }
    assert_eq!(map.checksum(), crc32c::crc32c(&input));
}

#[test]
fn forwarded_request_layouts() {
    let key = &b"the-key"[..];
    for cmd in [
        Command::GetAndTouch {
            key,
            exptime: 0xA1B2_C3D4,
        },
        Command::Touch {
            key,
            exptime: 0xA1B2_C3D4,
        },
    ] {
        let buf = request(&cmd, None);
        let f = decode(&buf);
        assert_eq!(f.extras.len(), forward::EXPIRY_EXTRAS);
        check_layout(
            "GAT, TOUCH request extras",
            0,
            f.extras,
            &[("exptime", Want::Int(0xA1B2_C3D4))],
        );
    }
    let buf = request(&Command::Flush { delay: 0x0BAD_F00D }, None);
    let f = decode(&buf);
    assert_eq!(f.partition(), 0x0123, "the partition field as given");
    check_layout(
        "FLUSH request extras",
        0,
        f.extras,
        &[("delay", Want::Int(0x0BAD_F00D))],
    );

    let store = |mode| Command::Store {
        mode,
        key,
        value: &b"val"[..],
        flags: 0x1122_3344,
        exptime: 0x5566_7788,
        cas: 0x99,
    };
    let buf = request(&store(StoreMode::Prepend), None);
    let f = decode(&buf);
    assert_eq!(f.extras.len(), forward::STORE_EXTRAS);
    assert_eq!((f.header.cas, f.value), (0x99, &b"val"[..]));
    check_layout(
        "STORE request extras",
        0,
        f.extras,
        &[
            ("flags", Want::Int(0x1122_3344)),
            ("exptime", Want::Int(0x5566_7788)),
            ("mode", Want::Int(4)),
        ],
    );
    let modes = &tables("STORE request extras")[1];
    assert_eq!(modes.len(), 5);
    let mode_off = tables("STORE request extras")[0]
        .iter()
        .find(|r| ident(&r[2]) == "mode")
        .map(|r| num(&r[0]) as usize)
        .unwrap();
    for row in modes {
        let mode = match ident(&row[1]) {
            "Set" => StoreMode::Set,
            "Add" => StoreMode::Add,
            "Replace" => StoreMode::Replace,
            "Append" => StoreMode::Append,
            "Prepend" => StoreMode::Prepend,
            other => panic!("unknown mode {other}"),
        };
        let buf = request(&store(mode), None);
        let f = decode(&buf);
        assert_eq!(f.extras[mode_off] as u64, num(&row[0]), "mode {mode:?}");
        assert_eq!(forward::parse_request(&f).unwrap().cmd, store(mode));
    }
    // Any other mode byte is malformed.
    let mut bad = request(&store(StoreMode::Set), None);
    bad[24 + mode_off] = 5;
    assert!(forward::parse_request(&decode(&bad)).is_err());

    let arith = |incr, initial, then_touch| {
        let cmd = Command::Arith {
            incr,
            key,
            delta: 0x0102_0304_0506_0708,
            initial,
            exptime: 0x2122_2324,
            cas: 0x77,
        };
        (cmd.clone(), request(&cmd, then_touch))
    };
    let (_, buf) = arith(true, Some(0x1112_1314_1516_1718), Some(0x3132_3334));
    let f = decode(&buf);
    assert_eq!(f.extras.len(), forward::ARITH_EXTRAS);
    assert_eq!(f.header.cas, 0x77);
    check_layout(
        "ARITH request extras",
        0,
        f.extras,
        &[
            ("delta", Want::Int(0x0102_0304_0506_0708)),
            ("initial", Want::Int(0x1112_1314_1516_1718)),
            ("exptime", Want::Int(0x2122_2324)),
            ("touch", Want::Int(0x3132_3334)),
            ("bits", Want::Int(7)),
        ],
    );
    let layout = &tables("ARITH request extras")[0];
    let bits_off = layout
        .iter()
        .find(|r| ident(&r[2]) == "bits")
        .map(|r| num(&r[0]) as usize)
        .unwrap();
    let bits = &tables("ARITH request extras")[1];
    assert_eq!(bits.len(), 3);
    let (_, none) = arith(false, None, None);
    assert_eq!(decode(&none).extras[bits_off], 0);
    for row in bits {
        let (cmd, buf, then_touch) = match ident(&row[1]) {
            "incr" => {
                let (c, b) = arith(true, None, None);
                (c, b, None)
            }
            "create" => {
                let (c, b) = arith(false, Some(5), None);
                (c, b, None)
            }
            "then_touch" => {
                let (c, b) = arith(false, None, Some(60));
                (c, b, Some(60))
            }
            other => panic!("unknown bit {other}"),
        };
        let f = decode(&buf);
        assert_eq!(
            f.extras[bits_off] as u64,
            num(&row[0]),
            "bit {}",
            ident(&row[1])
        );
        assert_eq!(
            forward::parse_request(&f),
            Ok(Forwarded {
                partition: 0x0123,
                opaque: 0x89AB_CDEF,
                cmd,
                then_touch,
                durability: None
            })
        );
    }
}

fn sample_outcome(name: &str) -> Outcome<&'static [u8]> {
    match name {
        "Value" => Outcome::Value {
            flags: 0xF1F2_F3F4,
            cas: 0x55,
            value: b"the value",
        },
        "NotFound" => Outcome::NotFound,
        "Exists" => Outcome::Exists,
        "TooLarge" => Outcome::TooLarge,
        "NotStored" => Outcome::NotStored,
        "NonNumeric" => Outcome::NonNumeric,
        "TemporaryFailure" => Outcome::TemporaryFailure,
        "Done" => Outcome::Done { cas: 0x56 },
        "Counter" => Outcome::Counter {
            value: 0x0102_0304_0506_0708,
            cas: 0x57,
        },
        "OutOfMemory" => Outcome::OutOfMemory,
        "StorageError" => Outcome::StorageError,
        "DurabilityImpossible" => Outcome::DurabilityImpossible,
        "SyncWriteAmbiguous" => Outcome::SyncWriteAmbiguous,
        other => panic!("unknown outcome {other}"),
    }
}

#[test]
fn outcome_codes() {
    let consts: BTreeMap<&str, u16> = [
        ("VALUE", code::VALUE),
        ("NOT_FOUND", code::NOT_FOUND),
        ("EXISTS", code::EXISTS),
        ("TOO_LARGE", code::TOO_LARGE),
        ("NOT_STORED", code::NOT_STORED),
        ("NON_NUMERIC", code::NON_NUMERIC),
        ("NOT_MY_PARTITION", code::NOT_MY_PARTITION),
        ("DONE", code::DONE),
        ("COUNTER", code::COUNTER),
        ("OUT_OF_MEMORY", code::OUT_OF_MEMORY),
        ("STORAGE_ERROR", code::STORAGE_ERROR),
        ("TEMPORARY_FAILURE", code::TEMPORARY_FAILURE),
        ("DURABILITY_IMPOSSIBLE", code::DURABILITY_IMPOSSIBLE),
        ("SYNC_WRITE_AMBIGUOUS", code::SYNC_WRITE_AMBIGUOUS),
    ]
    .into_iter()
    .collect();
    let rows = table("Outcome codes");
    assert_eq!(rows.len(), consts.len(), "one row per code");
    let mut in_table = BTreeSet::new();
    for row in &rows {
        let (status, name, outcome_name) = (num(&row[0]) as u16, ident(&row[1]), ident(&row[2]));
        assert_eq!(Some(&status), consts.get(name), "code {name}");
        in_table.insert(status);
        let outcome = sample_outcome(outcome_name);
        let mut buf = Vec::new();
        if name == "NOT_MY_PARTITION" {
            forward::write_not_my_partition(&mut buf, Op::Store, 0x4242, b"k");
        } else {
            forward::write_outcome(&mut buf, Op::Store, 0x4242, b"k", &outcome);
        }
        assert_eq!(be(&buf[6..8]), status as u64, "{name}: status at offset 6");
        let f = decode(&buf);
        assert_eq!(
            (f.header.opcode, f.header.opaque, f.key),
            (Op::Store.to_u8(), 0x4242, &b"k"[..]),
            "{name}: opcode, opaque and key echoed"
        );
        assert_eq!(f.extras.len() as u64, num(&row[3]), "{name}: extras length");
        assert_eq!(f.value.is_empty(), row[4] == "-", "{name}: value");
        match outcome {
            Outcome::Value { flags, cas, value } => assert_eq!(
                (be(f.extras), f.header.cas, f.value),
                (flags as u64, cas, value)
            ),
            Outcome::Counter { value, cas } => {
                assert_eq!((be(f.extras), f.header.cas), (value, cas))
            }
            Outcome::Done { cas } => assert_eq!(f.header.cas, cas),
            _ => assert_eq!(f.header.cas, 0, "{name}: cas"),
        }
        assert_eq!(forward::parse_outcome(&f), Ok(outcome), "{name}");
    }
    // Any status not in the table is a bad answer.
    for s in 0..=u16::MAX {
        if !in_table.contains(&s) {
            let mut buf = Vec::new();
            write_frame(&mut buf, RESPONSE_MAGIC, Op::Get, s, 1, 0, &[], b"k", &[]);
            assert!(
                forward::parse_outcome(&decode(&buf)).is_err(),
                "status {s:#06x}"
            );
        }
    }
}

#[test]
fn the_cluster_file_example_parses() {
    let block = SPEC
        .split("## Cluster file")
        .nth(1)
        .unwrap()
        .split("```toml")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "0123456789abcdef\n").unwrap();
    let path = dir.path().join("cluster.toml");
    std::fs::write(&path, block.replace("/etc/caskade/secret", "secret")).unwrap();
    let f = caskade::cluster::config::ClusterFile::load(&path).unwrap();
    assert_eq!(
        (f.name.as_str(), f.nodes.len(), f.secret.as_slice()),
        ("prod", 1, &b"0123456789abcdef"[..])
    );
    assert_eq!(f.forward_timeout.as_millis(), 1000);
    assert_eq!(f.max_in_flight, 4096);
}

#[test]
fn replication_layouts() {
    use caskade::cluster::PartitionSet;
    use caskade::protocol::peer::repl::{self, flags, status, Position, Record, RecordType, Records};
    let mut set = PartitionSet::empty();
    set.insert(3);
    set.insert(1023);
    // REPL_OPEN: the set is the value.
    let mut buf = Vec::new();
    repl::write_open(&mut buf, 9, &set);
    let f = decode(&buf);
    assert_eq!((f.header.opcode, f.partition(), f.header.cas, f.extras.len(), f.key.len()), (0xD0, 0, 0, 0, 0));
    check_layout("REPL_OPEN request (0xD0)", 0, f.value, &[("partitions", Want::Bytes(set.0.to_vec()))]);
    assert_eq!(f.value[0], 1 << 3, "partition 3 at bit 3 of byte 0");
    assert_eq!(f.value[127], 0x80, "partition 1023 at bit 7 of byte 127");
    // Positions.
    let mut buf = Vec::new();
    let p = Position { partition: 0x0102, seqno: 0x0304_0506_0708_090A, whole: true, branch: 0x1112_1314_1516_1718 };
    repl::write_positions(&mut buf, Op::ReplOpen, 9, [p].into_iter());
    let f = decode(&buf);
    assert_eq!((f.status(), f.header.opaque), (status::OK, 9));
    check_layout(
        "Positions (the OK answer to REPL_OPEN and REPL_CHANGES)",
        0,
        f.value,
        &[("partition", Want::Int(0x0102)), ("seqno", Want::Int(0x0304_0506_0708_090A)), ("whole", Want::Int(1)), ("branch", Want::Int(0x1112_1314_1516_1718))],
    );
    assert_eq!(repl::parse_positions(&f), Ok(vec![p]));
    // A record.
    let r = Record { kind: RecordType::Put, partition: 0x0203, seqno: 0x11, cas: 0x22, flags: 0x33, expiry: 0x44, key: b"the-key", value: b"the value" };
    let mut rec = Vec::new();
    r.write(&mut rec);
    let mut rest = r.key.to_vec();
    rest.extend_from_slice(r.value);
    check_layout(
        "REPL_CHANGES request (0xD1)",
        0,
        &rec,
        &[
            ("type", Want::Int(1)),
            ("partition", Want::Int(0x0203)),
            ("seqno", Want::Int(0x11)),
            ("cas", Want::Int(0x22)),
            ("flags", Want::Int(0x33)),
            ("expiry", Want::Int(0x44)),
            ("key_len", Want::Int(7)),
            ("value_len", Want::Int(9)),
            ("key", Want::Bytes(rest)),
        ],
    );
    let mut buf = Vec::new();
    repl::write_changes(&mut buf, 9, true, &rec);
    let f = decode(&buf);
    assert_eq!((f.header.opcode, f.partition()), (0xD1, flags::PERSIST));
    // The record types: each row's type byte, and whether a key and a value are allowed.
    let types = &tables("REPL_CHANGES request (0xD1)")[1];
    assert_eq!(types.len(), 8);
    for row in types {
        let t = num(&row[0]) as u8;
        let set_key = row[4].contains("partition set");
        let key: &[u8] = if set_key { &set.0 } else if row[4] == "-" { b"" } else { b"k" };
        let value: &[u8] = if row[5] == "-" { b"" } else { b"v" };
        let seqno = if row[3].contains("> 0") { 5 } else { 0 };
        let mut bytes = Vec::new();
        let kind = match ident(&row[1]) {
            "Put" => RecordType::Put,
            "Delete" => RecordType::Delete,
            "Flush" => RecordType::Flush,
            "SnapshotBegin" => RecordType::SnapshotBegin,
            "SnapshotItem" => RecordType::SnapshotItem,
            "SnapshotEnd" => RecordType::SnapshotEnd,
            "SnapshotDelete" => RecordType::SnapshotDelete,
            "Branch" => RecordType::Branch,
            other => panic!("unknown record type {other}"),
        };
        assert_eq!(kind as u8, t, "{kind:?}");
        let partition = if key == b"k" { caskade::cluster::partition_of(b"k") } else { 0 };
        Record { kind, partition, seqno, cas: 0, flags: 0, expiry: 0, key, value }.write(&mut bytes);
        let back: Vec<_> = Records::new(&bytes).collect();
        assert!(matches!(back[..], [Ok(_)]), "{kind:?} as the table says parses");
        if row[5] == "-" {
            let mut with_value = Vec::new();
            Record { kind, partition, seqno, cas: 0, flags: 0, expiry: 0, key, value: b"x" }.write(&mut with_value);
            assert!(Records::new(&with_value).next().unwrap().is_err(), "{kind:?} takes no value");
        }
    }
    let consts: BTreeMap<&str, u16> = [
        ("OK", status::OK),
        ("NOT_BACKUP", status::NOT_BACKUP),
        ("BAD_SEQNO", status::BAD_SEQNO),
        ("MALFORMED", status::MALFORMED),
        ("STORAGE_ERROR", status::STORAGE_ERROR),
        ("TEMPORARY_FAILURE", status::TEMPORARY_FAILURE),
    ]
    .into_iter()
    .collect();
    let rows = table("Replication statuses");
    assert_eq!(rows.len(), consts.len());
    for row in &rows {
        assert_eq!(consts.get(ident(&row[1])), Some(&(num(&row[0]) as u16)), "{}", row[1]);
    }
    let fl = &tables("REPL_CHANGES request (0xD1)")[2];
    assert_eq!((num(&fl[0][0]) as u16, ident(&fl[0][1])), (flags::PERSIST, "PERSIST"));
    // SnapshotBegin's flags: 0 (full resync) and BACKFILL parse; anything else is refused.
    for (f, ok) in [(0, true), (repl::SNAPSHOT_BACKFILL, true), (2, false)] {
        let mut bytes = Vec::new();
        Record { kind: RecordType::SnapshotBegin, partition: 0, seqno: 0, cas: 0, flags: f, expiry: 0, key: &set.0, value: b"" }.write(&mut bytes);
        assert_eq!(Records::new(&bytes).next().unwrap().is_ok(), ok, "SnapshotBegin flags {f}");
    }
}

#[test]
fn verify_layouts() {
    use caskade::cluster::PartitionSet;
    use caskade::protocol::peer::repl::{self, Digest};
    let mut set = PartitionSet::empty();
    set.insert(5);
    let mut buf = Vec::new();
    repl::write_verify(&mut buf, 3, &set, 0x0A0B_0C0D);
    let f = decode(&buf);
    check_layout(
        "REPL_VERIFY request (0xD2) and its digests",
        0,
        f.value,
        &[("partitions", Want::Bytes(set.0.to_vec())), ("now", Want::Int(0x0A0B_0C0D))],
    );
    assert_eq!(repl::parse_verify(f.value), Some((set, 0x0A0B_0C0D)));
    let d = Digest { partition: 5, seqno: 0x11, digest: 0x2233_4455_6677_8899, items: 0x0102 };
    let mut buf = Vec::new();
    repl::write_digests(&mut buf, 3, &[d]);
    let f = decode(&buf);
    check_layout(
        "REPL_VERIFY request (0xD2) and its digests",
        1,
        f.value,
        &[("partition", Want::Int(5)), ("seqno", Want::Int(0x11)), ("digest", Want::Int(0x2233_4455_6677_8899)), ("items", Want::Int(0x0102))],
    );
    assert_eq!(repl::parse_digests(f.value), Ok(vec![d]));
}

#[test]
fn forwarded_durability_codes() {
    use caskade::protocol::Durability;
    let rows = table("Durability of a forwarded request");
    let levels = [None, Some(Durability::None), Some(Durability::Majority), Some(Durability::PersistMajority)];
    assert_eq!(rows.len(), levels.len(), "one row per level");
    let cmd = Command::Delete { key: &b"key-17"[..], cas: 0 };
    for (row, level) in rows.iter().zip(levels) {
        let code = num(&row[0]) as u8;
        assert_eq!(Durability::peer_code(level), code, "{row:?}");
        let mut out = Vec::new();
        forward::write_request(&mut out, 0x0123, 1, &cmd, None, level);
        assert_eq!(out[5], code, "data_type carries the level");
        assert_eq!(forward::parse_request(&decode(&out)).map(|f| f.durability), Ok(level));
    }
    let mut out = Vec::new();
    forward::write_request(&mut out, 0x0123, 1, &cmd, None, None);
    out[5] = 4;
    assert!(forward::parse_request(&decode(&out)).is_err(), "any other code is malformed");
}
