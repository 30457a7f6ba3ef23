//! The high-water mark a merge leaves behind: the highest CAS and, per partition, the highest
//! seqno of every record its inputs held, so that the counters a shard derives at start-up
//! never go back when a merge drops the records that held their top values.
//!
//! It travels as a record of kind [`Kind::Watermark`](super::record::Kind::Watermark), the
//! last one of a merge output: CAS field = the highest CAS, empty key, and this value:
//!
//! | off   | size | field                                        |
//! |------:|-----:|----------------------------------------------|
//! | 10·i  | 2    | partition (strictly ascending, < 1024)       |
//! | 10·i+2| 8    | highest seqno of that partition (never 0)    |
//!
//! Only partitions with a nonzero seqno are listed. Codec only: no I/O here.

use super::record::Meta;
use crate::cluster::PARTITIONS;

/// Bytes one partition takes in the value.
pub const ENTRY_LEN: usize = 10;

/// The highest CAS and per-partition seqnos seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watermark {
    pub cas: u64,
    /// Indexed by partition.
    seqnos: Vec<u64>,
}

impl Default for Watermark {
    fn default() -> Watermark {
        Watermark { cas: 0, seqnos: vec![0; PARTITIONS as usize] }
    }
}

impl Watermark {
    /// Takes a record's CAS and seqno into account.
    pub fn observe(&mut self, meta: &Meta) {
        self.cas = self.cas.max(meta.cas);
        if let Some(s) = self.seqnos.get_mut(meta.partition as usize) {
            *s = (*s).max(meta.seqno);
        }
    }

    /// A full resync of `partitions` began (a backup's snapshot-begin flush record): their
    /// copies restart from seqno 0, and what came before must not raise them again, neither
    /// here nor at a restart that replays this watermark after the record.
    pub fn restart(&mut self, partitions: impl Iterator<Item = u16>) {
        for p in partitions {
            if let Some(s) = self.seqnos.get_mut(p as usize) {
                *s = 0;
            }
        }
    }

    /// Takes another watermark into account (the maximum of both).
    pub fn absorb(&mut self, other: &Watermark) {
        self.cas = self.cas.max(other.cas);
        for (s, o) in self.seqnos.iter_mut().zip(&other.seqnos) {
            *s = (*s).max(*o);
        }
    }

    pub fn seqno(&self, partition: u16) -> u64 {
        self.seqnos.get(partition as usize).copied().unwrap_or(0)
    }

    /// Nothing seen: no record is worth writing.
    pub fn is_empty(&self) -> bool {
        self.cas == 0 && self.seqnos.iter().all(|&s| s == 0)
    }

    /// The record's value (the CAS goes in the record's CAS field).
    pub fn encode_value(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (p, &s) in self.seqnos.iter().enumerate().filter(|(_, &s)| s != 0) {
            out.extend_from_slice(&(p as u16).to_le_bytes());
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    /// Reads a watermark record's CAS field and value.
    pub fn decode(cas: u64, value: &[u8]) -> Result<Watermark, &'static str> {
        if !value.len().is_multiple_of(ENTRY_LEN) {
            return Err("watermark value is not a whole number of entries");
        }
        let mut w = Watermark { cas, ..Watermark::default() };
        let mut last: Option<u16> = None;
        for e in value.chunks_exact(ENTRY_LEN) {
            let p = u16::from_le_bytes([e[0], e[1]]);
            let mut s = [0u8; 8];
            s.copy_from_slice(&e[2..]);
            let s = u64::from_le_bytes(s);
            if p >= PARTITIONS || last.is_some_and(|l| p <= l) || s == 0 {
                return Err("watermark entries out of order, out of range or zero");
            }
            w.seqnos[p as usize] = s;
            last = Some(p);
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_literal() {
        let mut w = Watermark::default();
        w.observe(&Meta { partition: 3, seqno: 7, cas: 90, ..Meta::default() });
        w.observe(&Meta { partition: 3, seqno: 5, cas: 10, ..Meta::default() });
        w.observe(&Meta { partition: 1023, seqno: 1, cas: 0, ..Meta::default() });
        let v = w.encode_value();
        assert_eq!(v, [&[3, 0][..], &[7, 0, 0, 0, 0, 0, 0, 0], &[0xff, 0x03], &[1, 0, 0, 0, 0, 0, 0, 0]].concat());
        let back = Watermark::decode(90, &v).unwrap();
        assert_eq!(back, w);
        assert_eq!((back.cas, back.seqno(3), back.seqno(1023), back.seqno(0)), (90, 7, 1, 0));
        assert!(Watermark::default().is_empty() && !w.is_empty());
    }

    #[test]
    fn absorb_takes_the_maximum() {
        let mut a = Watermark::decode(5, &[1, 0, 9, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        let b = Watermark::decode(3, &[1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 2, 0, 6, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        a.absorb(&b);
        assert_eq!((a.cas, a.seqno(1), a.seqno(2)), (5, 9, 6));
    }

    #[test]
    fn layout_follows_the_spec_table() {
        // protocol-spec/storage-format.md, "Watermark record" and "Record".
        let spec = include_str!("../../../protocol-spec/storage-format.md");
        assert_eq!(ENTRY_LEN, 2 + 8);
        assert!(spec.contains("| 10·i | 2 | partition, strictly ascending, < 1024 |"));
        assert!(spec.contains("| 10·i+2 | 8 | the highest seqno of that partition, never 0 |"));
        assert!(spec.contains(&format!("{} watermark |", super::super::record::Kind::Watermark as u8)));
        assert_eq!(PARTITIONS, 1024);
    }

    #[test]
    fn bad_values_are_refused() {
        let entry = |p: u16, s: u64| [&p.to_le_bytes()[..], &s.to_le_bytes()].concat();
        assert!(Watermark::decode(0, &[0; 9]).is_err());
        assert!(Watermark::decode(0, &entry(1024, 1)).is_err());
        assert!(Watermark::decode(0, &entry(4, 0)).is_err());
        assert!(Watermark::decode(0, &[entry(4, 1), entry(4, 2)].concat()).is_err());
        assert!(Watermark::decode(0, &[entry(5, 1), entry(4, 2)].concat()).is_err());
        assert!(Watermark::decode(0, &[]).is_ok());
    }
}
