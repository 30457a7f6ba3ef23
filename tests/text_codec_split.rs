//! Property test of the text codec as a connection uses it: a pipeline of requests (good ones,
//! refused ones, stores whose data block is discarded) arrives in chunks cut anywhere, and
//! decoding what has been buffered after each chunk gives exactly the events that decoding
//! each request on its own gives, in order, with nothing left over.

use caskade::protocol::binary::Limits;
use caskade::protocol::text::decode;
use proptest::prelude::*;

const LIMIT: usize = 64;
const LIMITS: Limits = Limits { max_value_len: LIMIT };

/// Decodes `chunks` as a connection does: append, then decode until more bytes are needed,
/// discarding what an error says to discard. Returns one line per request or error.
fn run<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    let (mut buf, mut skip, mut events) = (Vec::new(), 0u64, Vec::new());
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            if skip > 0 {
                let n = skip.min(buf.len() as u64) as usize;
                buf.drain(..n);
                skip -= n as u64;
                if skip > 0 {
                    break;
                }
            }
            match decode(&buf, &LIMITS) {
                Ok(None) => break,
                Ok(Some((req, used))) => {
                    events.push(format!("{req:?}"));
                    buf.drain(..used);
                }
                Err(e) => {
                    events.push(format!("{e:?}"));
                    assert!(!e.close, "no request here closes the connection");
                    buf.drain(..e.used);
                    skip = e.skip;
                }
            }
        }
    }
    assert!(buf.is_empty() && skip == 0, "left over: {:?} and {skip} to skip", String::from_utf8_lossy(&buf));
    events
}

fn key() -> impl Strategy<Value = String> {
    "[a-z0-9:_]{1,12}"
}

fn value(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b' '), any::<u8>()], 0..max)
}

fn noreply() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(""), Just(" noreply")]
}

fn store(cmd: &str, key: &str, flags: u32, exptime: i32, value: &[u8], extra: &str) -> Vec<u8> {
    let mut b = format!("{cmd} {key} {flags} {exptime} {}{extra}\r\n", value.len()).into_bytes();
    b.extend_from_slice(value);
    b.extend_from_slice(b"\r\n");
    b
}

/// One request, as bytes on the wire.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let cmds = prop_oneof![Just("set"), Just("add"), Just("replace"), Just("append"), Just("prepend")];
    prop_oneof![
        (prop_oneof![Just("get"), Just("gets")], prop::collection::vec(key(), 1..6))
            .prop_map(|(c, keys)| format!("{c} {}\r\n", keys.join(" ")).into_bytes()),
        (prop_oneof![Just("gat"), Just("gats")], -5i32..100, prop::collection::vec(key(), 1..4))
            .prop_map(|(c, t, keys)| format!("{c} {t} {}\r\n", keys.join("  ")).into_bytes()),
        (cmds, key(), any::<u32>(), -10i32..100_000, value(LIMIT), noreply())
            .prop_map(|(c, k, f, e, v, n)| store(c, &k, f, e, &v, n)),
        (key(), any::<u64>(), value(LIMIT), noreply())
            .prop_map(|(k, cas, v, n)| store("cas", &k, 0, 0, &v, &format!(" {cas}{n}"))),
        (key(), noreply()).prop_map(|(k, n)| format!("delete {k}{n}\r\n").into_bytes()),
        (prop_oneof![Just("incr"), Just("decr")], key(), any::<u64>(), noreply())
            .prop_map(|(c, k, d, n)| format!("{c} {k} {d}{n}\r\n").into_bytes()),
        (key(), -5i32..1000, noreply()).prop_map(|(k, t, n)| format!("touch {k} {t}{n}\n").into_bytes()),
        prop_oneof![
            Just(b"flush_all\r\n".to_vec()),
            Just(b"flush_all 10 noreply\r\n".to_vec()),
            Just(b"version\r\n".to_vec()),
            Just(b"verbosity 1\r\n".to_vec()),
            Just(b"stats\r\n".to_vec()),
            Just(b"mn\r\n".to_vec()),
        ],
        (key(), prop::sample::subsequence(vec!["v", "s", "f", "c", "k", "q", "O123", "T30", "b"], 0..9))
            .prop_map(|(k, f)| format!("mg {k} {}\r\n", f.join(" ")).into_bytes()),
        (key(), value(LIMIT), prop::sample::subsequence(vec!["c", "k", "q", "Oxy", "T-1", "F9", "MA", "C5"], 0..8))
            .prop_map(|(k, v, f)| {
                let mut b = format!("ms {k} {} {}\r\n", v.len(), f.join(" ")).into_bytes();
                b.extend_from_slice(&v);
                b.extend_from_slice(b"\r\n");
                b
            }),
        (key(), prop::sample::subsequence(vec!["q", "k", "O1", "C0"], 0..4))
            .prop_map(|(k, f)| format!("md {k} {}\r\n", f.join(" ")).into_bytes()),
        (key(), prop::sample::subsequence(vec!["N0", "J5", "D3", "MD", "v", "c", "q", "T9"], 0..8))
            .prop_map(|(k, f)| format!("ma {k} {}\r\n", f.join(" ")).into_bytes()),
        // Refused: unknown commands, bad numbers, flags caskade does not serve.
        prop_oneof![
            Just(b"bogus command\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"incr k x\r\n".to_vec()),
            Just(b"mg k t v\r\n".to_vec()),
            Just(b"set k 0 0 nan\r\n".to_vec()),
        ],
        // A data block that does not end in \r\n (its length is right, its end is not).
        (key(), value(LIMIT)).prop_map(|(k, v)| {
            let mut b = format!("set {k} 0 0 {}\r\n", v.len()).into_bytes();
            b.extend_from_slice(&v);
            b.extend_from_slice(b"XY");
            b
        }),
        // A store over the limit: refused from its line, its block discarded.
        (key(), LIMIT + 1..LIMIT * 4, prop_oneof![Just("set"), Just("ms")]).prop_map(|(k, n, c)| {
            let mut b = if c == "set" { format!("set {k} 0 0 {n}\r\n") } else { format!("ms {k} {n} T0\r\n") }.into_bytes();
            b.extend((0..n).map(|i| b"ab\r\n"[i % 4]));
            b.extend_from_slice(b"\r\n");
            b
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_cut_of_a_pipeline_decodes_like_its_requests_one_by_one(
        reqs in prop::collection::vec(request(), 1..24),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let expected: Vec<String> = reqs.iter().flat_map(|r| run([r.as_slice()])).collect();
        let stream: Vec<u8> = reqs.concat();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in points.into_iter().chain([stream.len()]) {
            chunks.push(&stream[start..p]);
            start = p;
        }
        prop_assert_eq!(run(chunks.iter().copied()), expected.clone());
        // Byte by byte as well.
        prop_assert_eq!(run(stream.chunks(1)), expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
        let _ = decode(&bytes, &LIMITS);
        if let Ok(Some((_, used))) = decode(&bytes, &LIMITS) {
            prop_assert!(used > 0 && used <= bytes.len());
        }
    }
}
