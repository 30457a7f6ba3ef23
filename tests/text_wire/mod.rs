//! A raw text-protocol client for tests that need exact bytes on the wire.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct Text {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Text {
    pub fn connect(addr: SocketAddr) -> Text {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_nodelay(true).unwrap();
        Text { stream, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).expect("send");
    }

    /// Bytes received and not yet taken by `expect` or `line`.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Reads until `n` bytes are buffered; false if the connection closed first.
    fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return false,
                Err(e) => panic!("read (have {:?}): {e}", String::from_utf8_lossy(&self.buf)),
            }
        }
        true
    }

    /// Asserts that exactly `want` comes next.
    pub fn expect(&mut self, want: impl AsRef<[u8]>) {
        let want = want.as_ref();
        let complete = self.fill(want.len());
        let got = &self.buf[..want.len().min(self.buf.len())];
        assert!(
            complete && got == want,
            "expected {:?}\n     got {:?}{}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(got),
            if complete { "" } else { " (then the connection closed)" }
        );
        self.buf.drain(..want.len());
    }

    /// The next line, without its `\r\n`.
    pub fn line(&mut self) -> String {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..p]).into_owned();
                self.buf.drain(..p + 2);
                return line;
            }
            let n = self.buf.len() + 1;
            assert!(self.fill(n), "connection closed; have {:?}", String::from_utf8_lossy(&self.buf));
        }
    }

    /// `stats` as name → value.
    pub fn stats(&mut self, group: &str) -> std::collections::HashMap<String, String> {
        self.send(if group.is_empty() { "stats\r\n".to_string() } else { format!("stats {group}\r\n") });
        let mut map = std::collections::HashMap::new();
        loop {
            let line = self.line();
            if line == "END" {
                return map;
            }
            let mut parts = line.splitn(3, ' ');
            assert_eq!(parts.next(), Some("STAT"), "{line}");
            let name = parts.next().unwrap_or_default().to_string();
            map.insert(name, parts.next().unwrap_or_default().to_string());
        }
    }

    /// The CAS of `key` from `gets`.
    pub fn cas_of(&mut self, key: &str) -> u64 {
        self.send(format!("gets {key}\r\n"));
        let line = self.line();
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!((fields[0], fields.len()), ("VALUE", 5), "{line}");
        let len: usize = fields[3].parse().unwrap();
        self.fill(len + 2);
        self.buf.drain(..len + 2);
        self.expect("END\r\n");
        fields[4].parse().unwrap()
    }

    /// True if the server closes the connection (without sending anything more) within 5 s.
    pub fn closed(&mut self) -> bool {
        self.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut chunk = [0u8; 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return self.buf.is_empty(),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return self.buf.is_empty(),
                Err(_) => return false,
            }
        }
    }

    /// A set then get round trip: the server still serves this connection.
    pub fn assert_serves(&mut self, key: &str) {
        self.send(format!("set {key} 0 0 5\r\nalive\r\nget {key}\r\n"));
        self.expect(format!("STORED\r\nVALUE {key} 0 5\r\nalive\r\nEND\r\n"));
    }
}
