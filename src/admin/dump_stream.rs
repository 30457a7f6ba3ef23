//! `GET /dump`: the dump format (`crate::dump`) produced core by core as the client reads.
//!
//! The stream asks core 0 for its first chunk of items (`Control::Dump`, answered between
//! two of the core's event-loop turns), hands the bytes out, asks for the next chunk from
//! where the core left off, and so on to the last core; then the trailer with the item
//! count and the CRC-32C of everything before it. No core is ever read from this thread,
//! and at most one chunk (about 1 MiB) is held here at a time. If a core stops answering the
//! stream fails, the HTTP response ends without its trailer, and the client reports a dump
//! cut short.

use std::io::{self, Read};
use std::sync::Arc;

use super::CORE_TIMEOUT;
use crate::dump;
use crate::server::Handle;

pub struct DumpStream {
    handle: Arc<Handle>,
    /// The core being read, and where its next chunk starts (`None`: it is done).
    core: usize,
    cursor: Option<usize>,
    buf: Vec<u8>,
    pos: usize,
    crc: u32,
    items: u64,
    finished: bool,
    expected: u64,
}

impl DumpStream {
    pub fn new(handle: Arc<Handle>) -> DumpStream {
        let expected = crate::stats::merged(&handle.node.core_stats)
            .into_iter()
            .find(|(n, _)| *n == "curr_items")
            .map_or(0, |(_, v)| v);
        let mut buf = Vec::with_capacity(dump::HEADER_LEN);
        dump::write_header(&mut buf, crate::stats::unix_now());
        let crc = crc32c::crc32c(&buf);
        DumpStream { handle, core: 0, cursor: Some(0), buf, pos: 0, crc, items: 0, finished: false, expected }
    }

    /// Items the node held when the dump started (a progress bar's total; the dump itself
    /// may hold a few more or fewer).
    pub fn expected_items(&self) -> u64 {
        self.expected
    }

    /// Puts the next bytes in `buf`; false at the end of the stream.
    fn refill(&mut self) -> io::Result<bool> {
        self.buf.clear();
        self.pos = 0;
        loop {
            if self.finished {
                return Ok(false);
            }
            if self.core >= self.handle.cores() {
                self.buf.extend_from_slice(&dump::trailer(self.items, self.crc));
                self.finished = true;
                log::info!("admin: dumped {} items", self.items);
                return Ok(true);
            }
            let Some(from) = self.cursor else {
                self.core += 1;
                self.cursor = Some(0);
                continue;
            };
            let chunk = self.handle.dump_chunk(self.core, from, CORE_TIMEOUT)?;
            self.cursor = chunk.next;
            self.items += chunk.items;
            if !chunk.bytes.is_empty() {
                self.crc = crc32c::crc32c_append(self.crc, &chunk.bytes);
                self.buf = chunk.bytes;
                return Ok(true);
            }
        }
    }
}

impl Read for DumpStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
