//! `watch`'s wire format: the kinds a `watch` line may ask for, and the log lines, as
//! memcached 1.6 writes them (`logger.c`). No I/O; the server's `watch` module keeps the
//! watchers and their buffers.

use std::fmt::Write as _;

/// What a watcher asks for (memcached's `LOG_*` flags, by name).
pub mod kind {
    pub const FETCHERS: u32 = 1 << 0;
    pub const MUTATIONS: u32 = 1 << 1;
    pub const EVICTIONS: u32 = 1 << 2;
    pub const CONNEVENTS: u32 = 1 << 3;
    /// Kinds memcached knows that caskade accepts and has no events of.
    pub const SILENT: u32 = 1 << 4;
}

/// The kinds a `watch` line asks for: its arguments, or fetchers without any (as
/// memcached). `None`: an argument memcached does not know (it answers `ERROR`).
pub fn parse_kinds<'a>(args: impl Iterator<Item = &'a [u8]>) -> Option<u32> {
    let mut kinds = 0;
    let mut any = false;
    for a in args {
        any = true;
        kinds |= match a {
            b"fetchers" => kind::FETCHERS,
            b"mutations" => kind::MUTATIONS,
            b"evictions" => kind::EVICTIONS,
            b"connevents" => kind::CONNEVENTS,
            b"sysevents" | b"rawcmds" | b"proxyreqs" | b"proxyevents" | b"proxyuser" => kind::SILENT,
            _ => return None,
        };
    }
    Some(if any { kinds } else { kind::FETCHERS })
}

/// A key as memcached's `uriencode` writes it: unreserved bytes as they are, the rest `%XX`.
pub fn uri(key: &[u8], out: &mut String) {
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// `type=item_get ...` (memcached's `_logger_parse_ige`).
pub fn item_get(out: &mut String, key: &[u8], found: bool, size: usize, cfd: i32) {
    out.push_str("type=item_get key=");
    uri(key, out);
    let (status, clsid) = if found { ("found", 1) } else { ("not_found", 0) };
    let _ = write!(out, " status={status} clsid={clsid} cfd={cfd} size={size}");
}

/// `type=item_store ...` (memcached's `_logger_parse_ise`).
pub fn item_store(out: &mut String, key: &[u8], status: &str, cmd: &str, ttl: u32, size: usize, cfd: i32) {
    out.push_str("type=item_store key=");
    uri(key, out);
    let _ = write!(out, " status={status} cmd={cmd} ttl={ttl} clsid=1 cfd={cfd} size={size}");
}

/// `type=eviction ...` (memcached's `_logger_parse_ee`).
pub fn eviction(out: &mut String, key: &[u8], fetched: bool, ttl: i64, la: u32, size: usize) {
    out.push_str("type=eviction key=");
    uri(key, out);
    let _ = write!(out, " fetch={} ttl={ttl} la={la} clsid=1 size={size}", if fetched { "yes" } else { "no" });
}

/// `type=conn_new ...` / `type=conn_close ...` (memcached's `_logger_parse_cne`/`_cce`).
pub fn conn_event(out: &mut String, peer: Option<std::net::SocketAddr>, close_reason: Option<&str>, cfd: i32) {
    let (rip, rport) = peer.map_or(("unix".to_string(), 0), |a| (a.ip().to_string(), a.port()));
    match close_reason {
        None => {
            let _ = write!(out, "type=conn_new rip={rip} rport={rport} transport=tcp cfd={cfd}");
        }
        Some(reason) => {
            let _ = write!(out, "type=conn_close rip={rip} rport={rport} transport=tcp reason={reason} cfd={cfd}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_memcacheds_names() {
        let k = |s: &str| parse_kinds(s.split(' ').filter(|a| !a.is_empty()).map(str::as_bytes));
        assert_eq!(k(""), Some(kind::FETCHERS), "no argument: fetchers");
        assert_eq!(k("fetchers mutations"), Some(kind::FETCHERS | kind::MUTATIONS));
        assert_eq!(k("fetchers fetchers"), Some(kind::FETCHERS));
        assert_eq!(k("connevents evictions"), Some(kind::CONNEVENTS | kind::EVICTIONS));
        assert_eq!(k("proxyreqs"), Some(kind::SILENT));
        assert_eq!(k("bogus"), None);
        assert_eq!(k("FETCHERS"), None, "memcached's names are lower case");
        assert_eq!(k("deletions"), None, "not in memcached 1.6.18");
    }

    #[test]
    fn lines_are_memcacheds() {
        let mut s = String::new();
        item_get(&mut s, b"foo", true, 3, 17);
        assert_eq!(s, "type=item_get key=foo status=found clsid=1 cfd=17 size=3");
        s.clear();
        item_get(&mut s, b"a b,c", false, 0, 17);
        assert_eq!(s, "type=item_get key=a%20b%2Cc status=not_found clsid=0 cfd=17 size=0");
        s.clear();
        item_store(&mut s, b"n", "not_stored", "add", 0, 1, 17);
        assert_eq!(s, "type=item_store key=n status=not_stored cmd=add ttl=0 clsid=1 cfd=17 size=1");
        s.clear();
        conn_event(&mut s, Some("127.0.0.1:35174".parse().unwrap()), Some("normal"), 17);
        assert_eq!(s, "type=conn_close rip=127.0.0.1 rport=35174 transport=tcp reason=normal cfd=17");
        s.clear();
        eviction(&mut s, b"k", false, -1, 5, 10);
        assert_eq!(s, "type=eviction key=k fetch=no ttl=-1 la=5 clsid=1 size=10");
    }
}
