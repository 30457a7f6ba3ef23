//! The text codec from literal lines: every command, every error line memcached 1.6.18 gives
//! (checked against it byte for byte), and the replies written from outcomes.

use super::*;
use crate::protocol::binary::Limits;
use crate::storage::{Command, Outcome, StoreMode};

const LIMITS: Limits = Limits { max_value_len: 1024 };

fn ok(buf: &str) -> (Request<'_>, usize) {
    match decode(buf.as_bytes(), &LIMITS) {
        Ok(Some(r)) => r,
        other => panic!("{buf:?}: {other:?}"),
    }
}

fn req(buf: &str) -> Request<'_> {
    let (r, used) = ok(buf);
    assert_eq!(used, buf.len(), "{buf:?} uses all of its bytes");
    r
}

fn err(buf: &str) -> DecodeError {
    match decode(buf.as_bytes(), &LIMITS) {
        Err(e) => e,
        other => panic!("{buf:?}: expected an error, got {other:?}"),
    }
}

/// The error line for `buf`, which must be dropped whole.
fn error_line(buf: &str) -> Option<&'static str> {
    let e = err(buf);
    assert_eq!((e.used, e.skip, e.close), (buf.len(), 0, false), "{buf:?}");
    e.reply
}

fn keys<'a>(r: &Request<'a>) -> Vec<&'a [u8]> {
    match r {
        Request::Get { keys, .. } => keys.iter().collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn retrieval_commands() {
    let r = req("get a bb ccc\r\n");
    assert!(matches!(r, Request::Get { cas: false, touch: None, .. }));
    assert_eq!(keys(&r), [&b"a"[..], b"bb", b"ccc"]);
    assert!(matches!(req("gets a\r\n"), Request::Get { cas: true, touch: None, .. }));
    let r = req("gat 30 a b\r\n");
    assert!(matches!(r, Request::Get { cas: false, touch: Some(30), .. }));
    assert_eq!(keys(&r), [&b"a"[..], b"b"]);
    assert!(matches!(req("gats -1 a\r\n"), Request::Get { cas: true, touch: Some(request::EXPIRED), .. }));
    // `gat 10` has no key: memcached answers END.
    assert_eq!(keys(&req("gat 10\r\n")), Vec::<&[u8]>::new());
    // A bare \n ends a line too, and many keys go past memcached's 24 tokens.
    let many: String = (0..100).map(|i| format!(" k{i}")).collect();
    let line = format!("get{many}\n");
    assert_eq!(keys(&req(&line)).len(), 100);
    let long_key = "k".repeat(250);
    assert_eq!(keys(&req(&format!("get {long_key}\r\n"))), [long_key.as_bytes()]);
}

#[test]
fn retrieval_errors() {
    assert_eq!(error_line("get\r\n"), Some("ERROR"));
    assert_eq!(error_line("gets\r\n"), Some("ERROR"));
    assert_eq!(error_line("gat x a\r\n"), Some("CLIENT_ERROR invalid exptime argument"));
    let long_key = "k".repeat(251);
    assert_eq!(error_line(&format!("get a {long_key} b\r\n")), Some("CLIENT_ERROR bad command line format"));
}

#[test]
fn storage_commands() {
    let r = req("set k 5 100 3\r\nabc\r\n");
    assert_eq!(
        r,
        Request::Store { kind: StoreKind::Set, key: b"k", flags: 5, exptime: 100, value: b"abc", cas: 0, noreply: false }
    );
    for (cmd, kind) in [
        ("add", StoreKind::Add),
        ("replace", StoreKind::Replace),
        ("append", StoreKind::Append),
        ("prepend", StoreKind::Prepend),
    ] {
        let line = format!("{cmd} k 0 0 1 noreply\r\nx\r\n");
        assert!(matches!(req(&line), Request::Store { kind: k, noreply: true, .. } if k == kind), "{cmd}");
    }
    let r = req("cas k 1 2 3 99 noreply\r\na\r\n\r\n");
    assert!(matches!(r, Request::Store { kind: StoreKind::Cas, cas: 99, value: b"a\r\n", noreply: true, .. }));
    // An empty value, a negative exptime (expired at once), flags past 32 bits (cut, as 1.6.18).
    assert!(matches!(req("set k 0 0 0\r\n\r\n"), Request::Store { value: b"", .. }));
    assert!(matches!(req("set k 0 -1 1\r\nx\r\n"), Request::Store { exptime: request::EXPIRED, .. }));
    assert!(matches!(req("set k 4294967297 0 1\r\nx\r\n"), Request::Store { flags: 1, .. }));
    // A sixth token that is not `noreply` is ignored.
    assert!(matches!(req("set k 0 0 1 2\r\nx\r\n"), Request::Store { noreply: false, .. }));
}

#[test]
fn storage_waits_for_its_data_block() {
    let full = "set k 0 0 5\r\nhello\r\nget k\r\n";
    for cut in 0..20 {
        assert_eq!(decode(&full.as_bytes()[..cut], &LIMITS), Ok(None), "cut at {cut}");
    }
    let (_, used) = ok(full);
    assert_eq!(used, 20);
    assert_eq!(frame_len(b"set k 0 0 5\r\nhel", &LIMITS), 20);
    assert_eq!(frame_len(b"set k 0 0", &LIMITS), 0);
}

#[test]
fn storage_errors() {
    let bad = Some("CLIENT_ERROR bad command line format");
    assert_eq!(error_line("set k 0 0\r\n"), Some("ERROR"));
    assert_eq!(error_line("set k 0 0 1 noreply extra\r\n"), Some("ERROR"));
    assert_eq!(error_line("cas k 0 0 1\r\n"), Some("ERROR"));
    assert_eq!(error_line("set k 0 0 abc\r\n"), bad);
    assert_eq!(error_line("set k 0 0 -1\r\n"), bad);
    assert_eq!(error_line("set k -1 0 1\r\n"), bad);
    assert_eq!(error_line("set k 0 x 1\r\n"), bad);
    assert_eq!(error_line("cas k 0 0 1 x\r\n"), bad);
    assert_eq!(error_line(&format!("set {} 0 0 1\r\n", "k".repeat(251))), bad);
    // noreply silences a format error (the data block is then read as a command).
    assert_eq!(error_line("set k 0 0 abc noreply\r\n"), None);
    // A value over -I: refused from the line alone, its block discarded as it comes.
    let e = err("set k 0 0 1025\r\n");
    assert_eq!(e, DecodeError { reply: Some("SERVER_ERROR object too large for cache"), used: 16, skip: 1027, close: false, unlink: Some(Unlink { start: 4, len: 1, base64: false }) });
    assert_eq!(err("set k 0 0 5000 noreply\r\n").reply, None);
    // A block that does not end in \r\n: memcached reads it and goes on after it.
    let e = err("set k 0 0 5\r\nhelloXX\r\n");
    assert_eq!(e, DecodeError { reply: Some("CLIENT_ERROR bad data chunk"), used: 20, skip: 0, close: false, unlink: None });
    assert_eq!(err("set k 0 0 5 noreply\r\nhelloXX\r\n").reply, None);
}

#[test]
fn other_classic_commands() {
    assert_eq!(req("delete k\r\n"), Request::Delete { key: b"k", noreply: false });
    assert_eq!(req("delete k 0\r\n"), Request::Delete { key: b"k", noreply: false });
    assert_eq!(req("delete k noreply\r\n"), Request::Delete { key: b"k", noreply: true });
    assert_eq!(req("delete k 0 noreply\r\n"), Request::Delete { key: b"k", noreply: true });
    assert_eq!(req("incr k 5\r\n"), Request::Arith { incr: true, key: b"k", delta: 5, noreply: false });
    assert_eq!(
        req("decr k 18446744073709551615 noreply\r\n"),
        Request::Arith { incr: false, key: b"k", delta: u64::MAX, noreply: true }
    );
    assert_eq!(req("touch k 10\r\n"), Request::Touch { key: b"k", exptime: 10, noreply: false });
    assert_eq!(req("touch k -5 noreply\r\n"), Request::Touch { key: b"k", exptime: request::EXPIRED, noreply: true });
    assert_eq!(req("flush_all\r\n"), Request::FlushAll { delay: 0, noreply: false });
    assert_eq!(req("flush_all 10\r\n"), Request::FlushAll { delay: 10, noreply: false });
    assert_eq!(req("flush_all -1\r\n"), Request::FlushAll { delay: 0, noreply: false });
    assert_eq!(req("flush_all noreply\r\n"), Request::FlushAll { delay: 0, noreply: true });
    assert_eq!(req("flush_all 10 noreply\r\n"), Request::FlushAll { delay: 10, noreply: true });
    assert_eq!(req("version\r\n"), Request::Version);
    assert_eq!(req("quit\r\n"), Request::Quit);
    assert_eq!(req("verbosity 1\r\n"), Request::Verbosity { level: 1, noreply: false });
    assert_eq!(req("verbosity 1 noreply\r\n"), Request::Verbosity { level: 1, noreply: true });
    assert_eq!(req("verbosity 1 foo\r\n"), Request::Verbosity { level: 1, noreply: false });
    assert_eq!(req("stats\r\n"), Request::Stats { group: b"" });
    assert_eq!(req("stats settings\r\n"), Request::Stats { group: b"settings" });
    // `detail` and its argument are one group, as binary STAT's key.
    assert_eq!(req("stats detail  on\r\n"), Request::Stats { group: b"detail  on" });
    assert_eq!(req("stats detail\r\n"), Request::Stats { group: b"detail" });
    assert_eq!(req("stats settings x\r\n"), Request::Stats { group: b"settings" });
    assert_eq!(req("shutdown\r\n"), Request::Shutdown { graceful: Some(false) });
    assert_eq!(req("shutdown graceful\r\n"), Request::Shutdown { graceful: Some(true) });
    assert_eq!(req("shutdown now\r\n"), Request::Shutdown { graceful: None });
}

#[test]
fn other_classic_errors() {
    let usage = Some("CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]");
    assert_eq!(error_line("delete k 1\r\n"), usage);
    assert_eq!(error_line("delete k x y\r\n"), usage);
    assert_eq!(error_line("delete k x noreply\r\n"), None);
    assert_eq!(error_line("delete\r\n"), Some("ERROR"));
    assert_eq!(error_line("delete a b c d\r\n"), Some("ERROR"));
    assert_eq!(error_line("incr k\r\n"), Some("ERROR"));
    assert_eq!(error_line("incr k x\r\n"), Some("CLIENT_ERROR invalid numeric delta argument"));
    assert_eq!(error_line("incr k -1\r\n"), Some("CLIENT_ERROR invalid numeric delta argument"));
    assert_eq!(error_line("decr k 18446744073709551616\r\n"), Some("CLIENT_ERROR invalid numeric delta argument"));
    assert_eq!(error_line("incr k x noreply\r\n"), None);
    assert_eq!(error_line("touch k\r\n"), Some("ERROR"));
    assert_eq!(error_line("touch k x\r\n"), Some("CLIENT_ERROR invalid exptime argument"));
    assert_eq!(error_line("flush_all x\r\n"), Some("CLIENT_ERROR invalid exptime argument"));
    assert_eq!(error_line("flush_all 1 2 3\r\n"), Some("ERROR"));
    assert_eq!(error_line("verbosity\r\n"), Some("ERROR"));
    assert_eq!(error_line("verbosity x\r\n"), Some("CLIENT_ERROR bad command line format"));
    assert_eq!(error_line("verbosity noreply\r\n"), None);
    let long_key = "k".repeat(251);
    assert_eq!(error_line(&format!("incr {long_key} 1\r\n")), Some("CLIENT_ERROR bad command line format"));
    assert_eq!(error_line(&format!("delete {long_key}\r\n")), Some("CLIENT_ERROR bad command line format"));
}

#[test]
fn unknown_and_empty_lines_are_error() {
    for line in ["\r\n", "\n", "x\r\n", "gibberish\r\n", "GET a\r\n", "mx k\r\n", "   \r\n", "gx a\r\n"] {
        assert_eq!(error_line(line), Some("ERROR"), "{line:?}");
    }
}

#[test]
fn a_line_over_2048_bytes_closes_unless_it_is_a_multiget() {
    let junk = vec![b'x'; 2049];
    assert_eq!(decode(&junk[..2048], &LIMITS), Ok(None));
    assert_eq!(decode(&junk, &LIMITS), Err(DecodeError { reply: None, used: 0, skip: 0, close: true, unlink: None }));
    let gat = format!("gat 0 {}", "a ".repeat(1100));
    assert!(err(&gat).close);
    // A get may grow up to -I (here 2048 bytes, the floor), then it closes too.
    let get = format!("get {}", "a ".repeat(1100));
    let limits = Limits { max_value_len: 1 << 20 };
    assert_eq!(decode(get.as_bytes(), &limits), Ok(None));
    assert!(decode(get.as_bytes(), &LIMITS).unwrap_err().close);
    // A long line that has its newline is read like any other.
    let long = format!("set {} 0 0 1\r\n", "k".repeat(3000));
    assert_eq!(error_line(&long), Some("CLIENT_ERROR bad command line format"));
}

#[test]
fn meta_commands() {
    assert_eq!(req("mn\r\n"), Request::MetaNoop);
    match req("mg key s v f c k Oop q T30\r\n") {
        Request::MetaGet { key, flags } => {
            assert_eq!(key.as_bytes(), b"key");
            assert!(flags.value && flags.quiet);
            assert_eq!(flags.ttl, Some(30));
        }
        other => panic!("{other:?}"),
    }
    match req("ms key 3 F5 T0 MA C7 c\r\nabc\r\n") {
        Request::MetaSet { key, value, flags } => {
            assert_eq!((key.as_bytes(), value), (&b"key"[..], &b"abc"[..]));
            assert_eq!((flags.client_flags, flags.mode, flags.cas), (5, Some(b'A'), Some(7)));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(req("md key q C3\r\n"), Request::MetaDelete { .. }));
    assert!(matches!(req("ma key N0 J10 MD D5 v\r\n"), Request::MetaArith { .. }));
    match req("mg Zm9v b k v\r\n") {
        Request::MetaGet { key, flags } => {
            assert_eq!(key.as_bytes(), b"foo");
            assert!(flags.base64);
        }
        other => panic!("{other:?}"),
    }
    match req("me Zm9v b\r\n") {
        Request::MetaDebug { key, base64: true } => assert_eq!(key.as_bytes(), b"foo"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(req("me foo\r\n"), Request::MetaDebug { base64: false, .. }));
}

#[test]
fn meta_errors() {
    let bad = Some("CLIENT_ERROR bad command line format");
    assert_eq!(error_line("mg\r\n"), Some("ERROR"));
    assert_eq!(error_line("ms k\r\n"), bad);
    assert_eq!(error_line("ms k x\r\n"), bad);
    assert_eq!(error_line("ms k -1\r\n"), bad);
    assert_eq!(error_line("md\r\n"), Some("ERROR"));
    assert_eq!(error_line("me\r\n"), bad);
    assert_eq!(error_line("me a b\r\n"), bad);
    assert_eq!(error_line(&format!("mg {} v\r\n", "k".repeat(251))), bad);
    assert_eq!(error_line("mg k zz\r\n"), Some("CLIENT_ERROR invalid flag"));
    assert_eq!(error_line("mg k v v\r\n"), Some("CLIENT_ERROR duplicate flag"));
    assert_eq!(error_line("mg !!! b v\r\n"), Some("CLIENT_ERROR error decoding key"));
    assert_eq!(error_line(&format!("mg k O{}\r\n", "x".repeat(32))), Some("CLIENT_ERROR opaque token too long"));
    let flags: String = (b'a'..=b'z').take(19).map(|c| format!(" {}", c as char)).collect();
    assert_eq!(error_line(&format!("mg k{flags}\r\n")), Some("CLIENT_ERROR options flags are too long"));
    assert_eq!(error_line(&format!("md k{flags}\r\n")), Some("CLIENT_ERROR options flags too long"));
    assert_eq!(error_line("md k Cx\r\n"), Some("CLIENT_ERROR invalid or duplicate flag"));
    assert_eq!(error_line("ma k Dx\r\n"), Some("CLIENT_ERROR invalid or duplicate flag"));
    assert_eq!(error_line("ma k Mx\r\n"), Some("CLIENT_ERROR invalid mode for ma M token"));
    // ms errors after its length is known discard the data block, and are never silenced.
    for (line, reply) in [
        ("ms k 3 MX q\r\n", "CLIENT_ERROR invalid mode for ms M token"),
        ("ms k 3 S3\r\n", "CLIENT_ERROR invalid flag"),
        ("ms k 3 T\r\n", "CLIENT_ERROR bad token in command line format"),
        ("ms k 3 Fx\r\n", "CLIENT_ERROR bad command line format"),
        ("ms !!! 3 b\r\n", "CLIENT_ERROR error decoding key"),
        ("ms k 2000 q\r\n", "SERVER_ERROR object too large for cache"),
    ] {
        let e = err(line);
        assert_eq!((e.reply, e.used, e.close), (Some(reply), line.len(), false), "{line:?}");
        let vlen: u64 = line.split(' ').nth(2).unwrap().parse().unwrap();
        assert_eq!(e.skip, vlen + 2, "{line:?}");
    }
    let e = err("ms k 3 q\r\nxyzXX\r\n");
    assert_eq!((e.reply, e.used), (Some("CLIENT_ERROR bad data chunk"), 15));
}

fn written(to: text::ReplyTo, key: &[u8], outcome: Outcome<&[u8]>) -> String {
    let mut out = Vec::new();
    write_outcome(&mut out, &to, key, &outcome);
    String::from_utf8(out).unwrap()
}

use crate::protocol::text;

/// The reply a whole request line gets from one outcome.
fn answer(line: &str, outcome: Outcome<&[u8]>) -> String {
    let r = req(line);
    match action(&r) {
        Action::Storage(cmd, to) => written(to, cmd.key().unwrap_or(b"k"), outcome),
        Action::Get { reply, keys, .. } => written(reply, keys.iter().next().unwrap(), outcome),
        other => panic!("{other:?}"),
    }
}

const HIT: Outcome<&[u8]> = Outcome::Value { flags: 7, cas: 42, value: b"abc" };

#[test]
fn classic_replies() {
    assert_eq!(answer("get k\r\n", HIT), "VALUE k 7 3\r\nabc\r\n");
    assert_eq!(answer("gets k\r\n", HIT), "VALUE k 7 3 42\r\nabc\r\n");
    assert_eq!(answer("gat 1 k\r\n", HIT), "VALUE k 7 3\r\nabc\r\n");
    assert_eq!(answer("get k\r\n", Outcome::NotFound), "");
    let set = "set k 0 0 1\r\nx\r\n";
    assert_eq!(answer(set, Outcome::Done { cas: 1 }), "STORED\r\n");
    assert_eq!(answer(set, Outcome::NotStored), "NOT_STORED\r\n");
    assert_eq!(answer(set, Outcome::Exists), "EXISTS\r\n");
    assert_eq!(answer(set, Outcome::NotFound), "NOT_FOUND\r\n");
    assert_eq!(answer(set, Outcome::TooLarge), "SERVER_ERROR object too large for cache\r\n");
    assert_eq!(answer(set, Outcome::OutOfMemory), "SERVER_ERROR out of memory storing object\r\n");
    assert_eq!(answer(set, Outcome::StorageError), "SERVER_ERROR storage error\r\n");
    assert_eq!(answer("append k 0 0 1\r\nx\r\n", Outcome::TooLarge), "NOT_STORED\r\n");
    assert_eq!(answer("set k 0 0 1 noreply\r\nx\r\n", Outcome::Exists), "");
    assert_eq!(answer("delete k\r\n", Outcome::Done { cas: 0 }), "DELETED\r\n");
    assert_eq!(answer("delete k\r\n", Outcome::NotFound), "NOT_FOUND\r\n");
    assert_eq!(answer("incr k 1\r\n", Outcome::Counter { value: 18446744073709551615, cas: 2 }), "18446744073709551615\r\n");
    assert_eq!(answer("incr k 1\r\n", Outcome::NotFound), "NOT_FOUND\r\n");
    assert_eq!(
        answer("decr k 1\r\n", Outcome::NonNumeric),
        "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    );
    assert_eq!(answer("incr k 1\r\n", Outcome::OutOfMemory), "SERVER_ERROR out of memory\r\n");
    assert_eq!(answer("incr k 1 noreply\r\n", Outcome::Counter { value: 1, cas: 1 }), "");
    assert_eq!(answer("touch k 1\r\n", HIT), "TOUCHED\r\n");
    assert_eq!(answer("touch k 1\r\n", Outcome::NotFound), "NOT_FOUND\r\n");
    // `cas` with unique 0 runs as a read: an item means EXISTS.
    let r = req("cas k 0 0 1 0\r\nx\r\n");
    assert!(matches!(action(&r), Action::Storage(Command::Get { .. }, _)));
    assert_eq!(answer("cas k 0 0 1 0\r\nx\r\n", HIT), "EXISTS\r\n");
    assert_eq!(answer("cas k 0 0 1 0\r\nx\r\n", Outcome::NotFound), "NOT_FOUND\r\n");
}

#[test]
fn flush_is_ok_unless_noreply() {
    let r = req("flush_all 5\r\n");
    let Action::Storage(cmd, to) = action(&r) else { panic!() };
    assert_eq!(cmd, Command::Flush { delay: 5 });
    assert_eq!(written(to, b"", Outcome::Done { cas: 0 }), "OK\r\n");
    assert_eq!(answer("flush_all noreply\r\n", Outcome::Done { cas: 0 }), "");
}

#[test]
fn meta_replies() {
    assert_eq!(answer("mg k v\r\n", HIT), "VA 3\r\nabc\r\n");
    assert_eq!(answer("mg k\r\n", HIT), "HD\r\n");
    assert_eq!(answer("mg k s v f c k Oop q\r\n", HIT), "VA 3 s3 f7 c42 kk Oop\r\nabc\r\n");
    assert_eq!(answer("mg k v\r\n", Outcome::NotFound), "EN\r\n");
    assert_eq!(answer("mg k k O1 s\r\n", Outcome::NotFound), "EN kk O1\r\n");
    assert_eq!(answer("mg k v q Oxx k\r\n", Outcome::NotFound), "");
    assert_eq!(answer("mg Zm9v b k v\r\n", HIT), "VA 3 kZm9v b\r\nabc\r\n");
    let ms = "ms k 1 c k O1\r\nx\r\n";
    assert_eq!(answer(ms, Outcome::Done { cas: 9 }), "HD c9 kk O1\r\n");
    assert_eq!(answer(ms, Outcome::NotStored), "NS c0 kk O1\r\n");
    assert_eq!(answer(ms, Outcome::Exists), "EX c0 kk O1\r\n");
    assert_eq!(answer(ms, Outcome::NotFound), "NF c0 kk O1\r\n");
    assert_eq!(answer("ms k 1 q\r\nx\r\n", Outcome::Done { cas: 9 }), "");
    assert_eq!(answer("ms k 1 q\r\nx\r\n", Outcome::NotStored), "NS\r\n");
    assert_eq!(answer("ms k 1 MA\r\nx\r\n", Outcome::TooLarge), "NS\r\n");
    // C0 on ms/md runs as a read.
    assert_eq!(answer("ms k 1 C0\r\nx\r\n", HIT), "EX\r\n");
    assert_eq!(answer("ms k 1 C0\r\nx\r\n", Outcome::NotFound), "NF\r\n");
    assert_eq!(answer("md k C0 k\r\n", HIT), "EX kk\r\n");
    assert_eq!(answer("md k k O7\r\n", Outcome::Done { cas: 0 }), "HD kk O7\r\n");
    assert_eq!(answer("md k q\r\n", Outcome::Done { cas: 0 }), "");
    assert_eq!(answer("md k q\r\n", Outcome::NotFound), "NF\r\n");
    assert_eq!(answer("ma k\r\n", Outcome::Counter { value: 12, cas: 3 }), "HD\r\n");
    assert_eq!(answer("ma k v c k O1\r\n", Outcome::Counter { value: 12, cas: 3 }), "VA 2 c3 kk O1\r\n12\r\n");
    assert_eq!(answer("ma k v c k O1\r\n", Outcome::NotFound), "NF kk O1\r\n");
    assert_eq!(answer("ma k C1 O6 k c\r\n", Outcome::Exists), "EX O6 kk\r\n");
    assert_eq!(answer("ma k q\r\n", Outcome::Counter { value: 1, cas: 1 }), "");
    assert_eq!(
        answer("ma k\r\n", Outcome::NonNumeric),
        "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    );
    assert_eq!(answer("me k\r\n", HIT), "ME k cas=42 size=3\r\n");
    assert_eq!(answer("me k\r\n", Outcome::NotFound), "EN\r\n");
}

#[test]
fn meta_commands_map_onto_storage_commands() {
    let cmd = |line: &str| {
        let r = req(line);
        match action(&r) {
            Action::Storage(cmd, _) => format!("{cmd:?}"),
            other => panic!("{other:?}"),
        }
    };
    let store = |mode, cas, exptime| {
        format!("{:?}", Command::Store { mode, key: &b"k"[..], value: &b"x"[..], flags: 3, exptime, cas })
    };
    assert_eq!(cmd("mg k T-1 v\r\n"), format!("{:?}", Command::GetAndTouch { key: &b"k"[..], exptime: request::EXPIRED }));
    assert_eq!(cmd("ms k 1 F3\r\nx\r\n"), store(StoreMode::Set, 0, 0));
    assert_eq!(cmd("ms k 1 F3 ME C5 T9\r\nx\r\n"), store(StoreMode::Add, 0, 9));
    assert_eq!(cmd("ms k 1 F3 MR C5\r\nx\r\n"), store(StoreMode::Replace, 5, 0));
    assert_eq!(cmd("ms k 1 F3 MA C0\r\nx\r\n"), store(StoreMode::Append, 0, 0));
    assert_eq!(cmd("ms k 1 F3 MP\r\nx\r\n"), store(StoreMode::Prepend, 0, 0));
    assert_eq!(cmd("md k C4\r\n"), format!("{:?}", Command::Delete { key: &b"k"[..], cas: 4 }));
    assert_eq!(
        cmd("ma k N30 J10 D5 M-\r\n"),
        format!(
            "{:?}",
            Command::Arith { incr: false, key: &b"k"[..], delta: 5, initial: Some(10), exptime: 30, cas: 0 }
        )
    );
    assert_eq!(
        cmd("ma k J10\r\n"),
        format!("{:?}", Command::Arith { incr: true, key: &b"k"[..], delta: 1, initial: None, exptime: 0, cas: 0 })
    );
    // ma T touches the counter once it has changed, on the same shard.
    let r = req("ma k T60\r\n");
    let Action::Storage(_, to) = action(&r) else { panic!() };
    assert_eq!(to.then(b"k", &Outcome::<&[u8]>::Counter { value: 1, cas: 1 }), Some(Command::Touch { key: &b"k"[..], exptime: 60 }));
    assert_eq!(to.then(b"k", &Outcome::<&[u8]>::NotFound), None);
}

#[test]
fn a_refused_set_or_meta_set_names_the_key_to_unlink() {
    let buf = "set k 0 0 5000 noreply\r\n";
    let u = err(buf).unlink.expect("set unlinks");
    assert_eq!(u.key(buf.as_bytes()).unwrap().as_bytes(), b"k");
    for cmd in ["add", "replace", "append", "prepend"] {
        assert_eq!(err(&format!("{cmd} k 0 0 5000\r\n")).unlink, None, "{cmd}");
    }
    assert_eq!(err("cas k 0 0 5000 1\r\n").unlink, None);
    let buf = "ms a2V5 5000 b MA\r\n";
    let e = err(buf);
    assert_eq!((e.reply, e.skip), (Some("SERVER_ERROR object too large for cache"), 5002));
    assert_eq!(e.unlink.unwrap().key(buf.as_bytes()).unwrap().as_bytes(), b"key");
    // Other refusals unlink nothing.
    assert_eq!(err("ms k 5000 MX\r\n").unlink, None);
}

#[test]
fn an_http_request_line_closes() {
    for line in ["GET / HTTP/1.0\r\n", "PUT /x HTTP/1.1\r\n", "DELETE /x HTTP/1.1\r\n", "HTTP/1.0\r\n", "mxx HTTP/1.0\r\n"] {
        let e = err(line);
        assert_eq!((e.reply, e.close), (None, true), "{line:?}");
    }
    for line in ["set x HTTP/1.1\r\n", "GET /\r\n", "GET / HTTP/1.0 x\r\n", "x HTTP/1.0\r\n", "mx HTTP/1.0\r\n", "touch HTTP/1.0\r\n"] {
        assert_eq!(error_line(line), Some("ERROR"), "{line:?}");
    }
    assert!(matches!(ok("get a HTTP/1.1\r\n").0, Request::Get { .. }));
}
