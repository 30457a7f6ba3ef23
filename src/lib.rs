//! caskade: a memcached-compatible cache-store.
//!
//! Any memcached client talks to caskade unchanged, over the text protocol (classic and
//! meta commands) or the binary protocol, both on one port. Each core owns a shard: a keydir
//! in memory over a Bitcask-style log of segments on disk (`--in-memory`: no log).
//! Several nodes make a cluster (`--cluster FILE --node ID`) in which any node serves any key
//! by forwarding it to the node that owns its partition, and every partition is replicated
//! to `replicas` backups. Failover is to be built on the same shape (see `protocol-spec/`
//! and the project's ARCHITECTURE notes).
//!
//! # Threads and the path of a request
//!
//! ```text
//!                 SO_REUSEPORT: the kernel spreads connections over the cores' listeners
//!   client ──TCP──▶ core k  (one thread, one mio::Poll, its connections in a Slab)
//!                    │ Connection: its first byte picks the protocol (0x80 binary, else text)
//!                    │ read buffer ─▶ binary::Request::decode / text::decode (no I/O)
//!                    │ dispatch::action ─▶ storage::Command + protocol::ReplyTo (per key:
//!                    │   a text multi-get is one command per key, then a local END)
//!                    │ partition p = crc32c(key) % 1024; ClusterMap::owner(p) (server::route)
//!                    ├─ Owner::Here ─▶ Shard k executes ─▶ ReplyTo::write_outcome ─▶ reply
//!                    ├─ Owner::Core(j) (j = p % cores) ─▶ Outbox ─▶ core j's Mailbox (bounded
//!                    │     crossbeam channel + mio::Waker: at most one wake per turn, and
//!                    │     only if core j said it is about to sleep) ─▶ Shard j
//!                    │     executes and encodes ─▶ Message::Reply ─▶ core k slots it into
//!                    │     the connection's queue
//!                    └─ Owner::Node(B) ─▶ core k's peer link to (B, p % cores_B)
//!                          (server/peer/link.rs: one per core pair, authenticated, pipelined,
//!                          one write(2) per turn) ─▶ B's core accepts it as a Connection in
//!                          the peer protocol (server/peer/serve.rs), runs it through the same
//!                          route::storage, and sends the Outcome back (protocol::peer::forward)
//!                          ─▶ core k encodes it in the client's protocol, in its slot.
//!                          Down, full or no answer within the timeout: temporary failure.
//!   peer port (a cluster): every core listens on it too (SO_REUSEPORT); a connection whose
//!   HELLO names another core is handed to that core through its mailbox (AdoptPeer), so each
//!   link ends on the core that owns the partitions it carries.
//!                    ▼
//!   end of each turn: the shard's records of the turn are written with one write(2), then
//!   the replies that waited for it are released (server/held.rs): a reply to a command that
//!   appended a record is held in a slot until this commit, and becomes an error status
//!   (0x84 / SERVER_ERROR) if it fails; replies to other cores carry the same choice.
//!   everysec: a syncer thread per shard fsyncs once a second. always: the shard's commit
//!   thread fsyncs (storage/disk/group_commit.rs) while the loop goes on; the turn's replies
//!   (all of them) wait with the turn's sync round until an fsync covers it, then leave.
//!   replies leave in request order: straight into the write buffer while nothing is
//!   outstanding, otherwise behind the outstanding slots; one write() per turn and connection
//!   (core/commit.rs: the end of a turn; held::Rounds decides what a sync round lets go).
//!
//!   watch: a text connection that sent `watch` gets log lines only. route::execute offers
//!   each outcome to server::watch (one atomic load while nobody watches); the line goes into
//!   each watcher's bounded buffer, whatever core it happens on; the watcher's core moves the
//!   buffer into its connection each turn (at most 10 ms apart) once the socket took the last.
//!
//!   replication (a cluster with replicas >= 1), after each turn's commit:
//!   Shard records each mutation as a Change (partition, seqno, CAS, key, value; flushes as
//!   markers) ─▶ server::replicate takes the turn's changes into the core's Backlog
//!   (cluster::replication, bounded; with it the Backfill index: CAS marks and notes of
//!   deletions and touches) ─▶ each Stream (one per backup node and core; a state machine
//!   with no I/O) fills REPL_CHANGES frames from its cursor, within its window, or a
//!   backfill's or full resync's snapshot slices (noted keys read one by one, then a shard
//!   scan per turn, filtered by CAS for a backfill) ─▶ the peer link to the backup's
//!   core ─▶ that core's replicate::serve checks each record (stream::check: next seqno) and
//!   applies it with the primary's seqno and CAS (Shard::apply), and its answer (positions)
//!   leaves after its own commit, like any held reply ─▶ the stream advances its acks.
//!   A durable write (the cluster's `durability`, or the request's level: a binary frame
//!   info, a meta `Y` flag, carried in a forwarded request's data type) runs through
//!   route::execute_gated; its reply waits in the core's Gate (server/gate.rs, no I/O) for
//!   the turn's commit, then for enough backups' acks, or its deadline (ambiguous). Until
//!   then its key is pending there, and every other reply on that key waits behind it.
//!
//!   main thread: takes SIGTERM, SIGINT and SIGHUP first of all, recovers the shards (one
//!   thread each; signals meanwhile are noted and acted on after), binds, spawns the cores,
//!   tells systemd READY=1, waits for signals. SIGHUP reads the config file again and sends
//!   what changed live to the cores as control messages; SIGTERM/SIGINT sets `stopping`:
//!   each core stops accepting, finishes its replies in flight, syncs its log, and exits.
//!
//!   admin thread (tiny_http, --admin): /health, /stats, /metrics, /dump. It never touches a
//!   shard or a histogram: it puts a control message in a core's mailbox (the same channel
//!   and Waker) and the core answers between two turns (server/control.rs).
//! ```
//!
//! * No locks on the data path: a shard belongs to one core; other cores send it messages.
//! * Counters are per core ([`stats::CoreStats`]), written only by their core and summed
//!   when STAT or the admin port asks. Latency histograms are per core too
//!   ([`stats::latency::Recorder`]), owned by the core and copied out by message.
//! * FLUSH runs on every shard: the connection's core flushes its own and sends a flush to
//!   every other core, and replies once all have acknowledged.
//!
//! # Modules
//!
//! * [`protocol`]: wire codecs, no I/O (`protocol-spec/memcached-binary.md`,
//!   `protocol-spec/memcached-text.md`).
//! * [`storage`]: [`storage::Command`] / [`storage::Outcome`], items and the shard (index,
//!   CLOCK eviction under the memory limit, lazy expiry, delayed flush), and `storage::disk`:
//!   records, segments, hint files, the log and its fsync policies, recovery, merges
//!   (`protocol-spec/storage-format.md`).
//! * [`cluster`]: placement of keys on partitions, the [`cluster::ClusterMap`] (primary and
//!   backups per partition, revision, checksum), the cluster file, and the replication
//!   stream's decisions (`cluster::replication`: backlog, backfill index, streams); no I/O.
//! * `protocol::peer`: the peer protocol's frames, handshake and forwarded commands
//!   and replication frames (`protocol-spec/peer-protocol.md`); `server::peer`: the peer
//!   port and links; `server::replicate`: both ends of replication on a core.
//! * [`server`]: listeners, the per-core event loop, connections, mailboxes, STAT.
//! * [`stats`]: counters and latency histograms; [`config`]: the command line and the
//!   config file; [`logging`]: a logger whose level a reload can change.
//! * [`admin`]: the admin HTTP server; [`dump`]: the format of `/dump` and caskadectl's
//!   backups (`protocol-spec/dump-format.md`).

pub mod admin;
pub mod cluster;
pub mod config;
pub mod dump;
pub mod logging;
pub mod protocol;
pub mod server;
pub mod stats;
pub mod storage;
