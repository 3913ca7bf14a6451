//! spotex's journal on a replicated log: NATS JetStream.
//!
//! One stream per shard (`spotex-<shard>`, subject `spotex.<shard>.journal`), replicated
//! (3 by default) and kept on disk. A writer's round is one message (or a few, past
//! `MAX_MESSAGE` bytes) whose payload is the round's records exactly as the file journal
//! frames them (`spotex_core::journal::frame`: length, CRC-32, sequence, time, command,
//! metadata), one after another: the same bytes serve recovery, replay and the log, the
//! stream stores (and fsyncs) a round once as the file journal does, and a reader
//! verifies the engine's own checksum of every record whatever the log did.
//!
//! Writing is fenced: the journal knows the stream's last sequence, and each message is
//! published with `Nats-Expected-Last-Sequence` = that sequence plus its place in the
//! round, so a writer that another has overtaken (a deposed leader) cannot append: its
//! round is refused whole by the stream, and it stays refused. A round is acknowledged
//! (`sync` returns) only once JetStream acknowledged every message of it, which for a
//! replicated stream means a quorum of its servers stored it.
//!
//! A writer taking the lease of a shard fences the stream before it serves: it reads to
//! the stream's end, then publishes an empty message naming itself (header
//! `Spotex-Leader`) expecting that end. Stored, it follows everything any earlier leader
//! had acknowledged, and nothing an earlier leader sends later can be stored; refused,
//! an earlier leader appended after what it read, and it reads again. Readers skip these
//! messages: they hold no record.
//!
//! The servers must run JetStream with `sync_interval: always` (fsync every write): the
//! default (lazy fsync) can lose acknowledged writes when machines lose power together
//! (Jepsen, 2025). `spotex cluster up` writes such configurations.

use std::io;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use spotex_core::journal::{self, Journal, Record};

/// Where a shard's log lives.
#[derive(Clone, Debug)]
pub struct Config {
    /// NATS server URLs (`nats://127.0.0.1:4222`), any of the cluster's.
    pub servers: Vec<String>,
    /// The shard's name: letters, digits, `-` and `_`.
    pub shard: String,
    /// Copies of the stream (3 for a venue: a quorum of 2 survives one server lost).
    pub replicas: usize,
    /// How long one round (or one read) may wait for the servers.
    pub timeout: Duration,
}

impl Config {
    pub fn stream(&self) -> String {
        format!("spotex-{}", self.shard)
    }

    pub fn subject(&self) -> String {
        format!("spotex.{}.journal", self.shard)
    }

    fn check(&self) -> io::Result<()> {
        let ok = !self.shard.is_empty()
            && self.shard.len() <= 64
            && self
                .shard
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(invalid("a shard is 1 to 64 letters, digits, '-' or '_'"));
        }
        if self.servers.is_empty() {
            return Err(invalid("no NATS server given"));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(invalid("replicas are 1 to 5"));
        }
        Ok(())
    }
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why.to_string())
}

fn failed(what: &str, err: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {err}"))
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

async fn connect(cfg: &Config) -> io::Result<jetstream::Context> {
    let mut addrs = Vec::with_capacity(cfg.servers.len());
    for url in &cfg.servers {
        let addr: async_nats::ServerAddr = url
            .parse()
            .map_err(|e| failed(&format!("the NATS server {url:?}"), e))?;
        addrs.push(addr);
    }
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(cfg.timeout)
        .request_timeout(Some(cfg.timeout))
        .connect(addrs)
        .await
        .map_err(|e| failed("connecting to NATS", e))?;
    let mut js = jetstream::new(client);
    // an acknowledgement lost while the stream elects a new leader is retried well
    // within the round's deadline
    js.set_timeout(ACK_TIMEOUT.min(cfg.timeout));
    Ok(js)
}

/// The most bytes of records one message carries (NATS takes 1 MiB by default).
const MAX_MESSAGE: usize = 512 << 10;

/// The header of the message a new leader fences the stream with (its payload empty).
pub const LEADER_HEADER: &str = "Spotex-Leader";

/// How long one publish waits for its acknowledgement before it is sent again.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

async fn open_stream(cfg: &Config, js: &jetstream::Context) -> io::Result<stream::Stream> {
    let wanted = stream::Config {
        name: cfg.stream(),
        subjects: vec![cfg.subject()],
        num_replicas: cfg.replicas,
        storage: stream::StorageType::File,
        // duplicates of one record (a retried round) are dropped by its sequence
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    let s = js
        .get_or_create_stream(wanted)
        .await
        .map_err(|e| failed("opening the stream", e))?;
    let have = &s.cached_info().config;
    if have.num_replicas != cfg.replicas || have.subjects != vec![cfg.subject()] {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "opening the stream: {} exists with {} replicas and subjects {:?}",
                cfg.stream(),
                have.num_replicas,
                have.subjects
            ),
        ));
    }
    Ok(s)
}

/// A name no other writer has: time and process.
fn writer_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos:x}", std::process::id())
}

/// A shard's journal on JetStream: the `Journal` the writer appends to.
pub struct JetStreamJournal {
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
    subject: String,
    timeout: Duration,
    /// The stream's last sequence as this writer knows it: the next message must follow.
    last: u64,
    /// Records appended since the last `sync`, framed, one after another, in messages of
    /// at most `MAX_MESSAGE` bytes (a record bigger than that is a message of its own):
    /// (journal sequence of the first record, bytes).
    pending: Vec<(u64, Vec<u8>)>,
    /// This writer's name in message ids (`<writer>:<sequence>`): the stream drops a
    /// message whose id it has, so a retried publish is stored once, and only a retry of
    /// this writer's own message can be taken for one.
    writer: String,
    /// Why the journal can no longer be written (fenced, or a round half-stored).
    broken: Option<String>,
}

impl JetStreamJournal {
    /// Connects, creates the shard's stream if it does not exist, and takes its last
    /// sequence as the point to append after.
    pub fn open(cfg: &Config) -> io::Result<JetStreamJournal> {
        cfg.check()?;
        let rt = runtime()?;
        let (js, last) = rt.block_on(async {
            let js = connect(cfg).await?;
            // a cluster just started, or electing a stream leader after a server was
            // lost, may not answer at once: try until the deadline (a refusal of the
            // stream's configuration is final)
            let deadline = tokio::time::Instant::now() + cfg.timeout;
            let s = loop {
                match open_stream(cfg, &js).await {
                    Ok(s) => break s,
                    Err(e) if e.kind() == io::ErrorKind::InvalidInput => return Err(e),
                    Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            let last = s.cached_info().state.last_sequence;
            Ok::<_, io::Error>((js, last))
        })?;
        Ok(JetStreamJournal {
            rt,
            js,
            subject: cfg.subject(),
            timeout: cfg.timeout,
            last,
            pending: Vec::new(),
            writer: writer_name(),
            broken: None,
        })
    }

    /// The stream's sequence of the last record written (or found at open).
    pub fn last_sequence(&self) -> u64 {
        self.last
    }

    /// Fences the stream for this writer, a leader about to serve (see the crate's
    /// documentation): an empty message naming `holder`, expecting the stream's last
    /// sequence this journal opened at. Once it returns, no other writer can append
    /// before this one's next round. An error leaves the journal broken: another writer
    /// appended after what this one read (or the servers did not answer in time), so the
    /// caller opens the journal again, reads what it lacks, and fences again.
    pub fn fence(&mut self, holder: &str) -> io::Result<()> {
        if let Some(why) = &self.broken {
            return Err(io::Error::other(why.clone()));
        }
        if !self.pending.is_empty() {
            return Err(invalid(
                "a stream is fenced between rounds, not with records appended",
            ));
        }
        let (timeout, last) = (self.timeout, self.last);
        let id = format!("{}:fence", self.writer);
        let done = self.rt.block_on(async {
            use jetstream::context::PublishErrorKind;
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let message = jetstream::message::PublishMessage::build()
                    .payload(Vec::new().into())
                    .header(LEADER_HEADER, holder)
                    .expected_last_sequence(last)
                    .message_id(id.clone());
                let sent = match self.js.send_publish(self.subject.clone(), message).await {
                    Ok(ack) => tokio::time::timeout_at(deadline, ack).await,
                    Err(e) => Ok(Err(e)),
                };
                match sent {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(e)) if e.kind() == PublishErrorKind::WrongLastSequence => {
                        return Err(format!(
                            "fenced: another writer appended to the stream ({e})"
                        ))
                    }
                    Err(_) => return Err(format!("no acknowledgement within {timeout:?}")),
                    Ok(Err(_)) if tokio::time::Instant::now() >= deadline => {
                        return Err(format!("no acknowledgement within {timeout:?}"))
                    }
                    Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        match done {
            Ok(()) => {
                self.last += 1;
                Ok(())
            }
            Err(why) => {
                self.broken = Some(why.clone());
                Err(io::Error::other(why))
            }
        }
    }

    /// Publishes the round's messages, pipelined, each expecting the one before it, and
    /// waits for their acknowledgements in order. A message not acknowledged (a server
    /// lost, a leader being elected) is sent again with the rest after it, under the same
    /// ids, until the caller's deadline: the stream stores each once. A refusal of the
    /// expected sequence once everything before it was stored means another writer
    /// appended: fenced.
    async fn publish_round(&self) -> Result<(), String> {
        use jetstream::context::PublishErrorKind;
        let n = self.pending.len();
        let mut stored = 0;
        loop {
            let mut acks = Vec::with_capacity(n - stored);
            for k in stored..n {
                let (seq, records) = &self.pending[k];
                let message = jetstream::message::PublishMessage::build()
                    .payload(records.clone().into())
                    .expected_last_sequence(self.last + k as u64)
                    .message_id(format!("{}:{seq}", self.writer));
                match self.js.send_publish(self.subject.clone(), message).await {
                    Ok(ack) => acks.push(ack),
                    Err(_) => break, // not sent: sent again below
                }
            }
            for ack in acks {
                match ack.await {
                    Ok(_) => stored += 1,
                    Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                        return Err(format!(
                            "fenced: another writer appended to the stream ({e})"
                        ));
                    }
                    Err(_) => break, // not acknowledged: sent again below
                }
            }
            if stored == n {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Journal for JetStreamJournal {
    fn append(&mut self, seq: u64, ts: i64, command: &[u8], meta: &[u8]) -> io::Result<()> {
        if let Some(why) = &self.broken {
            return Err(io::Error::other(why.clone()));
        }
        let record = journal::frame(seq, ts, command, meta);
        match self.pending.last_mut() {
            Some((_, bytes)) if bytes.len() + record.len() <= MAX_MESSAGE => {
                bytes.extend_from_slice(&record)
            }
            _ => self.pending.push((seq, record)),
        }
        Ok(())
    }

    /// As `sync`: a replicated log has no weaker level worth having.
    fn flush(&mut self) -> io::Result<()> {
        self.sync()
    }

    /// Publishes the round and waits until JetStream stored every record of it (a quorum
    /// of the stream's servers). On failure the journal stays broken: part of the round
    /// may be stored, so the writer must recover from the stream before writing again.
    fn sync(&mut self) -> io::Result<()> {
        if let Some(why) = &self.broken {
            return Err(io::Error::other(why.clone()));
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let timeout = self.timeout;
        let done = self.rt.block_on(async {
            tokio::time::timeout(timeout, self.publish_round())
                .await
                .unwrap_or_else(|_| Err(format!("no acknowledgement within {timeout:?}")))
        });
        match done {
            Ok(()) => {
                self.last += self.pending.len() as u64;
                self.pending.clear();
                Ok(())
            }
            Err(why) => {
                self.broken = Some(why.clone());
                Err(io::Error::other(why))
            }
        }
    }
}

/// Every record of a shard's stream whose journal sequence is above `after`, in order, up
/// to the stream's message `until` (None: its last now), each checked: its own checksum,
/// and sequences that follow one another. A record that does not read (damaged, or not a
/// journal record) is an error, never skipped. A writer opens its journal first and reads
/// up to the journal's `last_sequence`: what another writer appends after that, it cannot
/// have, and its own first round is fenced out.
pub fn read(cfg: &Config, after: u64, until: Option<u64>) -> io::Result<Vec<Record>> {
    let (mut records, _) = follow(cfg, 1, until)?;
    records.retain(|r| r.seq > after);
    Ok(records)
}

/// How long a read waits for the next message before it opens its consumer again (an
/// ordered consumer on a quiet cluster sometimes stalls); the whole read gives up only
/// after `Config::timeout` without a message.
const STALL: Duration = Duration::from_secs(2);

/// An ordered consumer's messages of stream `s` from message `from` on.
async fn messages_from(s: &stream::Stream, from: u64) -> io::Result<consumer::pull::Ordered> {
    s.create_consumer(consumer::pull::OrderedConfig {
        deliver_policy: consumer::DeliverPolicy::ByStartSequence {
            start_sequence: from,
        },
        ..Default::default()
    })
    .await
    .map_err(|e| failed("reading the stream", e))?
    .messages()
    .await
    .map_err(|e| failed("reading the stream", e))
}

/// The records of messages `from` to `last` of stream `s`, in order, each message whole
/// journal records with their checksums right, sequences following one another.
async fn read_messages(
    cfg: &Config,
    s: &stream::Stream,
    from: u64,
    last: u64,
) -> io::Result<Vec<Record>> {
    let mut records: Vec<Record> = Vec::new();
    let mut messages = messages_from(s, from).await?;
    let mut seen = from - 1;
    let mut progress = tokio::time::Instant::now();
    while seen < last {
        let next = tokio::time::timeout(STALL.min(cfg.timeout), messages.next()).await;
        let message = match next {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => return Err(failed("reading the stream", e)),
            Ok(None) => return Err(failed("reading the stream", "it ended early")),
            Err(_) if progress.elapsed() >= cfg.timeout => {
                return Err(failed("reading the stream", "timed out"))
            }
            Err(_) => {
                // stalled: the same read again from the message after the last one read
                messages = messages_from(s, seen + 1).await?;
                continue;
            }
        };
        progress = tokio::time::Instant::now();
        seen = message
            .info()
            .map_err(|e| failed("reading the stream", e))?
            .stream_sequence;
        let at = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} message {seen}: {why}", cfg.stream()),
            )
        };
        let fence = message.payload.is_empty()
            && message
                .headers
                .as_ref()
                .is_some_and(|h| h.get(LEADER_HEADER).is_some());
        if fence {
            continue; // a new leader's fence: no record
        }
        let (one, tail) = journal::parse(&message.payload).map_err(|e| at(&e.to_string()))?;
        if one.is_empty() || !matches!(tail, journal::Tail::Clean) {
            return Err(at("not whole journal records (damaged)"));
        }
        for record in one {
            if let Some(prev) = records.last() {
                if record.seq != prev.seq + 1 {
                    return Err(at(&format!(
                        "journal sequence {} after {}",
                        record.seq, prev.seq
                    )));
                }
            }
            records.push(record);
        }
    }
    Ok(records)
}

/// Records of a shard's stream from message `from` (a stream sequence, 1 for the start)
/// up to message `until` (None: its last now), checked as `read` checks them, and the
/// stream sequence to read from next: a standby follows the stream with it.
pub fn follow(cfg: &Config, from: u64, until: Option<u64>) -> io::Result<(Vec<Record>, u64)> {
    cfg.check()?;
    let rt = runtime()?;
    rt.block_on(async {
        let js = connect(cfg).await?;
        let mut s = js
            .get_stream(cfg.stream())
            .await
            .map_err(|e| failed("opening the stream", e))?;
        let info = s
            .info()
            .await
            .map_err(|e| failed("reading the stream", e))?;
        let mut last = info.state.last_sequence;
        if let Some(u) = until {
            if u > last {
                return Err(failed(
                    "reading the stream",
                    format!("it ends at {last}, before {u}"),
                ));
            }
            last = u;
        }
        if last < from.max(1) {
            return Ok((Vec::new(), from.max(1)));
        }
        let records = read_messages(cfg, &s, from.max(1), last).await?;
        Ok((records, last + 1))
    })
}

/// The leader's lease of a shard: a key in the JetStream key-value bucket
/// `spotex-leases`, whose values live `ttl` unless renewed. Whoever creates the key
/// leads; it renews it with compare-and-set on its revision well within `ttl`; a
/// standby takes it once it has expired (its leader died, or lost its way to a quorum).
pub struct Lease {
    rt: tokio::runtime::Runtime,
    kv: async_nats::jetstream::kv::Store,
    key: String,
    holder: String,
    revision: Option<u64>,
    timeout: Duration,
    ttl: Duration,
    /// When the newest write of the lease known stored was sent: the servers' clock of
    /// its life started after that, so the lease surely lives until this plus `ttl`.
    since: Option<std::time::Instant>,
}

impl Lease {
    /// The shard's lease as `holder` (its name for others: the server's address).
    pub fn open(cfg: &Config, holder: &str, ttl: Duration) -> io::Result<Lease> {
        cfg.check()?;
        let rt = runtime()?;
        // one try of a lease operation waits at most the lease's life: the holder tries
        // again on its next tick, and a try stored but not answered in time is
        // recognised as its own (its value names the holder)
        let timeout = cfg.timeout.min(ttl);
        let kv = rt.block_on(async {
            let mut js = connect(cfg).await?;
            js.set_timeout(timeout);
            // a bucket just created, or one whose servers are electing a leader, may not
            // answer at once: try until the caller's deadline
            let deadline = tokio::time::Instant::now() + cfg.timeout;
            let kv = loop {
                let got = match js.get_key_value("spotex-leases").await {
                    Ok(kv) => Ok(kv),
                    Err(_) => js
                        .create_key_value(async_nats::jetstream::kv::Config {
                            bucket: "spotex-leases".into(),
                            history: 1,
                            max_age: ttl,
                            num_replicas: cfg.replicas,
                            storage: stream::StorageType::File,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| failed("opening the lease bucket", e)),
                };
                // usable: it answers a read of the key (present or not)
                let got = match got {
                    Ok(kv) => match kv.entry(cfg.shard.as_str()).await {
                        Ok(_) => Ok(kv),
                        Err(e) => Err(failed("reading the lease", e)),
                    },
                    Err(e) => Err(e),
                };
                match got {
                    Ok(kv) => break kv,
                    Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            // one lease life for the venue: a holder counts on its own (`expires_in`),
            // so a bucket that keeps leases for another time is refused, not used
            let kept = kv
                .status()
                .await
                .map_err(|e| failed("reading the lease bucket", e))?
                .max_age();
            if kept != ttl {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "the lease bucket spotex-leases keeps a lease {} s, not {} s: give \
                         every server of the venue the same lease life (--lease-seconds), \
                         or delete the bucket while no server runs",
                        kept.as_secs_f64(),
                        ttl.as_secs_f64()
                    ),
                ));
            }
            Ok(kv)
        })?;
        Ok(Lease {
            rt,
            kv,
            key: cfg.shard.clone(),
            holder: holder.to_string(),
            revision: None,
            timeout,
            ttl,
            since: None,
        })
    }

    /// Takes the lease if no one holds it. True: this holder leads now.
    pub fn try_acquire(&mut self) -> io::Result<bool> {
        use async_nats::jetstream::kv::CreateErrorKind;
        let (kv, key, value, timeout) = (&self.kv, &self.key, self.holder.clone(), self.timeout);
        let sent = std::time::Instant::now();
        let got = self.rt.block_on(async {
            tokio::time::timeout(timeout, kv.create(key, value.into_bytes().into())).await
        });
        match got {
            Ok(Ok(revision)) => {
                self.revision = Some(revision);
                self.since = Some(sent);
                Ok(true)
            }
            // ours, if an earlier try was stored but its answer lost
            Ok(Err(e)) if e.kind() == CreateErrorKind::AlreadyExists => self.held_by_us(),
            Ok(Err(e)) => Err(failed("taking the lease", e)),
            Err(_) => Err(failed("taking the lease", "timed out")),
        }
    }

    /// Renews a lease held. False: it was lost (expired and taken, or never held).
    pub fn renew(&mut self) -> io::Result<bool> {
        use async_nats::jetstream::kv::UpdateErrorKind;
        let Some(revision) = self.revision else {
            return Ok(false);
        };
        let (kv, key, value, timeout) = (&self.kv, &self.key, self.holder.clone(), self.timeout);
        let sent = std::time::Instant::now();
        let got = self.rt.block_on(async {
            tokio::time::timeout(timeout, kv.update(key, value.into_bytes().into(), revision)).await
        });
        match got {
            Ok(Ok(revision)) => {
                self.revision = Some(revision);
                self.since = Some(sent);
                Ok(true)
            }
            // still ours if an earlier renewal was stored but its answer lost; lost if
            // the key expired or names another holder
            Ok(Err(e)) if e.kind() == UpdateErrorKind::WrongLastRevision => self.held_by_us(),
            Ok(Err(e)) => Err(failed("renewing the lease", e)),
            Err(_) => Err(failed("renewing the lease", "timed out")),
        }
    }

    /// Whether the key names this holder now (then its revision is the one to renew).
    fn held_by_us(&mut self) -> io::Result<bool> {
        let (kv, key) = (&self.kv, &self.key);
        let entry = self
            .rt
            .block_on(async { kv.entry(key).await })
            .map_err(|e| failed("reading the lease", e))?;
        self.revision = entry
            .filter(|e| {
                e.operation == async_nats::jetstream::kv::Operation::Put
                    && e.value.as_ref() == self.holder.as_bytes()
            })
            .map(|e| e.revision);
        Ok(self.revision.is_some())
    }

    /// How long the lease surely still lives for this holder (zero when not held, or when
    /// no write of it is known stored by this process: a lease found held by this
    /// holder's name counts from its next renewal). A leader that cannot renew stops
    /// serving once this is zero: a standby may hold the lease then.
    pub fn expires_in(&self) -> Duration {
        match (self.revision, self.since) {
            (Some(_), Some(since)) => self.ttl.saturating_sub(since.elapsed()),
            _ => Duration::ZERO,
        }
    }

    /// Gives a held lease up at once (a graceful stop), so a standby need not wait for
    /// it to expire.
    pub fn release(&mut self) -> io::Result<()> {
        let Some(revision) = self.revision.take() else {
            return Ok(());
        };
        self.since = None;
        let (kv, key) = (&self.kv, &self.key);
        self.rt
            .block_on(async { kv.delete_expect_revision(key, Some(revision)).await })
            .map_err(|e| failed("releasing the lease", e))
    }

    /// Who holds the lease now, if anyone.
    pub fn holder(&self) -> io::Result<Option<String>> {
        let (kv, key) = (&self.kv, &self.key);
        let got = self
            .rt
            .block_on(async { kv.get(key).await })
            .map_err(|e| failed("reading the lease", e))?;
        Ok(got.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
}

/// The object store bucket of the shards' snapshots: one object per shard, the newest.
const SNAPSHOTS: &str = "spotex-snapshots";
const SNAPSHOT_MAGIC: &[u8; 8] = b"SPXJSNP1";
const SNAPSHOT_HEADER: usize = 8 + 8 + 8 + 4;

/// A snapshot of a shard's exchange, as the object store keeps it.
pub struct Snapshot {
    /// The stream message the snapshot includes everything up to (and nothing after).
    pub message: u64,
    /// The exchange's clock then.
    pub last_ts: i64,
    /// `Exchange::snapshot` bytes.
    pub bytes: Vec<u8>,
}

async fn snapshot_store(
    cfg: &Config,
    js: &jetstream::Context,
) -> io::Result<jetstream::object_store::ObjectStore> {
    // just created, or electing a leader after a server was lost: try until the deadline
    let deadline = tokio::time::Instant::now() + cfg.timeout;
    loop {
        let got = match js.get_object_store(SNAPSHOTS).await {
            Ok(s) => Ok(s),
            Err(_) => js
                .create_object_store(jetstream::object_store::Config {
                    bucket: SNAPSHOTS.into(),
                    num_replicas: cfg.replicas,
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| failed("opening the snapshot store", e)),
        };
        match got {
            Ok(s) => return Ok(s),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Keeps `snap` as the shard's newest snapshot, so that a new machine starts from it and
/// reads only the stream after `snap.message`.
pub fn put_snapshot(cfg: &Config, snap: &Snapshot) -> io::Result<()> {
    cfg.check()?;
    let mut payload = Vec::with_capacity(SNAPSHOT_HEADER + snap.bytes.len());
    payload.extend_from_slice(SNAPSHOT_MAGIC);
    payload.extend_from_slice(&snap.message.to_le_bytes());
    payload.extend_from_slice(&snap.last_ts.to_le_bytes());
    payload.extend_from_slice(&crc32fast::hash(&snap.bytes).to_le_bytes());
    payload.extend_from_slice(&snap.bytes);
    let rt = runtime()?;
    rt.block_on(async {
        let mut js = connect(cfg).await?;
        js.set_timeout(cfg.timeout);
        let store = snapshot_store(cfg, &js).await?;
        tokio::time::timeout(
            cfg.timeout * 6,
            store.put(cfg.shard.as_str(), &mut &payload[..]),
        )
        .await
        .map_err(|_| failed("storing the snapshot", "timed out"))?
        .map_err(|e| failed("storing the snapshot", e))?;
        Ok(())
    })
}

/// The shard's newest snapshot, if one was kept, its checksum verified.
pub fn get_snapshot(cfg: &Config) -> io::Result<Option<Snapshot>> {
    use jetstream::object_store::GetErrorKind;
    use tokio::io::AsyncReadExt;
    cfg.check()?;
    let rt = runtime()?;
    let payload = rt.block_on(async {
        let mut js = connect(cfg).await?;
        js.set_timeout(cfg.timeout);
        let store = snapshot_store(cfg, &js).await?;
        let mut object = match store.get(cfg.shard.as_str()).await {
            Ok(o) => o,
            Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed("reading the snapshot", e)),
        };
        let mut payload = Vec::new();
        tokio::time::timeout(cfg.timeout * 6, object.read_to_end(&mut payload))
            .await
            .map_err(|_| failed("reading the snapshot", "timed out"))??;
        Ok(Some(payload))
    })?;
    let Some(p) = payload else {
        return Ok(None);
    };
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the snapshot of shard {}: {why}", cfg.shard),
        )
    };
    if p.len() < SNAPSHOT_HEADER || &p[..8] != SNAPSHOT_MAGIC {
        return Err(bad("not a spotex snapshot"));
    }
    let word = |at: usize| u64::from_le_bytes(p[at..at + 8].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(p[24..28].try_into().expect("4 bytes"));
    let bytes = p[SNAPSHOT_HEADER..].to_vec();
    if crc32fast::hash(&bytes) != crc {
        return Err(bad("its checksum does not match (damaged)"));
    }
    Ok(Some(Snapshot {
        message: word(8),
        last_ts: word(16) as i64,
        bytes,
    }))
}
