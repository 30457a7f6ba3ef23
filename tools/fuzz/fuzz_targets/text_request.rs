//! Feeds fuzzer bytes to the text codec the way a connection does: decode from the front of
//! the buffer, consume `used`, discard what an error's `skip` says, stop at `close`; then
//! maps each request to its storage commands and writes a reply for every outcome.
//!
//! Input: the first byte picks the value-size limit (so "too large" is reachable with short
//! inputs); the rest is the byte stream a client sent.
//!
//! Checked for every step:
//! * no panic in `decode`, `action` or `write_outcome`; `used` is in `1..=buf.len()`;
//! * the answer depends only on the bytes it used: decoding just those bytes gives the same
//!   request, and one byte less than a request is `Ok(None)` (unless that cuts a line of over
//!   2048 bytes before its newline: memcached's rule closes then), which is what makes
//!   decoding independent of how the stream was cut into reads;
//! * keys handed to the shards are 1..=250 bytes.

#![no_main]

use caskade::protocol::binary::{Limits, MAX_KEY_LEN};
use caskade::protocol::text::{action, decode, write_outcome, Action};
use caskade::storage::{Command, Outcome};
use libfuzzer_sys::fuzz_target;

const LIMITS: [usize; 4] = [0, 1, 64, 1024];

fn outcomes() -> [Outcome<&'static [u8]>; 10] {
    [
        Outcome::Value { flags: 7, cas: 9, value: b"v\r\n" },
        Outcome::Done { cas: 3 },
        Outcome::Counter { value: u64::MAX, cas: 4 },
        Outcome::NotFound,
        Outcome::Exists,
        Outcome::NotStored,
        Outcome::NonNumeric,
        Outcome::TooLarge,
        Outcome::OutOfMemory,
        Outcome::StorageError,
    ]
}

fn check_key(key: &[u8]) {
    assert!(!key.is_empty() && key.len() <= MAX_KEY_LEN, "key of {} bytes", key.len());
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let limits = Limits { max_value_len: LIMITS[(sel & 3) as usize] };
    let mut out = Vec::new();
    loop {
        match decode(rest, &limits) {
            Ok(None) => break,
            Ok(Some((req, used))) => {
                assert!(used >= 1 && used <= rest.len(), "used {used} of {}", rest.len());
                assert_eq!(decode(&rest[..used], &limits), Ok(Some((req, used))));
                // (A line cut before its newline past 2048 bytes closes the connection, as
                // memcached's does: that answer depends on the cut, by design.)
                let shorter = &rest[..used - 1];
                if shorter.len() <= 2048 || shorter.contains(&b'\n') {
                    assert_eq!(decode(shorter, &limits), Ok(None));
                }
                match action(&req) {
                    Action::Storage(cmd, to) => {
                        if let Some(key) = cmd.key() {
                            check_key(key);
                        }
                        for o in outcomes() {
                            write_outcome(&mut out, &to, cmd.key().unwrap_or(b""), &o);
                            let _ = to.then(cmd.key().unwrap_or(b""), &o);
                        }
                    }
                    Action::Get { keys, touch, reply } => {
                        for key in keys.iter() {
                            check_key(key);
                            let cmd = match touch {
                                Some(exptime) => Command::GetAndTouch { key, exptime },
                                None => Command::Get { key },
                            };
                            for o in outcomes() {
                                write_outcome(&mut out, &reply, cmd.key().unwrap_or(b""), &o);
                            }
                        }
                    }
                    _ => {}
                }
                out.clear();
                rest = &rest[used..];
            }
            Err(e) => {
                assert!(e.used <= rest.len());
                if e.close {
                    break;
                }
                let skip = e.used.saturating_add(e.skip.min(usize::MAX as u64) as usize).min(rest.len());
                if skip == 0 {
                    // An error consumes at least its line.
                    panic!("an error that consumes nothing: {e:?}");
                }
                rest = &rest[skip..];
            }
        }
    }
});
