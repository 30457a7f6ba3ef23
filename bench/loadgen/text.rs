//! The text protocol for the load generator: `get <key>` and `set <key> 0 0 <n>` written
//! without allocation, and their replies read in place (`VALUE … END`, `END`, `STORED`).

/// What one reply said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Hit,
    Miss,
    Stored,
    /// Some other line (an error): counted, the connection goes on.
    Other,
}

pub fn encode_get(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(b"get ");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\n");
}

pub fn encode_set(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(b"set ");
    out.extend_from_slice(key);
    out.extend_from_slice(b" 0 0 ");
    push_decimal(out, value.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_decimal(out: &mut Vec<u8>, v: u64) {
    let mut digits = [0u8; 20];
    let i = crate::keys::decimal(v, &mut digits);
    out.extend_from_slice(&digits[i..]);
}

fn line_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// Reads the reply to a `get` (`get == true`) or a `set` from the front of `buf`: the reply
/// and its length, `Ok(None)` while it is not whole, `Err` for bytes no server should send.
pub fn decode(buf: &[u8], get: bool) -> Result<Option<(Reply, usize)>, ()> {
    let Some(eol) = line_end(buf) else { return Ok(None) };
    let line = &buf[..eol];
    if !get {
        let reply = if line == b"STORED" { Reply::Stored } else { Reply::Other };
        return Ok(Some((reply, eol + 2)));
    }
    if line == b"END" {
        return Ok(Some((Reply::Miss, eol + 2)));
    }
    if !line.starts_with(b"VALUE ") {
        return Ok(Some((Reply::Other, eol + 2)));
    }
    // VALUE <key> <flags> <bytes>
    let bytes = line.rsplit(|&b| b == b' ').next().ok_or(())?;
    let n: usize = std::str::from_utf8(bytes).map_err(|_| ())?.parse().map_err(|_| ())?;
    let end = eol + 2 + n + 2 + 5;
    if buf.len() < end {
        return Ok(None);
    }
    if &buf[eol + 2 + n..end] != b"\r\nEND\r\n" {
        return Err(());
    }
    Ok(Some((Reply::Hit, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let mut out = Vec::new();
        encode_get(&mut out, b"key:1");
        encode_set(&mut out, b"key:2", b"abc");
        assert_eq!(out, b"get key:1\r\nset key:2 0 0 3\r\nabc\r\n");
    }

    #[test]
    fn replies() {
        assert_eq!(decode(b"END\r\n", true), Ok(Some((Reply::Miss, 5))));
        let hit = b"VALUE key:1 0 3\r\nabc\r\nEND\r\n";
        assert_eq!(decode(hit, true), Ok(Some((Reply::Hit, hit.len()))));
        for cut in 0..hit.len() {
            assert_eq!(decode(&hit[..cut], true), Ok(None), "cut {cut}");
        }
        assert_eq!(decode(b"STORED\r\n", false), Ok(Some((Reply::Stored, 8))));
        assert_eq!(decode(b"SERVER_ERROR out of memory\r\n", false), Ok(Some((Reply::Other, 28))));
        assert_eq!(decode(b"VALUE k 0 3\r\nabcXXXXXXX", true), Err(()));
    }
}
