//! The start of a peer link: HELLO, then AUTH, each answered once.
//!
//! ```text
//! initiator (A)                                   responder (B)
//!   HELLO  version, target core, map checksum,
//!          A's id, nonce_a, cluster name   ───▶   checks name, version, checksum
//!                                          ◀───   HELLO ok: version, B's cores, checksum,
//!                                                 B's id, nonce_b, proof_b
//!   checks proof_b (B knows the secret)
//!   AUTH   proof_a                          ───▶   checks proof_a
//!                                          ◀───   AUTH ok   (or an error, then close)
//! ```
//! `proof_x = HMAC-SHA256(secret, role_x ‖ len‖name ‖ len‖id_a ‖ len‖id_b ‖ nonce_a ‖ nonce_b)`,
//! with a different role string for each side, so that neither proof can be replayed as
//! the other, and fresh nonces from both sides, so that no proof can be replayed on another
//! link. Nothing but HELLO and AUTH is served before AUTH succeeds.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{write_frame, Fields, Frame, Op};
use crate::protocol::binary::{REQUEST_MAGIC, RESPONSE_MAGIC};

pub const NONCE_LEN: usize = 16;
pub const PROOF_LEN: usize = 32;
pub type Nonce = [u8; NONCE_LEN];

/// Handshake statuses (the status field of a HELLO or AUTH response).
pub mod status {
    pub const OK: u16 = 0x0000;
    /// Another cluster name, or a proof that does not check out.
    pub const AUTH_ERROR: u16 = 0x0020;
    /// Another peer protocol version.
    pub const VERSION_MISMATCH: u16 = 0x0083;
    /// Another map checksum.
    pub const MAP_MISMATCH: u16 = 0x0007;
    /// A frame that does not belong here (a forwarded request before AUTH, a bad HELLO).
    pub const PROTOCOL_ERROR: u16 = 0x0004;
}

const ROLE_INITIATOR: &[u8] = b"caskade-peer-v1 initiator";
const ROLE_RESPONDER: &[u8] = b"caskade-peer-v1 responder";

/// What the initiator says first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello<'a> {
    pub version: u16,
    /// The responder's core the link is for (forwarded requests then need no hop there).
    pub target_core: u16,
    pub map_checksum: u32,
    pub node_id: &'a [u8],
    pub nonce: Nonce,
    pub cluster: &'a [u8],
}

impl<'a> Hello<'a> {
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut extras = [0u8; 8];
        extras[0..2].copy_from_slice(&self.version.to_be_bytes());
        extras[2..4].copy_from_slice(&self.target_core.to_be_bytes());
        extras[4..8].copy_from_slice(&self.map_checksum.to_be_bytes());
        let mut value = Vec::with_capacity(NONCE_LEN + self.cluster.len());
        value.extend_from_slice(&self.nonce);
        value.extend_from_slice(self.cluster);
        write_frame(out, REQUEST_MAGIC, Op::Hello, 0, 0, 0, &extras, self.node_id, &value);
    }

    pub fn parse(f: &Frame<'a>) -> Option<Hello<'a>> {
        if !f.is_request() || f.op() != Some(Op::Hello) || f.extras.len() != 8 {
            return None;
        }
        let mut x = Fields::new(f.extras);
        let (nonce, cluster) = f.value.split_at_checked(NONCE_LEN)?;
        Some(Hello {
            version: x.u16()?,
            target_core: x.u16()?,
            map_checksum: x.u32()?,
            node_id: f.key,
            nonce: nonce.try_into().ok()?,
            cluster,
        })
    }
}

/// The responder's answer to a HELLO it accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloOk<'a> {
    pub version: u16,
    /// How many cores the responder runs (partition `p` is on its core `p mod cores`).
    pub cores: u16,
    pub map_checksum: u32,
    pub node_id: &'a [u8],
    pub nonce: Nonce,
    pub proof: [u8; PROOF_LEN],
}

impl<'a> HelloOk<'a> {
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut extras = [0u8; 8];
        extras[0..2].copy_from_slice(&self.version.to_be_bytes());
        extras[2..4].copy_from_slice(&self.cores.to_be_bytes());
        extras[4..8].copy_from_slice(&self.map_checksum.to_be_bytes());
        let mut value = [0u8; NONCE_LEN + PROOF_LEN];
        value[..NONCE_LEN].copy_from_slice(&self.nonce);
        value[NONCE_LEN..].copy_from_slice(&self.proof);
        write_frame(out, RESPONSE_MAGIC, Op::Hello, status::OK, 0, 0, &extras, self.node_id, &value);
    }

    pub fn parse(f: &Frame<'a>) -> Option<HelloOk<'a>> {
        if f.is_request() || f.op() != Some(Op::Hello) || f.status() != status::OK || f.extras.len() != 8 {
            return None;
        }
        if f.value.len() != NONCE_LEN + PROOF_LEN {
            return None;
        }
        let mut x = Fields::new(f.extras);
        Some(HelloOk {
            version: x.u16()?,
            cores: x.u16()?,
            map_checksum: x.u32()?,
            node_id: f.key,
            nonce: f.value[..NONCE_LEN].try_into().ok()?,
            proof: f.value[NONCE_LEN..].try_into().ok()?,
        })
    }
}

/// A refusal of a HELLO or an AUTH: a status and a reason to log.
pub fn write_refusal(out: &mut Vec<u8>, op: Op, status: u16, reason: &str) {
    write_frame(out, RESPONSE_MAGIC, op, status, 0, 0, &[], &[], reason.as_bytes());
}

pub fn write_auth(out: &mut Vec<u8>, proof: &[u8; PROOF_LEN]) {
    write_frame(out, REQUEST_MAGIC, Op::Auth, 0, 0, 0, &[], &[], proof);
}

pub fn write_auth_ok(out: &mut Vec<u8>) {
    write_frame(out, RESPONSE_MAGIC, Op::Auth, status::OK, 0, 0, &[], &[], &[]);
}

/// The proof an AUTH request carries, if it is one.
pub fn parse_auth<'a>(f: &Frame<'a>) -> Option<&'a [u8]> {
    (f.is_request() && f.op() == Some(Op::Auth) && f.value.len() == PROOF_LEN).then_some(f.value)
}

/// Which side a proof speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Initiator,
    Responder,
}

/// What both sides of one link know once HELLO is answered.
pub struct Transcript<'a> {
    pub cluster: &'a [u8],
    pub initiator: &'a [u8],
    pub responder: &'a [u8],
    pub nonce_initiator: Nonce,
    pub nonce_responder: Nonce,
}

impl Transcript<'_> {
    fn mac(&self, secret: &[u8], role: Role) -> Hmac<Sha256> {
        // new_from_slice takes a key of any length for HMAC.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes a key of any length");
        mac.update(match role {
            Role::Initiator => ROLE_INITIATOR,
            Role::Responder => ROLE_RESPONDER,
        });
        for field in [self.cluster, self.initiator, self.responder] {
            mac.update(&(field.len() as u32).to_be_bytes());
            mac.update(field);
        }
        mac.update(&self.nonce_initiator);
        mac.update(&self.nonce_responder);
        mac
    }

    pub fn proof(&self, secret: &[u8], role: Role) -> [u8; PROOF_LEN] {
        self.mac(secret, role).finalize().into_bytes().into()
    }

    /// Checks `proof` in constant time.
    pub fn verify(&self, secret: &[u8], role: Role, proof: &[u8]) -> bool {
        self.mac(secret, role).verify_slice(proof).is_ok()
    }
}

/// A fresh nonce from the kernel's random source.
pub fn nonce() -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    let mut filled = 0;
    while filled < NONCE_LEN {
        // SAFETY: writes at most the remaining length into our own buffer.
        let r = unsafe { libc::getrandom(n[filled..].as_mut_ptr().cast(), NONCE_LEN - filled, 0) };
        if r > 0 {
            filled += r as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // No kernel randomness: a nonce still never repeats within this process.
            use std::sync::atomic::{AtomicU64, Ordering};
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let c = COUNTER.fetch_add(1, Ordering::Relaxed);
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
            n[..8].copy_from_slice(&c.to_be_bytes());
            n[8..].copy_from_slice(&(t ^ std::process::id() as u64).to_be_bytes());
            break;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript<'a>(a: Nonce, b: Nonce) -> Transcript<'a> {
        Transcript { cluster: b"prod", initiator: b"a", responder: b"b", nonce_initiator: a, nonce_responder: b }
    }

    #[test]
    fn proofs_check_out_only_with_the_secret_the_role_and_the_nonces() {
        let secret = b"0123456789abcdef";
        let t = transcript([1; 16], [2; 16]);
        let p = t.proof(secret, Role::Initiator);
        assert!(t.verify(secret, Role::Initiator, &p));
        assert!(!t.verify(secret, Role::Responder, &p), "a proof is not the other side's");
        assert!(!t.verify(b"another secret!!", Role::Initiator, &p));
        assert!(!transcript([1; 16], [3; 16]).verify(secret, Role::Initiator, &p), "another nonce");
        assert!(!t.verify(secret, Role::Initiator, &p[..31]));
    }

    #[test]
    fn hello_and_its_answer_round_trip() {
        let mut out = Vec::new();
        let hello = Hello { version: 1, target_core: 3, map_checksum: 0xDEAD_BEEF, node_id: b"a", nonce: [9; 16], cluster: b"prod" };
        hello.write(&mut out);
        let (f, _) = Frame::decode(&out, 1024).unwrap().unwrap();
        assert_eq!(Hello::parse(&f), Some(hello));
        let mut out = Vec::new();
        let ok = HelloOk { version: 1, cores: 2, map_checksum: 7, node_id: b"b", nonce: [4; 16], proof: [5; 32] };
        ok.write(&mut out);
        let (f, _) = Frame::decode(&out, 1024).unwrap().unwrap();
        assert_eq!(HelloOk::parse(&f), Some(ok));
        assert_eq!(Hello::parse(&f), None, "a response is no HELLO");
        assert_ne!(nonce(), nonce());
    }
}
