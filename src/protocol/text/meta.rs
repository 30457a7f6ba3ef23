//! Flags of the meta commands (`mg`, `ms`, `md`, `ma`), read as memcached 1.6's
//! `_meta_flag_preparse` reads them: one letter per token, an optional argument glued to it,
//! no letter twice. What each flag means, and which caskade does not serve, is written out in
//! `protocol-spec/memcached-text.md`.

use super::line::{parse_i32, parse_u32, parse_u64, Tokens};

pub const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
pub const DUPLICATE: &str = "CLIENT_ERROR duplicate flag";
pub const INVALID: &str = "CLIENT_ERROR invalid flag";
pub const BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format";
pub const OPAQUE_TOO_LONG: &str = "CLIENT_ERROR opaque token too long";
/// caskade's own: a `Y` flag whose level is not 0, 1 or 3.
pub const BAD_DURABILITY: &str = "CLIENT_ERROR bad durability level";
/// What `md` and `ma` answer for any flag error.
pub const INVALID_OR_DUPLICATE: &str = "CLIENT_ERROR invalid or duplicate flag";
pub const DECODING_KEY: &str = "CLIENT_ERROR error decoding key";

/// memcached's `MFLAG_MAX_OPAQUE_LENGTH`: the `O` token, letter included.
pub const MAX_OPAQUE_TOKEN: usize = 32;
/// memcached's `MFLAG_MAX_OPT_LENGTH`: a meta line has fewer tokens than this (counting
/// memcached's terminal token).
pub const MAX_META_TOKENS: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaCmd {
    Get,
    Set,
    Delete,
    Arith,
}

/// The flags a reply echoes (`c f k O s t h l`), in the order the request gave them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Returns {
    letters: [u8; 8],
    len: u8,
}

impl Returns {
    fn push(&mut self, letter: u8) {
        // No letter comes twice, and at most eight letters echo: the array cannot fill.
        if let Some(slot) = self.letters.get_mut(self.len as usize) {
            *slot = letter;
            self.len += 1;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        self.letters[..self.len as usize].iter().copied()
    }
}

/// The `O` token, echoed verbatim (letter included), kept inline so that a reply can be
/// written on another core without an allocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Opaque {
    bytes: [u8; MAX_OPAQUE_TOKEN],
    len: u8,
}

impl Opaque {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// What the flags of one meta command ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaFlags {
    /// `b`: the key is base64; a returned key is too.
    pub base64: bool,
    /// `q`: no reply for the nominal outcome (a miss for `mg`, success otherwise).
    pub quiet: bool,
    /// `v`: return the value.
    pub value: bool,
    pub returns: Returns,
    pub opaque: Opaque,
    /// `T`: new TTL.
    pub ttl: Option<i32>,
    /// `N`: create on a miss, with this TTL (`mg`: an empty item, and win; `ma`: a counter).
    pub vivify: Option<i32>,
    /// `R`: win the recache when the TTL left is below this (`mg`).
    pub recache: Option<i32>,
    /// `I`: invalidate (`md`: mark stale; `ms`: an older CAS stores as stale).
    pub invalidate: bool,
    /// `t` came after `T`: it shows the new TTL (memcached reads flags in order).
    pub ttl_after_touch: bool,
    /// `u` (`mg`): the read does not mark the item fetched or accessed.
    pub no_update: bool,
    /// `F`: client flags to store.
    pub client_flags: u32,
    /// `C`: compare CAS.
    pub cas: Option<u64>,
    /// `M`: mode letter.
    pub mode: Option<u8>,
    /// `D`: delta (default 1).
    pub delta: u64,
    /// `J`: initial counter on a miss with `N` (default 0).
    pub initial: u64,
    /// `Y<level>` (`ms md ma`, caskade's own; memcached keeps `L` and `P` for its proxy): the durability this write asks for, numbered
    /// as Couchbase's levels (0 none, 1 majority, 3 persist to majority).
    pub durability: Option<crate::protocol::Durability>,
}

impl Default for MetaFlags {
    fn default() -> Self {
        MetaFlags {
            base64: false,
            quiet: false,
            value: false,
            returns: Returns::default(),
            opaque: Opaque::default(),
            ttl: None,
            vivify: None,
            recache: None,
            invalidate: false,
            ttl_after_touch: false,
            no_update: false,
            client_flags: 0,
            cas: None,
            mode: None,
            delta: 1,
            initial: 0,
            durability: None,
        }
    }
}

/// Reads the flags of `tokens` from `start` on. The error is memcached's line for it.
///
/// `E` (set a CAS), which memcached 1.6.18 does not know either, is refused as an unknown flag.
pub fn parse(cmd: MetaCmd, tokens: &Tokens<'_>, start: usize) -> Result<MetaFlags, &'static str> {
    use MetaCmd::*;
    let mut f = MetaFlags::default();
    let mut seen = [false; 127];
    // As memcached: an error in a flag's argument is remembered and the scan goes on; a
    // repeated or unknown flag ends it at once. An `O` token too long is reported only if
    // nothing else was wrong.
    let mut error: Option<&'static str> = None;
    let mut errstr = BAD_FORMAT;
    let mut opaque_too_long = false;
    for tok in tokens.from(start) {
        let letter = tok[0];
        if letter >= 127 || seen[letter as usize] {
            return Err(DUPLICATE);
        }
        seen[letter as usize] = true;
        let arg = &tok[1..];
        let ttl = |error: &mut Option<&'static str>, errstr: &mut &'static str| {
            let v = parse_i32(arg);
            if v.is_none() {
                *errstr = BAD_TOKEN;
                *error = Some(BAD_TOKEN);
            }
            v
        };
        match letter {
            b'b' => f.base64 = true,
            b'N' => f.vivify = ttl(&mut error, &mut errstr),
            b'T' => f.ttl = ttl(&mut error, &mut errstr),
            b'R' if cmd == Get => f.recache = ttl(&mut error, &mut errstr),
            b'R' => {
                ttl(&mut error, &mut errstr);
            }
            b'h' | b'l' if cmd == Get => f.returns.push(letter),
            b't' if matches!(cmd, Get | Arith) => {
                f.ttl_after_touch = seen[b'T' as usize];
                f.returns.push(b't');
            }
            b'u' if cmd == Get => f.no_update = true,
            b'h' | b'l' | b't' | b'u' | b'P' | b'L' => {}
            b'O' => {
                if tok.len() > MAX_OPAQUE_TOKEN {
                    opaque_too_long = true;
                } else {
                    f.opaque.bytes[..tok.len()].copy_from_slice(tok);
                    f.opaque.len = tok.len() as u8;
                    f.returns.push(b'O');
                }
            }
            b'k' => f.returns.push(b'k'),
            b's' | b'f' if cmd == Get => f.returns.push(letter),
            b'c' if cmd != Delete => f.returns.push(b'c'),
            b's' | b'f' | b'c' => {}
            b'v' => f.value = true,
            b'q' => f.quiet = true,
            b'F' => match parse_u32(arg) {
                Some(v) => f.client_flags = v,
                // memcached flags the error without a message of its own.
                None => error = Some(errstr),
            },
            b'C' => match parse_u64(arg) {
                Some(v) => f.cas = Some(v),
                None => error = Some(set(&mut errstr, BAD_TOKEN)),
            },
            b'M' => {
                if tok.len() != 2 {
                    error = Some(set(&mut errstr, "CLIENT_ERROR incorrect length for M token"));
                } else {
                    f.mode = Some(arg[0]);
                }
            }
            b'J' => match parse_u64(arg) {
                Some(v) => f.initial = v,
                None => error = Some(set(&mut errstr, "CLIENT_ERROR invalid numeric initial value")),
            },
            b'D' => match parse_u64(arg) {
                Some(v) => f.delta = v,
                None => error = Some(set(&mut errstr, "CLIENT_ERROR invalid numeric delta value")),
            },
            b'Y' if matches!(cmd, Set | Delete | Arith) => {
                match std::str::from_utf8(arg).ok().and_then(|a| a.parse::<u8>().ok()).and_then(crate::protocol::Durability::from_level) {
                    Some(level) => f.durability = Some(level),
                    None => error = Some(set(&mut errstr, BAD_DURABILITY)),
                }
            }
            b'I' if matches!(cmd, Set | Delete) => f.invalidate = true,
            b'I' => {}
            _ => return Err(INVALID),
        }
    }
    match error {
        Some(e) => Err(e),
        None if opaque_too_long => Err(OPAQUE_TOO_LONG),
        None => Ok(f),
    }
}

fn set(errstr: &mut &'static str, msg: &'static str) -> &'static str {
    *errstr = msg;
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(cmd: MetaCmd, line: &str) -> Result<MetaFlags, &'static str> {
        let start = if cmd == MetaCmd::Set { 3 } else { 2 };
        parse(cmd, &Tokens::split(line.as_bytes()), start)
    }

    #[test]
    fn returns_keep_request_order() {
        let f = flags(MetaCmd::Get, "mg key s v f c k Oabc q T30").unwrap();
        assert_eq!(f.returns.iter().collect::<Vec<_>>(), b"sfckO");
        assert_eq!(f.opaque.as_bytes(), b"Oabc");
        assert!(f.value && f.quiet && !f.base64);
        assert_eq!(f.ttl, Some(30));
        // ms echoes only O, k, c; md only O and k.
        let f = flags(MetaCmd::Set, "ms key 3 s f c k O1").unwrap();
        assert_eq!(f.returns.iter().collect::<Vec<_>>(), b"ckO");
        let f = flags(MetaCmd::Delete, "md key c k O1").unwrap();
        assert_eq!(f.returns.iter().collect::<Vec<_>>(), b"kO");
    }

    #[test]
    fn arguments() {
        let f = flags(MetaCmd::Arith, "ma key N0 J10 D5 MD C7 T-1").unwrap();
        assert_eq!((f.vivify, f.initial, f.delta, f.mode, f.cas, f.ttl), (Some(0), 10, 5, Some(b'D'), Some(7), Some(-1)));
        let f = flags(MetaCmd::Set, "ms key 3 F4294967297 P/x Lrest u").unwrap();
        assert_eq!(f.client_flags, 1);
        assert_eq!(flags(MetaCmd::Arith, "ma key").unwrap().delta, 1);
    }

    #[test]
    fn errors_are_memcached_s() {
        assert_eq!(flags(MetaCmd::Get, "mg key v v"), Err(DUPLICATE));
        assert_eq!(flags(MetaCmd::Get, "mg key zz"), Err(INVALID));
        assert_eq!(flags(MetaCmd::Get, "mg key \u{7f}"), Err(DUPLICATE));
        assert_eq!(flags(MetaCmd::Set, "ms key 3 T"), Err(BAD_TOKEN));
        assert_eq!(flags(MetaCmd::Set, "ms key 3 Fx"), Err(BAD_FORMAT));
        assert_eq!(flags(MetaCmd::Set, "ms key 3 MEE"), Err("CLIENT_ERROR incorrect length for M token"));
        assert_eq!(flags(MetaCmd::Arith, "ma key Dx"), Err("CLIENT_ERROR invalid numeric delta value"));
        assert_eq!(flags(MetaCmd::Arith, "ma key Jx"), Err("CLIENT_ERROR invalid numeric initial value"));
        assert_eq!(flags(MetaCmd::Get, &format!("mg key O{}", "x".repeat(32))), Err(OPAQUE_TOO_LONG));
        assert!(flags(MetaCmd::Get, &format!("mg key O{}", "x".repeat(31))).is_ok());
        // A later argument error replaces an earlier one; an unknown flag ends the scan.
        assert_eq!(flags(MetaCmd::Set, "ms key 3 Tx Cy"), Err(BAD_TOKEN));
        assert_eq!(flags(MetaCmd::Set, "ms key 3 Tx zz"), Err(INVALID));
        assert_eq!(flags(MetaCmd::Set, &format!("ms key 3 O{} Fx", "x".repeat(40))), Err(BAD_FORMAT));
        assert_eq!(flags(MetaCmd::Set, "ms key 3 Tx Fx"), Err(BAD_TOKEN));
    }

    #[test]
    fn item_state_flags() {
        let f = flags(MetaCmd::Get, "mg key N30 R20 t h l s f c k O1").unwrap();
        assert_eq!((f.vivify, f.recache, f.ttl_after_touch), (Some(30), Some(20), false));
        assert_eq!(f.returns.iter().collect::<Vec<_>>(), b"thlsfckO");
        assert!(flags(MetaCmd::Get, "mg key T5 t").unwrap().ttl_after_touch);
        assert!(!flags(MetaCmd::Get, "mg key t T5").unwrap().ttl_after_touch);
        assert_eq!(flags(MetaCmd::Arith, "ma key t").unwrap().returns.iter().collect::<Vec<_>>(), b"t");
        assert!(flags(MetaCmd::Set, "ms key 1 I").unwrap().invalidate);
        assert!(flags(MetaCmd::Delete, "md key I T30").unwrap().invalidate);
        assert_eq!(flags(MetaCmd::Get, "mg key Rx"), Err(BAD_TOKEN));
        // memcached 1.6.18 does not know E.
        assert_eq!(flags(MetaCmd::Get, "mg key E5"), Err(INVALID));
        assert_eq!(flags(MetaCmd::Set, "ms key 1 E5"), Err(INVALID));
        // Flags memcached ignores on a command stay ignored.
        assert!(flags(MetaCmd::Set, "ms key 1 t h l").is_ok());
        assert!(flags(MetaCmd::Get, "mg key u I D5").is_ok());
    }

    #[test]
    fn y_asks_a_durability_level_of_a_write() {
        use crate::protocol::Durability;
        assert_eq!(flags(MetaCmd::Set, "ms key 1 Y1").unwrap().durability, Some(Durability::Majority));
        assert_eq!(flags(MetaCmd::Delete, "md key Y3").unwrap().durability, Some(Durability::PersistMajority));
        assert_eq!(flags(MetaCmd::Arith, "ma key Y0").unwrap().durability, Some(Durability::None));
        assert_eq!(flags(MetaCmd::Set, "ms key 1").unwrap().durability, None);
        assert_eq!(flags(MetaCmd::Set, "ms key 1 Y2"), Err(BAD_DURABILITY));
        assert_eq!(flags(MetaCmd::Set, "ms key 1 Y"), Err(BAD_DURABILITY));
        assert_eq!(flags(MetaCmd::Set, "ms key 1 Yx"), Err(BAD_DURABILITY));
        assert_eq!(flags(MetaCmd::Get, "mg key Y1"), Err(INVALID), "a read asks no durability");
    }
}
