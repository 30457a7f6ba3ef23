//! `lru_crawler metadump`'s lines, as memcached 1.6 writes them: one per item,
//! `key=<key, URI-encoded> exp=<unix time, -1 for none> la=<unix time of the last access>
//! cas=<cas> fetch=<yes|no> cls=<class> size=<bytes>`, ended by `\n` alone; `END\r\n` after
//! the last. caskade has one class (1); `size` is the bytes the item is charged.

use super::reply::push_u64;
use crate::storage::ItemMeta;

/// What memcached leaves unencoded in a key (`uriencode_map`): letters, digits, `-._~`.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Appends the line of one item.
pub fn line(out: &mut Vec<u8>, key: &[u8], m: &ItemMeta) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(b"key=");
    for &b in key {
        if unreserved(b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
    }
    out.extend_from_slice(b" exp=");
    if m.expiry == 0 {
        out.extend_from_slice(b"-1");
    } else {
        push_u64(out, m.expiry.into());
    }
    out.extend_from_slice(b" la=");
    push_u64(out, m.atime.into());
    out.extend_from_slice(b" cas=");
    push_u64(out, m.cas);
    out.extend_from_slice(if m.fetched { b" fetch=yes" } else { b" fetch=no" });
    out.extend_from_slice(b" cls=1 size=");
    push_u64(out, m.size);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memcached_s_format() {
        let mut out = Vec::new();
        let m = ItemMeta { expiry: 1796438288, atime: 1796438188, cas: 17, fetched: false, size: 65 };
        line(&mut out, b"a%20b", &m);
        line(&mut out, b"k~._-Z9", &ItemMeta { expiry: 0, fetched: true, ..m });
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "key=a%2520b exp=1796438288 la=1796438188 cas=17 fetch=no cls=1 size=65\n\
             key=k~._-Z9 exp=-1 la=1796438188 cas=17 fetch=yes cls=1 size=65\n"
        );
    }
}
