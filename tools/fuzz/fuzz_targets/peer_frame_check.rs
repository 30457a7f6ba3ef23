//! The properties the `peer_frame` fuzz target checks, in a module of its own so that
//! `tests/peer_frame_fuzz.rs` runs the same function over the seeds and random inputs in
//! plain `cargo test` (on stable, without libFuzzer).
//!
//! Input: the first byte picks the body limit (`max_body`: 16, 64, 1024 or 1 MiB bytes), the
//! rest is the byte stream a peer sent. Frames are decoded from the front, as a link does,
//! until the bytes run out or a frame error (which closes a link). For every step:
//!
//! * `Frame::decode` does not panic; an error is the one the header calls for; `Ok(None)`
//!   only while the frame is incomplete; a frame is exactly `24 + body length` bytes, its
//!   parts re-encode to exactly those bytes, it decodes the same from just those bytes, and
//!   one byte less is `Ok(None)`.
//! * Every parser is tried on every frame: `Hello::parse`, `HelloOk::parse`,
//!   `auth::parse_auth`, `forward::parse_request`, `forward::parse_outcome`. What parses
//!   re-encodes (with the code's writer) to a frame that parses to the same thing, and for
//!   the handshake frames to the same bytes except the fields a parse ignores (data type,
//!   and vbucket, opaque and CAS where they are unused).
//! * The request parsers succeed on requests only, the response parsers on responses only,
//!   and at most one of each side on any frame: no frame means two things.

use caskade::protocol::binary::{Header, HEADER_LEN, MAX_KEY_LEN, REQUEST_MAGIC, RESPONSE_MAGIC};
use caskade::protocol::peer::auth::{self, Hello, HelloOk};
use caskade::protocol::peer::forward;
use caskade::protocol::peer::{Frame, FrameError, Op};

const LIMITS: [u32; 4] = [16, 64, 1024, 1 << 20];
/// Frames checked per input at most (the checks are quadratic in nothing, but bounded).
const MAX_FRAMES: usize = 256;

/// What the parsers made of one input, so that a test can see its seeds reach every parser.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub frames: usize,
    pub hello: usize,
    pub hello_ok: usize,
    pub auth: usize,
    pub requests: usize,
    pub outcomes: usize,
}

impl std::ops::AddAssign for Parsed {
    fn add_assign(&mut self, o: Parsed) {
        self.frames += o.frames;
        self.hello += o.hello;
        self.hello_ok += o.hello_ok;
        self.auth += o.auth;
        self.requests += o.requests;
        self.outcomes += o.outcomes;
    }
}

/// Checks every property above on one input; panics where one does not hold.
pub fn check(data: &[u8]) -> Parsed {
    let mut parsed = Parsed::default();
    let Some((&sel, mut rest)) = data.split_first() else { return parsed };
    let max_body = LIMITS[(sel & 3) as usize];
    for _ in 0..MAX_FRAMES {
        match Frame::decode(rest, max_body) {
            Err(e) => {
                check_error(rest, max_body, e);
                return parsed;
            }
            Ok(None) => {
                if let Some(h) = Header::peek(rest) {
                    assert!(rest.len() < HEADER_LEN + h.body_len as usize, "Ok(None) for a whole frame");
                    assert!(h.body_len <= max_body && h.value_len().is_some(), "Ok(None) for a bad header");
                }
                return parsed;
            }
            Ok(Some((f, used))) => {
                check_frame(rest, max_body, &f, used, &mut parsed);
                rest = &rest[used..];
            }
        }
    }
    parsed
}

fn check_error(buf: &[u8], max_body: u32, e: FrameError) {
    let magic_ok = buf[0] == REQUEST_MAGIC || buf[0] == RESPONSE_MAGIC;
    match e {
        FrameError::BadMagic(m) => assert!(!magic_ok && m == buf[0]),
        FrameError::TooLarge(n) => {
            let h = Header::peek(buf).expect("TooLarge needs a header");
            assert!(magic_ok && n == h.body_len && n > max_body);
        }
        FrameError::BadLengths => {
            let h = Header::peek(buf).expect("BadLengths needs a header");
            assert!(magic_ok && h.body_len <= max_body && h.value_len().is_none());
        }
    }
}

fn check_frame(buf: &[u8], max_body: u32, f: &Frame<'_>, used: usize, parsed: &mut Parsed) {
    parsed.frames += 1;
    let h = f.header;
    assert_eq!(used, HEADER_LEN + h.body_len as usize);
    assert!(used <= buf.len() && h.body_len <= max_body);
    let whole = &buf[..used];
    // The parts are the bytes.
    let mut again = Vec::with_capacity(used);
    h.write_to(&mut again);
    again.extend_from_slice(f.extras);
    again.extend_from_slice(f.key);
    again.extend_from_slice(f.value);
    assert_eq!(again, whole);
    // The same frame from just its bytes; one byte short is not yet a frame.
    assert_eq!(Frame::decode(whole, max_body), Ok(Some((*f, used))));
    assert_eq!(Frame::decode(&whole[..used - 1], max_body), Ok(None));

    let mut requests = 0;
    let mut responses = 0;

    if let Some(hello) = Hello::parse(f) {
        requests += 1;
        parsed.hello += 1;
        let mut out = Vec::new();
        hello.write(&mut out);
        assert_eq!(out, ignoring(whole, &[5, 6, 7, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]), "HELLO re-encoded");
        let (g, _) = Frame::decode(&out, u32::MAX).unwrap().unwrap();
        assert_eq!(Hello::parse(&g), Some(hello));
    }
    if let Some(ok) = HelloOk::parse(f) {
        responses += 1;
        parsed.hello_ok += 1;
        let mut out = Vec::new();
        ok.write(&mut out);
        // The status (6..8) is OK, which a parse checks; the rest is ignored.
        assert_eq!(out, ignoring(whole, &[5, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]), "HELLO-ok re-encoded");
        let (g, _) = Frame::decode(&out, u32::MAX).unwrap().unwrap();
        assert_eq!(HelloOk::parse(&g), Some(ok));
    }
    if let Some(proof) = auth::parse_auth(f) {
        requests += 1;
        parsed.auth += 1;
        let proof: [u8; auth::PROOF_LEN] = proof.try_into().expect("a proof is PROOF_LEN bytes");
        let mut out = Vec::new();
        auth::write_auth(&mut out, &proof);
        // AUTH's extras and key are not looked at: compare what the parse read.
        let (g, _) = Frame::decode(&out, u32::MAX).unwrap().unwrap();
        assert_eq!(auth::parse_auth(&g), Some(&proof[..]));
        assert_eq!(g.header.opcode, h.opcode);
    }
    if let Ok(fwd) = forward::parse_request(f) {
        requests += 1;
        parsed.requests += 1;
        assert!(f.op().is_some_and(|op| !matches!(op, Op::Hello | Op::Auth)));
        assert!(fwd.cmd.key().is_none_or(|k| (1..=MAX_KEY_LEN).contains(&k.len())), "a key of 1..=250 bytes");
        assert_eq!((fwd.partition, fwd.opaque), (h.vbucket_or_status, h.opaque));
        let mut out = Vec::new();
        forward::write_request(&mut out, fwd.partition, fwd.opaque, &fwd.cmd, fwd.then_touch, fwd.durability);
        if f.op() == Some(Op::GetReplica) {
            // GET_REPLICA is a GET under its own opcode (byte 1), as the link writes it.
            out[1] = Op::GetReplica.to_u8();
        }
        let (g, n) = Frame::decode(&out, u32::MAX).unwrap().unwrap();
        assert_eq!(n, out.len());
        assert_eq!(g.header.opcode, h.opcode, "the same opcode");
        assert_eq!((g.extras.len(), g.key, g.value), (f.extras.len(), f.key, f.value), "the same shape");
        assert_eq!(forward::parse_request(&g), Ok(fwd), "request re-encoded");
    }
    // Replication records and positions: any bytes give records or an error, never a panic,
    // and what parses re-encodes to the same bytes.
    if f.op() == Some(Op::ReplChanges) {
        let mut again = Vec::new();
        let mut whole = true;
        for r in caskade::protocol::peer::repl::Records::new(f.value) {
            match r {
                Ok(r) => r.write(&mut again),
                Err(_) => whole = false,
            }
        }
        if whole {
            assert_eq!(again, f.value, "records re-encoded");
        }
    }
    if let Ok(ps) = caskade::protocol::peer::repl::parse_positions(f) {
        assert_eq!(ps.len() * caskade::protocol::peer::repl::POSITION_LEN, f.value.len());
    }
    if let Ok(outcome) = forward::parse_outcome(f) {
        responses += 1;
        parsed.outcomes += 1;
        let op = f.op().unwrap_or(Op::Get);
        let mut out = Vec::new();
        forward::write_outcome(&mut out, op, h.opaque, f.key, &outcome);
        let (g, _) = Frame::decode(&out, u32::MAX).unwrap().unwrap();
        assert_eq!((g.header.opaque, g.key), (h.opaque, f.key));
        assert_eq!(forward::parse_outcome(&g), Ok(outcome), "outcome re-encoded");
        // NOT_MY_PARTITION is re-encoded as the temporary failure it stands for.
        if h.vbucket_or_status != forward::code::NOT_MY_PARTITION {
            assert_eq!(g.header.vbucket_or_status, h.vbucket_or_status);
            assert_eq!((g.extras, g.value), (f.extras, f.value), "outcome body re-encoded");
        }
    }
    assert!(requests <= 1 && responses <= 1, "a frame parsed as two things");
    if requests > 0 {
        assert!(f.is_request(), "a response parsed as a request");
    }
    if responses > 0 {
        assert!(!f.is_request(), "a request parsed as a response");
    }
}

/// `b` with the bytes at `offsets` zeroed.
fn ignoring(b: &[u8], offsets: &[usize]) -> Vec<u8> {
    let mut v = b.to_vec();
    for &i in offsets {
        v[i] = 0;
    }
    v
}
