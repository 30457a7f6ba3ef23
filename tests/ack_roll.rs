//! `--fsync always` across a segment roll (issue 18): the roll syncs the old segment on the
//! event loop while the commit thread's fsync of an earlier turn may still be in flight. The
//! loop must wait for that fsync (`GroupCommit::wait`: an fsync error is reported to one file
//! handle only, so the loop's own fsync must not run beside it), and the replies of both
//! turns still leave only once they are durable, in order; if the fsync fails, as errors.
//!
//! The commit thread's fsync is held on the gate of `tests/gate`; the segments are 64 KiB, so
//! three 30 KB values roll one.

mod gate;
mod wire;

use std::time::{Duration, Instant};

use caskade::protocol::binary::Status;
use gate::Node;
use wire::Wire;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Synced,
    Failed,
}

fn roll_while_an_fsync_is_in_flight(end: End) {
    let node = Node::start_with(1, "always", &["--segment-size", "64k", "-I", "32k"]);
    let mut w = Wire::connect(node.addr);
    node.gate.hold();
    w.send(&wire::set(b"first", b"small", 1));
    // The commit thread's fsync of the first turn is in flight, held.
    node.gate.wait_blocked(1);
    // Incompressible: values this long are stored compressed when that saves space.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let big: Vec<u8> = (0..30_000)
        .map(|_| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 56) as u8
        })
        .collect();
    let mut pipeline = Vec::new();
    for (i, key) in [&b"big-1"[..], b"big-2", b"big-3"].into_iter().enumerate() {
        pipeline.extend(wire::set(key, &big, 2 + i as u32));
    }
    w.send(&pipeline);
    gate::assert_silent(&w.stream, w.leftover(), &format!("{end:?}: a roll while the fsync is held"));
    match end {
        End::Synced => node.gate.open(),
        End::Failed => node.gate.fail(),
    }
    let want = if end == End::Synced { Status::NoError } else { Status::InternalError };
    for opaque in 1..=4 {
        let r = w.recv();
        assert_eq!((r.opaque, r.status), (opaque, want), "{end:?}: {r:?}");
    }
    if end == End::Failed {
        node.gate.open();
        let deadline = Instant::now() + gate::PATIENCE;
        loop {
            w.send(&wire::set(b"again", b"v", 9));
            if w.recv().status == Status::NoError {
                break;
            }
            assert!(Instant::now() < deadline, "writes still refused after the disk healed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // The roll happened, and what was acknowledged is there after it.
    if end == End::Synced {
        assert!(gate::segment_count(node.dir.path()) >= 2, "no segment was rolled");
        w.send(&wire::get(b"big-3", 10));
        let r = w.recv();
        assert_eq!((r.status, r.value == big), (Status::NoError, true));
    }
}

#[test]
fn a_roll_waits_for_the_fsync_in_flight_and_replies_leave_once_durable() {
    roll_while_an_fsync_is_in_flight(End::Synced);
}

#[test]
fn a_roll_while_the_fsync_in_flight_fails_answers_every_mutation_with_an_error() {
    roll_while_an_fsync_is_in_flight(End::Failed);
}
