//! Feeds fuzzer bytes to `Request::decode` the way a connection does: decode from the front
//! of the buffer, consume `used`, skip what a `Reject` says to skip, stop at `Close`.
//!
//! Input: the first byte picks the value-size limit (so E2BIG is reachable with short
//! inputs); the rest is the byte stream a client sent.
//!
//! Checked for every step:
//! * `decode` does not panic; `used` is in `24..=buf.len()`; `skip` is at least a header.
//! * A decoded request re-encodes to exactly the bytes it used, and decoding that again
//!   gives the same request (`decode(encode(req)) == req`).
//! * The answer depends only on the bytes it claims to have looked at: the same answer comes
//!   back from just the frame (or just the header, for a reject or close), and one byte less
//!   than a whole frame is `Ok(None)`. This is what makes decoding independent of how the
//!   stream was cut into reads.

#![no_main]

use caskade::protocol::binary::{DecodeError, Limits, Request, HEADER_LEN, MAX_KEY_LEN};
use libfuzzer_sys::fuzz_target;

const LIMITS: [usize; 4] = [0, 1, 64, 1024];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_value_len: LIMITS[(sel & 3) as usize],
    };

    loop {
        match Request::decode(rest, &limits) {
            Ok(None) => break,
            Ok(Some((req, used))) => {
                assert!(
                    used >= HEADER_LEN && used <= rest.len(),
                    "used {used} of {}",
                    rest.len()
                );
                assert!(req.key.len() <= MAX_KEY_LEN);
                assert!(req.value.len() <= limits.max_value_len);

                let mut bytes = Vec::with_capacity(used);
                req.encode(&mut bytes);
                assert_eq!(&bytes[..], &rest[..used], "re-encoding differs from the input frame");
                let (again, again_used) = Request::decode(&bytes, &limits)
                    .expect("re-encoded request decodes")
                    .expect("re-encoded request is whole");
                assert_eq!(again, req);
                assert_eq!(again_used, bytes.len());

                // Only the frame's own bytes decide the answer.
                assert_eq!(Request::decode(&rest[..used], &limits), Ok(Some((req, used))));
                assert_eq!(Request::decode(&rest[..used - 1], &limits), Ok(None));

                rest = &rest[used..];
            }
            Err(e @ DecodeError::Reject { skip, .. }) => {
                assert!(skip >= HEADER_LEN as u64, "skip {skip}");
                assert_eq!(Request::decode(&rest[..HEADER_LEN], &limits), Err(e));
                if skip >= rest.len() as u64 {
                    // The rest of the rejected frame has not arrived: all of it is skipped.
                    break;
                }
                rest = &rest[skip as usize..];
            }
            Err(e @ DecodeError::Close { .. }) => {
                let seen = rest.len().min(HEADER_LEN);
                assert_eq!(Request::decode(&rest[..seen], &limits), Err(e));
                break;
            }
        }
    }
});
