//! Standard base64 (RFC 4648, with `=` padding) for meta commands' `b` flag: binary keys
//! travel encoded on the text protocol.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes `src` into `dst` and returns the decoded length; `None` if `src` is not padded
/// base64, decodes to nothing, or does not fit.
pub fn decode(src: &[u8], dst: &mut [u8]) -> Option<usize> {
    if src.is_empty() || !src.len().is_multiple_of(4) {
        return None;
    }
    let mut n = 0;
    let quads = src.len() / 4;
    for (q, chunk) in src.chunks_exact(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && q + 1 != quads) {
            return None;
        }
        let mut bits = 0u32;
        for &c in &chunk[..4 - pad] {
            bits = (bits << 6) | value(c)?;
        }
        bits <<= 6 * pad as u32;
        let bytes = [(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
        let len = 3 - pad;
        dst.get_mut(n..n + len)?.copy_from_slice(&bytes[..len]);
        n += len;
    }
    Some(n)
}

/// Appends the encoding of `src` to `out`.
pub fn encode(src: &[u8], out: &mut Vec<u8>) {
    for chunk in src.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let bits = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(bits >> (18 - 6 * i)) as usize & 63]);
            } else {
                out.push(b'=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Option<Vec<u8>> {
        let mut buf = [0u8; 64];
        decode(s.as_bytes(), &mut buf).map(|n| buf[..n].to_vec())
    }

    fn enc(b: &[u8]) -> String {
        let mut out = Vec::new();
        encode(b, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc4648_vectors() {
        for (plain, coded) in
            [("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(enc(plain.as_bytes()), coded);
            assert_eq!(dec(coded).as_deref(), Some(plain.as_bytes()));
        }
        assert_eq!(enc(&[0xff, 0x00, 0xfe]), "/wD+");
    }

    #[test]
    fn malformed_input_is_refused() {
        for bad in ["", "!!!!", "Zg=", "Zg", "Z===", "Zg==Zg==", "Zm9v!"] {
            assert_eq!(dec(bad), None, "{bad}");
        }
        let mut small = [0u8; 2];
        assert_eq!(decode(b"Zm9v", &mut small), None);
    }
}
