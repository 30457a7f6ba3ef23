//! Property tests of the binary-protocol request codec as a connection uses it: bytes arrive
//! in chunks cut anywhere, and `Request::decode` is called on whatever has been buffered.
//!
//! * A stream of valid requests, cut at random points, decodes to exactly the requests that
//!   were encoded, in order, with nothing left over.
//! * Streams that mix in frames the decoder rejects (unknown opcodes, values over the limit)
//!   keep going past them by the `skip` the decoder asks for, even when the skipped body
//!   arrives in later chunks; an invalid frame closes the stream.
//! * Any prefix of a valid frame is `Ok(None)`.
//! * Arbitrary bytes never panic `decode`; a request it returns used between 24 and
//!   `buf.len()` bytes and re-encodes to exactly those bytes; and feeding the same bytes
//!   whole or in chunks gives the same events.
//!
//! The shapes below (extras, key, value by opcode) are written out from memcached's
//! `protocol_binary.h` rather than taken from `Opcode::shape`, so a wrong shape table in
//! the codec shows up here.

use caskade::protocol::binary::{DecodeError, Limits, Opcode, Request, RequestExtras, Status, HEADER_LEN};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// Small, so that values at and over the limit are cheap to generate.
const LIMIT: usize = 2048;
const LIMITS: Limits = Limits { max_value_len: LIMIT };

/// memcached's `KEY_MAX_LENGTH`, spelled out here rather than taken from the codec.
const MAX_KEY_LEN: usize = 250;

/// Every opcode caskade serves (everything but SASL and unknown numbers).
const SERVED: [u8; 33] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12,
    0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x23, 0x24,
];

/// Opcodes answered with UNKNOWN_COMMAND whose body is skipped: SASL (not served yet) and
/// numbers memcached does not define (0x1f, 0x25.. and a few far ones).
const UNSERVED: [u8; 10] = [0x1f, 0x20, 0x21, 0x22, 0x25, 0x30, 0x3f, 0x80, 0xfe, 0xff];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyRule {
    Required,
    Optional,
    Forbidden,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExtrasRule {
    None,
    Store,
    Arith,
    Expiry,
    /// FLUSH: no extras, or a 4-byte delay.
    MaybeExpiry,
    Verbosity,
}

/// (extras, key, value allowed), from memcached's protocol_binary.h.
fn spec_shape(op: u8) -> (ExtrasRule, KeyRule, bool) {
    use ExtrasRule as E;
    use KeyRule as K;
    match op {
        0x00 | 0x09 | 0x0c | 0x0d | 0x04 | 0x14 => (E::None, K::Required, false), // GET*, DELETE(Q)
        0x01 | 0x11 | 0x02 | 0x12 | 0x03 | 0x13 => (E::Store, K::Required, true), // SET/ADD/REPLACE(Q)
        0x0e | 0x19 | 0x0f | 0x1a => (E::None, K::Required, true),                // APPEND/PREPEND(Q)
        0x05 | 0x15 | 0x06 | 0x16 => (E::Arith, K::Required, false),              // INCR/DECR(Q)
        0x07 | 0x17 | 0x0a | 0x0b => (E::None, K::Forbidden, false),              // QUIT(Q), NOOP, VERSION
        0x08 | 0x18 => (E::MaybeExpiry, K::Forbidden, false),                     // FLUSH(Q)
        0x10 => (E::None, K::Optional, false),                                    // STAT
        0x1b => (E::Verbosity, K::Forbidden, false),                              // VERBOSITY
        0x1c | 0x1d | 0x1e | 0x23 | 0x24 => (E::Expiry, K::Required, false),      // TOUCH, GAT*
        _ => unreachable!("not served: {op:#x}"),
    }
}

/// A request that owns its key and value, so it outlives the decode buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Owned {
    opcode: Opcode,
    data_type: u8,
    vbucket: u16,
    opaque: u32,
    cas: u64,
    extras: RequestExtras,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl Owned {
    fn from_request(r: &Request<'_>) -> Owned {
        Owned {
            opcode: r.opcode,
            data_type: r.data_type,
            vbucket: r.vbucket,
            opaque: r.opaque,
            cas: r.cas,
            extras: r.extras,
            key: r.key.to_vec(),
            value: r.value.to_vec(),
        }
    }

    fn as_request(&self) -> Request<'_> {
        Request {
            opcode: self.opcode,
            data_type: self.data_type,
            vbucket: self.vbucket,
            opaque: self.opaque,
            cas: self.cas,
            extras: self.extras,
            key: &self.key,
            value: &self.value,
            durability: None,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.as_request().encode(&mut out);
        out
    }
}

/// A request frame written out by hand from the spec, to check `encode` against.
#[allow(clippy::too_many_arguments)]
fn frame(
    opcode: u8,
    data_type: u8,
    vbucket: u16,
    opaque: u32,
    cas: u64,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
) -> Vec<u8> {
    let mut f = vec![0x80, opcode];
    f.extend_from_slice(&(key.len() as u16).to_be_bytes());
    f.push(extras.len() as u8);
    f.push(data_type);
    f.extend_from_slice(&vbucket.to_be_bytes());
    f.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    f.extend_from_slice(&opaque.to_be_bytes());
    f.extend_from_slice(&cas.to_be_bytes());
    f.extend_from_slice(extras);
    f.extend_from_slice(key);
    f.extend_from_slice(value);
    f
}

fn extras_bytes(e: &RequestExtras) -> Vec<u8> {
    match *e {
        RequestExtras::None => vec![],
        RequestExtras::Store { flags, exptime } => [flags.to_be_bytes(), exptime.to_be_bytes()].concat(),
        RequestExtras::Arith {
            delta,
            initial,
            exptime,
        } => [
            &delta.to_be_bytes()[..],
            &initial.to_be_bytes()[..],
            &exptime.to_be_bytes()[..],
        ]
        .concat(),
        RequestExtras::Expiry(v) | RequestExtras::Verbosity(v) => v.to_be_bytes().to_vec(),
    }
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

fn bytes_of_len(len: impl Strategy<Value = usize>) -> impl Strategy<Value = Vec<u8>> {
    len.prop_flat_map(|n| vec(any::<u8>(), n))
}

/// Mostly short keys, sometimes any length, sometimes exactly the maximum.
fn key_len(min: usize) -> BoxedStrategy<usize> {
    prop_oneof![
        4 => min..=16usize,
        2 => min..=MAX_KEY_LEN,
        1 => Just(MAX_KEY_LEN),
    ]
    .boxed()
}

/// Mostly short values, sometimes anything up to the limit, sometimes exactly the limit.
fn value_len() -> BoxedStrategy<usize> {
    prop_oneof![
        2 => Just(0usize),
        4 => 1..=64usize,
        2 => 0..=LIMIT,
        1 => Just(LIMIT),
    ]
    .boxed()
}

fn extras_for(rule: ExtrasRule) -> BoxedStrategy<RequestExtras> {
    match rule {
        ExtrasRule::None => Just(RequestExtras::None).boxed(),
        ExtrasRule::Store => (any::<u32>(), any::<u32>())
            .prop_map(|(flags, exptime)| RequestExtras::Store { flags, exptime })
            .boxed(),
        ExtrasRule::Arith => (any::<u64>(), any::<u64>(), any::<u32>())
            .prop_map(|(delta, initial, exptime)| RequestExtras::Arith {
                delta,
                initial,
                exptime,
            })
            .boxed(),
        ExtrasRule::Expiry => any::<u32>().prop_map(RequestExtras::Expiry).boxed(),
        ExtrasRule::MaybeExpiry => {
            prop_oneof![Just(RequestExtras::None), any::<u32>().prop_map(RequestExtras::Expiry)].boxed()
        }
        ExtrasRule::Verbosity => any::<u32>().prop_map(RequestExtras::Verbosity).boxed(),
    }
}

/// A valid request of any served opcode, shaped as that opcode demands.
fn valid_request() -> impl Strategy<Value = Owned> {
    (
        prop::sample::select(&SERVED[..]),
        any::<u8>(),
        any::<u16>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_flat_map(|(op, data_type, vbucket, opaque, cas)| {
            let (extras_rule, key_rule, value_ok) = spec_shape(op);
            let key = match key_rule {
                KeyRule::Required => bytes_of_len(key_len(1)).boxed(),
                KeyRule::Optional => prop_oneof![Just(Vec::new()), bytes_of_len(key_len(1))].boxed(),
                KeyRule::Forbidden => Just(Vec::new()).boxed(),
            };
            let value = if value_ok {
                bytes_of_len(value_len()).boxed()
            } else {
                Just(Vec::new()).boxed()
            };
            (extras_for(extras_rule), key, value).prop_map(move |(extras, key, value)| Owned {
                opcode: Opcode::from_u8(op),
                data_type,
                vbucket,
                opaque,
                cas,
                extras,
                key,
                value,
            })
        })
}

/// One frame of a mixed stream and what the decoder must make of it.
#[derive(Clone, Debug)]
enum Item {
    Valid(Owned),
    /// An opcode caskade does not serve, with any well-formed body.
    Unserved {
        bytes: Vec<u8>,
        opaque: u32,
    },
    /// A store command whose value is over the limit.
    TooLarge {
        bytes: Vec<u8>,
        opaque: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    Request(Owned),
    Rejected { opaque: u32, status: Status, skip: u64 },
    Closed { opaque: Option<u32>, status: Status },
}

impl Item {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Item::Valid(r) => r.encode(),
            Item::Unserved { bytes, .. } | Item::TooLarge { bytes, .. } => bytes.clone(),
        }
    }

    fn expected(&self) -> Event {
        match self {
            Item::Valid(r) => Event::Request(r.clone()),
            Item::Unserved { bytes, opaque } => Event::Rejected {
                opaque: *opaque,
                status: Status::UnknownCommand,
                skip: bytes.len() as u64,
            },
            Item::TooLarge { bytes, opaque } => Event::Rejected {
                opaque: *opaque,
                status: Status::ValueTooLarge,
                skip: bytes.len() as u64,
            },
        }
    }
}

fn unserved_item() -> impl Strategy<Value = Item> {
    (
        prop::sample::select(&UNSERVED[..]),
        any::<u32>(),
        vec(any::<u8>(), 0..=24),
        bytes_of_len(key_len(0)),
        bytes_of_len(value_len()),
    )
        .prop_map(|(op, opaque, extras, key, value)| Item::Unserved {
            bytes: frame(op, 0, 0, opaque, 0, &extras, &key, &value),
            opaque,
        })
}

fn too_large_item() -> impl Strategy<Value = Item> {
    (
        prop::sample::select(&[0x01u8, 0x11, 0x02, 0x12, 0x03, 0x13, 0x0e, 0x19, 0x0f, 0x1a][..]),
        any::<u32>(),
        bytes_of_len(1..=16usize),
        bytes_of_len(LIMIT + 1..=LIMIT + 64),
    )
        .prop_map(|(op, opaque, key, value)| {
            let extras: &[u8] = if matches!(op, 0x0e | 0x19 | 0x0f | 0x1a) {
                &[]
            } else {
                &[0; 8]
            };
            Item::TooLarge {
                bytes: frame(op, 0, 0, opaque, 0, extras, &key, &value),
                opaque,
            }
        })
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        6 => valid_request().prop_map(Item::Valid),
        1 => unserved_item(),
        1 => too_large_item(),
    ]
}

/// A frame that breaks its opcode's shape (the decoder must close), with the opaque it
/// carries. Each is a GET-family or NOOP frame with one thing wrong.
fn invalid_frame() -> impl Strategy<Value = (Vec<u8>, u32)> {
    (0..6u8, any::<u32>()).prop_map(|(which, opaque)| {
        let f = match which {
            0 => frame(0x00, 0, 0, opaque, 0, &[0; 4], b"k", b""), // GET with extras
            1 => frame(0x00, 0, 0, opaque, 0, &[], b"", b""),      // GET without a key
            2 => frame(0x00, 0, 0, opaque, 0, &[], b"k", b"v"),    // GET with a value
            3 => frame(0x0a, 0, 0, opaque, 0, &[], b"k", b""),     // NOOP with a key
            4 => frame(0x00, 0, 0, opaque, 0, &[], &[b'k'; 251], b""), // key too long
            _ => {
                let mut f = frame(0x01, 0, 0, opaque, 0, &[0; 8], b"key", b"");
                f[11] = 4; // body shorter than extras + key
                f
            }
        };
        (f, opaque)
    })
}

/// Cut points for a stream of `len` bytes: sorted, distinct, strictly inside the stream.
fn cuts(indices: &[Index], len: usize) -> Vec<usize> {
    if len < 2 {
        return vec![];
    }
    let mut c: Vec<usize> = indices.iter().map(|i| 1 + i.index(len - 1)).collect();
    c.sort_unstable();
    c.dedup();
    c
}

fn chunks<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for &c in cuts {
        out.push(&stream[start..c]);
        start = c;
    }
    out.push(&stream[start..]);
    out
}

// ---------------------------------------------------------------------------------------
// The incremental driver: what a connection does with its read buffer.
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Driver {
    buf: Vec<u8>,
    /// Bytes of a rejected frame still to be discarded as they arrive.
    skip: u64,
    closed: bool,
    events: Vec<Event>,
}

enum Step {
    Request(Owned, usize),
    Rejected(Event, u64),
    Closed(Event),
}

impl Driver {
    fn feed(&mut self, mut chunk: &[u8]) {
        if self.closed {
            return;
        }
        if self.skip > 0 {
            let n = self.skip.min(chunk.len() as u64) as usize;
            chunk = &chunk[n..];
            self.skip -= n as u64;
        }
        self.buf.extend_from_slice(chunk);
        while self.skip == 0 {
            let step = match Request::decode(&self.buf, &LIMITS) {
                Ok(None) => break,
                Ok(Some((req, used))) => {
                    assert!(used > 0 && used <= self.buf.len(), "used {used} of {}", self.buf.len());
                    Step::Request(Owned::from_request(&req), used)
                }
                Err(DecodeError::Reject { header, status, skip }) => {
                    assert!(skip >= HEADER_LEN as u64, "skip {skip} shorter than a header");
                    Step::Rejected(
                        Event::Rejected {
                            opaque: header.opaque,
                            status,
                            skip,
                        },
                        skip,
                    )
                }
                Err(DecodeError::Close { header, status }) => Step::Closed(Event::Closed {
                    opaque: header.map(|h| h.opaque),
                    status,
                }),
            };
            match step {
                Step::Request(req, used) => {
                    self.events.push(Event::Request(req));
                    self.buf.drain(..used);
                }
                Step::Rejected(ev, skip) => {
                    self.events.push(ev);
                    let here = skip.min(self.buf.len() as u64);
                    self.buf.drain(..here as usize);
                    self.skip = skip - here;
                }
                Step::Closed(ev) => {
                    self.events.push(ev);
                    self.closed = true;
                    self.buf.clear();
                    break;
                }
            }
        }
    }

    fn run(chunks: &[&[u8]]) -> Driver {
        let mut d = Driver::default();
        for c in chunks {
            d.feed(c);
        }
        d
    }
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    // 256 cases each by default; PROPTEST_CASES=N to run more.

    /// `encode` writes the frame the spec describes, and `decode` reads it back whole.
    #[test]
    fn one_valid_request_round_trips(req in valid_request()) {
        let bytes = req.encode();
        let op = req.opcode.to_u8();
        let want = frame(op, req.data_type, req.vbucket, req.opaque, req.cas, &extras_bytes(&req.extras), &req.key, &req.value);
        prop_assert_eq!(&bytes, &want);
        let (got, used) = Request::decode(&bytes, &LIMITS).expect("valid").expect("whole");
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(Owned::from_request(&got), req);
    }

    /// Every proper prefix of a valid frame asks for more bytes.
    #[test]
    fn any_prefix_of_a_valid_frame_is_incomplete(req in valid_request()) {
        let bytes = req.encode();
        for cut in 0..bytes.len() {
            prop_assert_eq!(Request::decode(&bytes[..cut], &LIMITS), Ok(None), "cut at {} of {}", cut, bytes.len());
        }
    }

    /// A stream of valid requests cut anywhere decodes to the same requests, in order.
    #[test]
    fn valid_stream_survives_any_split(
        reqs in vec(valid_request(), 1..12),
        split in vec(any::<Index>(), 0..48),
    ) {
        let stream: Vec<u8> = reqs.iter().flat_map(Owned::encode).collect();
        let d = Driver::run(&chunks(&stream, &cuts(&split, stream.len())));
        let want: Vec<Event> = reqs.into_iter().map(Event::Request).collect();
        prop_assert_eq!(d.events, want);
        prop_assert!(d.buf.is_empty(), "{} bytes left over", d.buf.len());
        prop_assert_eq!(d.skip, 0);
        prop_assert!(!d.closed);
    }

    /// The worst split: one byte at a time.
    #[test]
    fn valid_stream_survives_one_byte_chunks(reqs in vec(valid_request(), 1..4)) {
        let stream: Vec<u8> = reqs.iter().flat_map(Owned::encode).collect();
        let one_byte: Vec<&[u8]> = stream.chunks(1).collect();
        let d = Driver::run(&one_byte);
        let want: Vec<Event> = reqs.into_iter().map(Event::Request).collect();
        prop_assert_eq!(d.events, want);
        prop_assert!(d.buf.is_empty());
    }

    /// Rejected frames are answered and skipped, even when the skipped body arrives in later
    /// chunks, and the requests around them still decode; an invalid frame ends the stream
    /// and nothing after it is decoded.
    #[test]
    fn mixed_stream_skips_rejects_and_stops_at_close(
        items in vec(item(), 1..10),
        invalid in prop::option::of(invalid_frame()),
        tail in vec(valid_request(), 0..3),
        split in vec(any::<Index>(), 0..48),
    ) {
        let mut stream: Vec<u8> = items.iter().flat_map(Item::bytes).collect();
        let mut want: Vec<Event> = items.iter().map(Item::expected).collect();
        if let Some((bytes, opaque)) = &invalid {
            stream.extend_from_slice(bytes);
            want.push(Event::Closed { opaque: Some(*opaque), status: Status::InvalidArguments });
        }
        for r in &tail {
            stream.extend(r.encode());
            if invalid.is_none() {
                want.push(Event::Request(r.clone()));
            }
        }
        let d = Driver::run(&chunks(&stream, &cuts(&split, stream.len())));
        prop_assert_eq!(&d.events, &want);
        prop_assert_eq!(d.closed, invalid.is_some());
        prop_assert!(d.buf.is_empty(), "{} bytes left over", d.buf.len());
        prop_assert_eq!(d.skip, 0);
    }

    /// Arbitrary bytes: no panic, sane `used`/`skip`, and an accepted frame re-encodes to
    /// exactly the bytes it was decoded from.
    #[test]
    fn random_bytes_never_panic(buf in arbitrary_input()) {
        check_one_decode(&buf)?;
    }

    /// Arbitrary bytes give the same events whether they arrive whole or in pieces.
    #[test]
    fn random_bytes_decode_the_same_whole_or_split(
        buf in arbitrary_input(),
        split in vec(any::<Index>(), 0..32),
    ) {
        let whole = Driver::run(&[&buf]);
        let pieces = Driver::run(&chunks(&buf, &cuts(&split, buf.len())));
        prop_assert_eq!(&whole.events, &pieces.events);
        prop_assert_eq!(whole.closed, pieces.closed);
        prop_assert_eq!(whole.skip, pieces.skip);
        prop_assert_eq!(&whole.buf, &pieces.buf);
    }
}

fn check_one_decode(buf: &[u8]) -> Result<(), TestCaseError> {
    match Request::decode(buf, &LIMITS) {
        Ok(None) => {}
        Ok(Some((req, used))) => {
            prop_assert!(used > 0, "used 0");
            prop_assert!(used <= buf.len(), "used {} of {}", used, buf.len());
            prop_assert!(used >= HEADER_LEN, "used {} < header", used);
            prop_assert!(req.key.len() <= MAX_KEY_LEN);
            prop_assert!(req.value.len() <= LIMIT);
            let mut again = Vec::new();
            req.encode(&mut again);
            prop_assert_eq!(&again[..], &buf[..used], "re-encoding differs");
        }
        Err(DecodeError::Reject { skip, .. }) => {
            prop_assert!(skip >= HEADER_LEN as u64, "skip {} < header", skip);
        }
        Err(DecodeError::Close { .. }) => {}
    }
    Ok(())
}

/// Random bytes, biased towards plausible frames so the decoder gets past the first byte:
/// pure noise, a request magic then noise, or a header with lengths that nearly add up.
fn arbitrary_input() -> impl Strategy<Value = Vec<u8>> {
    let noise = vec(any::<u8>(), 0..256);
    let magic_then_noise = vec(any::<u8>(), 0..256).prop_map(|mut v| {
        v.insert(0, 0x80);
        v
    });
    let headerish = (
        prop_oneof![9 => Just(0x80u8), 1 => any::<u8>()],
        prop_oneof![4 => 0u8..0x26, 1 => any::<u8>()],
        prop_oneof![4 => 0u16..=16, 1 => 240u16..=260, 1 => any::<u16>()],
        prop_oneof![3 => Just(0u8), 1 => Just(4u8), 1 => Just(8u8), 1 => Just(20u8), 1 => any::<u8>()],
        any::<u8>(),
        any::<u16>(),
        prop_oneof![4 => 0i64..=64, 1 => -8i64..=0, 1 => (LIMIT as i64 - 4)..=(LIMIT as i64 + 4)],
        prop_oneof![4 => Just(None), 1 => any::<u32>().prop_map(Some)],
        any::<u32>(),
        any::<u64>(),
        vec(any::<u8>(), 0..2400),
        vec(vec(any::<u8>(), 0..64), 0..3),
    )
        .prop_map(
            |(magic, op, key_len, extras_len, data_type, vbucket, slack, raw_body_len, opaque, cas, body, rest)| {
                let natural = extras_len as i64 + key_len as i64 + slack;
                let body_len = raw_body_len.unwrap_or(natural.clamp(0, u32::MAX as i64) as u32);
                let mut f = vec![magic, op];
                f.extend_from_slice(&key_len.to_be_bytes());
                f.push(extras_len);
                f.push(data_type);
                f.extend_from_slice(&vbucket.to_be_bytes());
                f.extend_from_slice(&body_len.to_be_bytes());
                f.extend_from_slice(&opaque.to_be_bytes());
                f.extend_from_slice(&cas.to_be_bytes());
                let take = body.len().min(body_len as usize);
                f.extend_from_slice(&body[..take]);
                for r in rest {
                    f.extend(r);
                }
                f
            },
        );
    prop_oneof![1 => noise, 1 => magic_then_noise, 4 => headerish]
}
