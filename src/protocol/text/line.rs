//! Command lines: where one ends, its tokens, and the numbers in them, read the way
//! memcached's `tokenize_command` and `safe_strto*` read them.

/// A line without a newline is given up on past this many bytes (memcached's rule), except
/// a `get`/`gets` with many keys.
pub const MAX_LINE: usize = 2048;

/// memcached's `MAX_TOKENS`: a line is cut into at most 23 tokens plus a terminal one;
/// whatever follows the 23rd is left unsplit (only the GET family reads on into it).
pub const MAX_TOKENS: usize = 24;

/// The position of the first `\n` in `buf`.
#[inline]
pub fn find_newline(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

/// The line before the `\n` at `nl`, without its `\r` (memcached strips a `\r` only from a
/// line of two bytes or more).
#[inline]
pub fn line_before(buf: &[u8], nl: usize) -> &[u8] {
    if nl > 1 && buf[nl - 1] == b'\r' {
        &buf[..nl - 1]
    } else {
        &buf[..nl]
    }
}

/// Whether a line that is still growing may be a `get`/`gets` with many keys, which memcached
/// lets grow past [`MAX_LINE`] (leading spaces allowed, up to 100 of them).
pub fn is_multiget(buf: &[u8]) -> bool {
    let spaces = buf.iter().take_while(|&&b| b == b' ').count();
    let rest = &buf[spaces..];
    spaces <= 100 && (rest.starts_with(b"get ") || rest.starts_with(b"gets "))
}

/// The space-separated tokens of a line (empty tokens skipped, only ' ' separates).
pub struct Tokens<'a> {
    toks: [&'a [u8]; MAX_TOKENS - 1],
    len: usize,
}

impl<'a> Tokens<'a> {
    pub fn split(line: &'a [u8]) -> Tokens<'a> {
        let mut t = Tokens { toks: [&[]; MAX_TOKENS - 1], len: 0 };
        for tok in line.split(|&b| b == b' ').filter(|t| !t.is_empty()) {
            if t.len == MAX_TOKENS - 1 {
                break;
            }
            t.toks[t.len] = tok;
            t.len += 1;
        }
        t
    }

    /// memcached's `ntokens`: the tokens kept plus the terminal one.
    #[inline]
    pub fn ntokens(&self) -> usize {
        self.len + 1
    }

    /// Token `i`, or empty past the last one.
    #[inline]
    pub fn get(&self, i: usize) -> &'a [u8] {
        if i < self.len {
            self.toks[i]
        } else {
            &[]
        }
    }

    /// The last token, where memcached looks for `noreply`.
    pub fn noreply(&self) -> bool {
        self.len > 0 && self.toks[self.len - 1] == b"noreply"
    }

    /// Tokens `from..`.
    pub fn from(&self, from: usize) -> &[&'a [u8]] {
        &self.toks[from.min(self.len)..self.len]
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Sign and magnitude of a decimal as C's `strto*` read it: leading white space, an optional
/// sign, at least one digit, then the end or white space. `None` also on overflow (ERANGE).
fn c_decimal(t: &[u8]) -> Option<(bool, u64)> {
    let mut i = t.iter().take_while(|&&b| is_space(b)).count();
    let negative = match t.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = t[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut v: u64 = 0;
    for &d in &t[i..i + digits] {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    match t.get(i + digits) {
        None => Some((negative, v)),
        Some(&b) if is_space(b) => Some((negative, v)),
        Some(_) => None,
    }
}

/// memcached's `safe_strtol`: a signed 32-bit number (exptimes, lengths), cut from a 64-bit
/// `long` as memcached cuts it.
pub fn parse_i32(t: &[u8]) -> Option<i32> {
    let (negative, magnitude) = c_decimal(t)?;
    let v: i64 = if negative {
        if magnitude > i64::MAX as u64 + 1 {
            return None;
        }
        (magnitude as i64).wrapping_neg()
    } else {
        i64::try_from(magnitude).ok()?
    };
    // memcached 1.6.18 stores the long into an int32_t with no range check: C's truncation
    // (2147483648 reads as -2147483648, 4294967299 as 3).
    Some(v as i32)
}

/// memcached's `safe_strtoull`: an unsigned 64-bit number (deltas, CAS). A minus sign is
/// refused unless the number is zero.
pub fn parse_u64(t: &[u8]) -> Option<u64> {
    let (negative, magnitude) = c_decimal(t)?;
    let v = if negative { magnitude.wrapping_neg() } else { magnitude };
    if negative && (v as i64) < 0 {
        return None;
    }
    Some(v)
}

/// memcached 1.6.18's `safe_strtoul` for client flags: read as 64 bits, then cut to 32
/// (`4294967296` is stored as 0, as memcached does).
pub fn parse_u32(t: &[u8]) -> Option<u32> {
    parse_u64(t).map(|v| v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_at_newline_with_or_without_cr() {
        assert_eq!(find_newline(b"get a\r\nx"), Some(6));
        assert_eq!(line_before(b"get a\r\n", 6), b"get a");
        assert_eq!(line_before(b"get a\n", 5), b"get a");
        assert_eq!(line_before(b"\r\n", 1), b"\r");
        assert_eq!(find_newline(b"get a"), None);
    }

    #[test]
    fn tokens_split_on_spaces_only() {
        let t = Tokens::split(b"  set  a\tb 0  0 1 noreply ");
        assert_eq!(t.ntokens(), 7);
        assert_eq!(t.get(1), b"a\tb");
        assert!(t.noreply());
        assert_eq!(t.get(9), b"");
        let t = Tokens::split(b"");
        assert_eq!(t.ntokens(), 1);
        assert!(!t.noreply());
    }

    #[test]
    fn at_most_23_tokens_are_kept() {
        let line: Vec<u8> = (0..40).flat_map(|i| format!("t{i} ").into_bytes()).collect();
        let t = Tokens::split(&line);
        assert_eq!(t.ntokens(), MAX_TOKENS);
        assert_eq!(t.get(22), b"t22");
    }

    #[test]
    fn multiget_detection() {
        assert!(is_multiget(b"get a b"));
        assert!(is_multiget(b"   gets a"));
        assert!(!is_multiget(b"gat 1 a"));
        assert!(!is_multiget(&[b"    ".repeat(26), b"get a".to_vec()].concat()));
    }

    #[test]
    fn numbers_as_c_reads_them() {
        assert_eq!(parse_i32(b"-1"), Some(-1));
        assert_eq!(parse_i32(b"+7"), Some(7));
        assert_eq!(parse_i32(b"2147483647"), Some(i32::MAX));
        assert_eq!(parse_i32(b"2147483648"), Some(i32::MIN));
        assert_eq!(parse_i32(b"4294967299"), Some(3));
        assert_eq!(parse_i32(b"-2147483649"), Some(i32::MAX));
        assert_eq!(parse_i32(b"9223372036854775808"), None);
        assert_eq!(parse_i32(b"-9223372036854775808"), Some(0));
        assert_eq!(parse_i32(b"12x"), None);
        assert_eq!(parse_i32(b""), None);
        assert_eq!(parse_i32(b"-"), None);
        assert_eq!(parse_i32(b"\t5"), Some(5));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"-0"), Some(0));
        assert_eq!(parse_u32(b"4294967296"), Some(0));
        assert_eq!(parse_u32(b"-1"), None);
        assert_eq!(parse_u32(b"abc"), None);
    }
}
