//! Meta commands on a key another node owns (issue 14): the peer protocol carries no per-item
//! state, so `md <key> I` is refused rather than sent on as the delete it would become, and the
//! flags that need the item's state are left out of a forwarded `mg`. caskade only (memcached
//! has no cluster); `protocol-spec/memcached-text.md`, "Deviations".

mod common;

use common::cluster::{keys_on, text_round_trip, ClusterFiles};

const IDS: [&str; 2] = ["a", "b"];

#[test]
fn invalidate_is_refused_for_a_key_on_another_node_and_deletes_nothing() {
    let files = ClusterFiles::new(&IDS);
    let nodes = files.start_all(&["-t", "1"]);
    let key = &keys_on(&IDS, "b", 1, "swr-")[0];
    let a = &nodes[0];
    let reply = text_round_trip(a, format!("set {key} 0 0 3\r\nold\r\nmd {key} I\r\nmg {key} v t h\r\n").as_bytes(), b"old\r\n");
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "STORED\r\nSERVER_ERROR invalidate not served for a key on another node\r\nVA 3\r\nold\r\n"
    );
    // On its owner, the same commands are served in full.
    let reply = text_round_trip(&nodes[1], format!("md {key} I\r\nmg {key} v h\r\n").as_bytes(), b"old\r\n");
    assert_eq!(String::from_utf8_lossy(&reply), "HD\r\nVA 3 h1 X W\r\nold\r\n");
}
