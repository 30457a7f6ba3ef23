//! Nodes of one cluster with different `-I` (issue 11): a value the client's node accepts
//! but the owner does not gets the owner's "too large" answer, and the link between them
//! stays up for everyone else.

mod common;

use std::time::Duration;

use common::cluster::{cluster_stats, keys_on, stat, text_round_trip, wait_until, ClusterFiles};

const IDS: [&str; 2] = ["a", "b"];

#[test]
fn the_owner_s_item_size_limit_answers_and_the_link_stays_up() {
    let files = ClusterFiles::new(&IDS);
    let a = files.start("a", &["-t", "1", "-I", "4m", "-m", "64"]);
    let b = files.start("b", &["-t", "1", "-I", "1m", "-m", "64"]);
    wait_until("a sees b up", Duration::from_secs(20), || stat(&cluster_stats(&a), "node:b:state").as_deref() == Some("up"));
    let downs_before = a.log().matches("is down").count();
    let on_b = keys_on(&IDS, "b", 2, "big-");
    let big = "x".repeat(2 << 20);
    let request = format!("set {} 0 0 {}\r\n{big}\r\nset {} 0 0 2\r\nok\r\nget {}\r\n", on_b[0], big.len(), on_b[1], on_b[1]);
    let reply = text_round_trip(&a, request.as_bytes(), b"END\r\n");
    assert_eq!(
        String::from_utf8_lossy(&reply),
        format!("SERVER_ERROR object too large for cache\r\nSTORED\r\nVALUE {} 0 2\r\nok\r\nEND\r\n", on_b[1])
    );
    let stats = cluster_stats(&a);
    assert_eq!(stat(&stats, "node:b:errors").as_deref(), Some("0"), "{stats:?}");
    assert_eq!(a.log().matches("is down").count(), downs_before, "the link went down:\n{}\n{}", a.log(), b.log());
    assert!(a.stop().success());
    assert!(b.stop().success());
}
