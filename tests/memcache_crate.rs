//! Client compatibility: the `memcache` crate (0.21, blocking client) over the binary
//! protocol.
//!
//! The crate speaks binary unless the URL says `protocol=ascii`; `?protocol=binary` is
//! written out anyway so the intent is visible. Its connection pool checks every
//! connection out with a VERSION request, and it writes each request in several small
//! `write` calls (header, extras, key, value) with TCP_NODELAY on, so the server also sees
//! requests that arrive in pieces. Multi-get (`gets`) is a pipeline of GETKQ ending in NOOP.
//!
//! What the crate cannot observe: it always stores flags 0, and it ignores the status of a
//! PREPEND response; the Python clients cover flags.

mod common;

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use memcache::{Client, CommandError, MemcacheError};

use common::Server;

/// Socket and pool timeouts, so that a server that stops answering fails the test instead
/// of hanging it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// An item set with a 1 s TTL must be gone within this long.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(3);
const EXPIRY_POLL: Duration = Duration::from_millis(50);

fn connect(server: &Server) -> Client {
    let url = format!("memcache://{}?protocol=binary", server.host_port());
    Client::builder()
        .add_server(url.as_str())
        .and_then(|b| {
            b.with_read_timeout(CLIENT_TIMEOUT)
                .with_write_timeout(CLIENT_TIMEOUT)
                .with_connection_timeout(CLIENT_TIMEOUT)
                .build()
        })
        .unwrap_or_else(|e| panic!("memcache client cannot connect to {url}: {e}"))
}

fn get_string(client: &Client, key: &str) -> Option<String> {
    client
        .get::<String>(key)
        .unwrap_or_else(|e| panic!("get {key:?}: {e}"))
}

fn command_error(result: Result<impl std::fmt::Debug, MemcacheError>) -> CommandError {
    match result {
        Err(MemcacheError::CommandError(e)) => e,
        other => panic!("expected a command error status, got {other:?}"),
    }
}

/// Polls `key` until it is gone; panics if it is still there after `EXPIRY_DEADLINE`.
fn wait_until_gone(client: &Client, key: &str) -> Duration {
    let start = Instant::now();
    loop {
        if get_string(client, key).is_none() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < EXPIRY_DEADLINE,
            "{key:?} still present {EXPIRY_DEADLINE:?} after it was given a 1 s TTL"
        );
        thread::sleep(EXPIRY_POLL);
    }
}

#[test]
fn version_is_reported() {
    let server = Server::start(&[]);
    let client = connect(&server);
    let versions = client.version().expect("version");
    assert_eq!(versions.len(), 1, "one server, one version: {versions:?}");
    assert!(
        !versions[0].1.is_empty(),
        "empty version string: {versions:?}"
    );
}

#[test]
fn set_get_delete() {
    let server = Server::start(&[]);
    let client = connect(&server);

    assert_eq!(
        get_string(&client, "absent"),
        None,
        "get of a key never set"
    );

    client.set("greeting", "hello", 0).expect("set");
    assert_eq!(get_string(&client, "greeting").as_deref(), Some("hello"));

    client
        .set("greeting", "hello again", 0)
        .expect("set over an existing key");
    assert_eq!(
        get_string(&client, "greeting").as_deref(),
        Some("hello again")
    );

    // Values are bytes, not text: NUL, CR LF and invalid UTF-8 must round-trip.
    let binary: &[u8] = b"\x00\r\n\xff\xfe END\r\n";
    client.set("binary", binary, 0).expect("set binary value");
    let back: Option<Vec<u8>> = client.get("binary").expect("get binary value");
    assert_eq!(back.as_deref(), Some(binary));

    client.set("empty", "", 0).expect("set empty value");
    assert_eq!(
        get_string(&client, "empty").as_deref(),
        Some(""),
        "empty value"
    );

    assert!(
        client.delete("greeting").expect("delete"),
        "delete of a present key"
    );
    assert_eq!(get_string(&client, "greeting"), None, "get after delete");
    assert!(
        !client.delete("greeting").expect("delete again"),
        "delete of an absent key"
    );
}

#[test]
fn add_and_replace() {
    let server = Server::start(&[]);
    let client = connect(&server);

    client
        .add("fresh", "first", 0)
        .expect("add of an absent key");
    assert_eq!(
        command_error(client.add("fresh", "second", 0)),
        CommandError::KeyExists,
        "add of a present key"
    );
    assert_eq!(
        get_string(&client, "fresh").as_deref(),
        Some("first"),
        "failed add changed value"
    );

    assert_eq!(
        command_error(client.replace("nobody", "x", 0)),
        CommandError::KeyNotFound,
        "replace of an absent key"
    );
    assert_eq!(
        get_string(&client, "nobody"),
        None,
        "failed replace created the key"
    );

    client
        .replace("fresh", "replaced", 0)
        .expect("replace of a present key");
    assert_eq!(get_string(&client, "fresh").as_deref(), Some("replaced"));
}

#[test]
fn incr_and_decr() {
    let server = Server::start(&[]);
    let client = connect(&server);

    client.set("n", 10u64, 0).expect("set counter");
    assert_eq!(client.increment("n", 5).expect("incr"), 15);
    assert_eq!(
        get_string(&client, "n").as_deref(),
        Some("15"),
        "value after incr"
    );
    assert_eq!(client.decrement("n", 3).expect("decr"), 12);
    assert_eq!(
        client.decrement("n", 100).expect("decr below zero"),
        0,
        "decr clamps at 0"
    );
    // A decrement that loses digits may leave the value space-padded ("0 "), as memcached
    // does; the protocol allows both.
    assert_eq!(
        get_string(&client, "n").as_deref().map(str::trim_end),
        Some("0")
    );

    client.set("max", u64::MAX, 0).expect("set u64::MAX");
    assert_eq!(
        client.increment("max", 1).expect("incr past u64::MAX"),
        0,
        "incr wraps"
    );

    // The crate sends initial value 0 and expiration 0, which asks the server to create
    // an absent counter with the initial value.
    assert_eq!(
        client
            .increment("created", 7)
            .expect("incr of an absent key"),
        0
    );
    assert_eq!(get_string(&client, "created").as_deref(), Some("0"));
    assert_eq!(client.increment("created", 7).expect("incr"), 7);

    client.set("text", "not a number", 0).expect("set text");
    let err = command_error(client.increment("text", 1));
    // Status 0x0006: "Incr/Decr on non-numeric value".
    assert_eq!(err, CommandError::Unknown(6), "incr of a non-numeric value");
}

#[test]
fn append_and_prepend() {
    let server = Server::start(&[]);
    let client = connect(&server);

    client.set("s", "middle", 0).expect("set");
    client.append("s", "-end").expect("append");
    client.prepend("s", "start-").expect("prepend");
    assert_eq!(
        get_string(&client, "s").as_deref(),
        Some("start-middle-end")
    );

    // Status 0x0005: "Item not stored".
    assert_eq!(
        command_error(client.append("absent", "x")),
        CommandError::Unknown(5),
        "append to an absent key"
    );
    // The crate ignores PREPEND's status; the key must still not exist afterwards.
    client
        .prepend("absent", "x")
        .expect("prepend to an absent key (status ignored)");
    assert_eq!(
        get_string(&client, "absent"),
        None,
        "append/prepend created a key"
    );
}

#[test]
fn cas() {
    let server = Server::start(&[]);
    let client = connect(&server);

    client.set("c", "v1", 0).expect("set");
    let (value, _flags, cas) = client
        .get::<(String, u32, Option<u64>)>("c")
        .expect("get with cas")
        .expect("c present");
    assert_eq!(value, "v1");
    let cas = cas.expect("get returned a CAS value");
    assert_ne!(cas, 0, "CAS value of a stored item is not 0");

    assert!(
        client.cas("c", "v2", 0, cas).expect("cas with current id"),
        "cas with current id"
    );
    assert_eq!(get_string(&client, "c").as_deref(), Some("v2"));

    assert!(
        !client.cas("c", "v3", 0, cas).expect("cas with stale id"),
        "cas with a stale id"
    );
    assert_eq!(
        get_string(&client, "c").as_deref(),
        Some("v2"),
        "stale cas changed the value"
    );

    let (_, _, new_cas) = client
        .get::<(String, u32, Option<u64>)>("c")
        .expect("get with cas")
        .expect("c present");
    assert_ne!(
        new_cas,
        Some(cas),
        "CAS value changes when the item changes"
    );

    assert!(
        !client
            .cas("gone", "x", 0, cas)
            .expect("cas of an absent key"),
        "cas of an absent key"
    );
    assert_eq!(get_string(&client, "gone"), None);
}

#[test]
fn multi_get() {
    let server = Server::start(&[]);
    let client = connect(&server);

    for (key, value) in [("a", "1"), ("b", "22"), ("c", "333")] {
        client.set(key, value, 0).expect("set");
    }
    let found: HashMap<String, String> = client
        .gets(&["a", "missing-1", "b", "c", "missing-2"])
        .expect("multi-get");
    let expected: HashMap<String, String> = [("a", "1"), ("b", "22"), ("c", "333")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(found, expected, "multi-get returns present keys only");

    let none: HashMap<String, String> = client.gets(&["x", "y"]).expect("multi-get of absent keys");
    assert!(none.is_empty(), "multi-get of absent keys: {none:?}");

    // A larger pipeline: 200 GETKQ in one write sequence, then a NOOP.
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        if i % 2 == 0 {
            client.set(key, i as u64, 0).expect("set");
        }
    }
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let found: HashMap<String, u64> = client.gets(&refs).expect("multi-get of 200 keys");
    assert_eq!(found.len(), 100, "half of the 200 keys are present");
    for (key, value) in &found {
        assert_eq!(
            key,
            &format!("key-{value}"),
            "multi-get paired {key} with {value}"
        );
    }
}

#[test]
fn touch() {
    let server = Server::start(&[]);
    let client = connect(&server);

    assert!(
        !client.touch("absent", 1).expect("touch of an absent key"),
        "touch of an absent key"
    );

    // Lengthen: an item set with a 1 s TTL and touched to 100 s is still there when the
    // 1 s item would surely be gone.
    let start = Instant::now();
    client.set("t", "lives", 1).expect("set with TTL 1");
    assert!(
        client.touch("t", 100).expect("touch"),
        "touch of a present key"
    );
    thread::sleep(EXPIRY_DEADLINE.saturating_sub(start.elapsed()));
    assert_eq!(
        get_string(&client, "t").as_deref(),
        Some("lives"),
        "touch to 100 s did not extend a 1 s TTL: item gone {EXPIRY_DEADLINE:?} after set"
    );

    // Shorten: touched to 1 s, it goes.
    assert!(
        client.touch("t", 1).expect("touch"),
        "touch to shorten the TTL"
    );
    wait_until_gone(&client, "t");
}

#[test]
fn expiry() {
    let server = Server::start(&[]);
    let client = connect(&server);

    client
        .set("ephemeral", "soon gone", 1)
        .expect("set with TTL 1");
    client.set("durable", "stays", 0).expect("set without TTL");
    assert_eq!(
        get_string(&client, "ephemeral").as_deref(),
        Some("soon gone"),
        "item with TTL 1 readable right after set"
    );
    let took = wait_until_gone(&client, "ephemeral");
    println!("item with TTL 1 s gone after {took:?}");
    assert_eq!(
        get_string(&client, "durable").as_deref(),
        Some("stays"),
        "TTL 0 never expires"
    );
}

#[test]
fn flush() {
    let server = Server::start(&[]);
    let client = connect(&server);

    for i in 0..50u64 {
        client.set(&format!("f{i}"), i, 0).expect("set");
    }
    client.flush().expect("flush");
    for i in 0..50u64 {
        assert_eq!(
            get_string(&client, &format!("f{i}")),
            None,
            "f{i} survived flush"
        );
    }
    client.set("after", "flush", 0).expect("set after flush");
    assert_eq!(
        get_string(&client, "after").as_deref(),
        Some("flush"),
        "set after flush"
    );
}

#[test]
fn large_value() {
    let server = Server::start(&["-I", "1m"]);
    let client = connect(&server);

    // Just under the 1 MiB item limit, leaving room for the key and item header.
    let value: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    client
        .set("big", value.as_slice(), 0)
        .expect("set ~1 MB value");
    let back: Vec<u8> = client
        .get("big")
        .expect("get ~1 MB value")
        .expect("big present");
    assert!(
        back == value,
        "~1 MB value came back different (len {})",
        back.len()
    );

    let too_big = vec![b'x'; 2 * 1024 * 1024];
    assert_eq!(
        command_error(client.set("huge", too_big.as_slice(), 0)),
        CommandError::ValueTooLarge,
        "2 MiB value with -I 1m"
    );
    // The connection must still be usable after the rejected request.
    assert_eq!(get_string(&client, "huge"), None);
    client
        .set("small", "ok", 0)
        .expect("set after a rejected large value");
    assert_eq!(get_string(&client, "small").as_deref(), Some("ok"));
}
