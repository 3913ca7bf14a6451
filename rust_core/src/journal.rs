//! The journal: an append-only log of accepted commands, each record length-prefixed and
//! checksummed, made durable in groups (one `sync` for many appends).
//!
//! Record: `len: u32` (bytes after the checksum), `crc32: u32` (of those bytes), then
//! `seq: u64`, `ts: i64`, `command_len: u32`, the encoded command, and opaque metadata
//! that the gateway keeps beside it. Sequence numbers increase by one from record to
//! record. A damaged or missing tail (a crash mid-write) is reported and can be cut
//! off; damage followed by good records is corruption in the middle and is refused.
//!
//! A journal is a directory of segments ([`Segments`]), each a file of whole records named
//! by the sequence number of its first record (`00000000000000000001.log`). A segment
//! rolls over once it passes a size, always at a record boundary and only after it was
//! made durable, so everything before the newest segment is durable. Segments wholly
//! before a snapshot can be retired (removed or archived) without losing recovery.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Where commands go to be durable. A replicated log can implement it later.
pub trait Journal {
    fn append(&mut self, seq: u64, ts: i64, command: &[u8], meta: &[u8]) -> io::Result<()>;
    /// Hands every appended record to the operating system: it survives the process
    /// dying, not the machine losing power.
    fn flush(&mut self) -> io::Result<()>;
    /// Makes every appended record durable.
    fn sync(&mut self) -> io::Result<()>;
}

const HEADER: usize = 8;
const FIXED: usize = 8 + 8 + 4;
/// Refuse absurd lengths outright: no command is anywhere near this big.
const MAX_RECORD: usize = 64 << 20;

pub struct FileJournal {
    out: BufWriter<File>,
    written: u64,
    synced: u64,
}

impl FileJournal {
    /// Closes without writing what is still buffered: after a failed write, those bytes
    /// must never reach the file (it is cut back to its durable length and appended to
    /// again; a late flush would land after the new records).
    pub fn abandon(self) {
        let (_file, _unwritten) = self.out.into_parts();
    }

    /// Opens (creating if needed) for appending at the end.
    pub fn open(path: &Path) -> io::Result<FileJournal> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(FileJournal {
            out: BufWriter::with_capacity(1 << 20, file),
            written: len,
            synced: len,
        })
    }

    /// File length up to which every record is known to be durable: after a failed
    /// sync, cut the file back to this before anything else reads it.
    pub fn synced_len(&self) -> u64 {
        self.synced
    }

    /// Bytes in the file, appended but not yet durable included.
    pub fn len(&self) -> u64 {
        self.written
    }

    pub fn is_empty(&self) -> bool {
        self.written == 0
    }
}

pub fn frame(seq: u64, ts: i64, command: &[u8], meta: &[u8]) -> Vec<u8> {
    let body_len = FIXED + command.len() + meta.len();
    let mut r = Vec::with_capacity(HEADER + body_len);
    r.extend_from_slice(&(body_len as u32).to_le_bytes());
    r.extend_from_slice(&[0; 4]);
    r.extend_from_slice(&seq.to_le_bytes());
    r.extend_from_slice(&ts.to_le_bytes());
    r.extend_from_slice(&(command.len() as u32).to_le_bytes());
    r.extend_from_slice(command);
    r.extend_from_slice(meta);
    let crc = crc32fast::hash(&r[HEADER..]);
    r[4..8].copy_from_slice(&crc.to_le_bytes());
    r
}

impl Journal for FileJournal {
    fn append(&mut self, seq: u64, ts: i64, command: &[u8], meta: &[u8]) -> io::Result<()> {
        let record = frame(seq, ts, command, meta);
        self.written += record.len() as u64;
        self.out.write_all(&record)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        self.synced = self.written;
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub ts: i64,
    pub command: Vec<u8>,
    pub meta: Vec<u8>,
    /// Byte offset of the record in the file.
    pub offset: u64,
}

/// What was found after the last good record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    Clean,
    /// A partial or damaged last record (`bytes` from `offset` to the end).
    Torn {
        offset: u64,
        bytes: u64,
    },
}

#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    /// Damage with good records after it: refusing beats silently skipping commands.
    Corrupt {
        offset: u64,
        why: &'static str,
    },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "journal i/o error: {e}"),
            ReadError::Corrupt { offset, why } => {
                write!(
                    f,
                    "journal corrupt at byte {offset} ({why}) with valid records after it"
                )
            }
        }
    }
}

impl std::error::Error for ReadError {}

enum Parsed {
    Record(Record, usize),
    Bad(&'static str),
}

fn parse_at(buf: &[u8], at: usize) -> Parsed {
    let Some(h) = buf.get(at..at + HEADER) else {
        return Parsed::Bad("truncated header");
    };
    let len = u32::from_le_bytes(h[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(h[4..8].try_into().unwrap());
    if !(FIXED..=MAX_RECORD).contains(&len) {
        return Parsed::Bad("impossible length");
    }
    let Some(body) = buf.get(at + HEADER..at + HEADER + len) else {
        return Parsed::Bad("truncated record");
    };
    if crc32fast::hash(body) != crc {
        return Parsed::Bad("checksum mismatch");
    }
    let seq = u64::from_le_bytes(body[0..8].try_into().unwrap());
    let ts = i64::from_le_bytes(body[8..16].try_into().unwrap());
    let clen = u32::from_le_bytes(body[16..20].try_into().unwrap()) as usize;
    if FIXED + clen > len {
        return Parsed::Bad("command longer than record");
    }
    let command = body[FIXED..FIXED + clen].to_vec();
    let meta = body[FIXED + clen..].to_vec();
    Parsed::Record(
        Record {
            seq,
            ts,
            command,
            meta,
            offset: at as u64,
        },
        HEADER + len,
    )
}

/// Is there any well-formed record starting anywhere after `from`? Used to tell a torn
/// tail (nothing good follows) from corruption in the middle.
fn good_record_after(buf: &[u8], from: usize) -> bool {
    (from + 1..buf.len().saturating_sub(HEADER + FIXED - 1))
        .any(|at| matches!(parse_at(buf, at), Parsed::Record(..)))
}

/// Reads every record. Sequence numbers must run on by one.
pub fn read(path: &Path) -> Result<(Vec<Record>, Tail), ReadError> {
    let mut buf = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut buf).map_err(ReadError::Io)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Tail::Clean)),
        Err(e) => return Err(ReadError::Io(e)),
    }
    parse(&buf)
}

pub fn parse(buf: &[u8]) -> Result<(Vec<Record>, Tail), ReadError> {
    let mut records: Vec<Record> = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match parse_at(buf, at) {
            Parsed::Record(r, size) => {
                if let Some(prev) = records.last() {
                    if r.seq != prev.seq + 1 {
                        return Err(ReadError::Corrupt {
                            offset: at as u64,
                            why: "sequence gap",
                        });
                    }
                }
                records.push(r);
                at += size;
            }
            Parsed::Bad(why) => {
                if good_record_after(buf, at) {
                    return Err(ReadError::Corrupt {
                        offset: at as u64,
                        why,
                    });
                }
                let bytes = (buf.len() - at) as u64;
                return Ok((
                    records,
                    Tail::Torn {
                        offset: at as u64,
                        bytes,
                    },
                ));
            }
        }
    }
    Ok((records, Tail::Clean))
}

/// Cuts the file at `offset` (the start of a torn tail) so appends continue cleanly.
pub fn truncate(path: &Path, offset: u64) -> io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(offset)?;
    let mut f = f;
    f.seek(SeekFrom::End(0))?;
    f.sync_all()
}

/// Default size past which a segment rolls over.
pub const SEGMENT_BYTES: u64 = 64 << 20;
const SEGMENT_SUFFIX: &str = ".log";

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

/// The segments of a journal directory as `(first sequence, path)`, oldest first. Files
/// that are not segments are ignored.
pub fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) {
            if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(seq) = stem.parse::<u64>() {
                    out.push((seq, path));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A journal kept as a directory of segments; appends go to the newest one.
pub struct Segments {
    dir: PathBuf,
    segment_bytes: u64,
    current: Option<(PathBuf, FileJournal)>,
}

impl Segments {
    /// Opens `dir` (creating it) to append after its newest segment.
    pub fn open(dir: &Path, segment_bytes: u64) -> io::Result<Segments> {
        fs::create_dir_all(dir)?;
        let current = match segments(dir)?.pop() {
            Some((_, path)) => {
                let j = FileJournal::open(&path)?;
                Some((path, j))
            }
            None => None,
        };
        Ok(Segments {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(1),
            current,
        })
    }

    /// Closes without writing what is still buffered (see [`FileJournal::abandon`]).
    pub fn abandon(self) {
        if let Some((_, j)) = self.current {
            j.abandon();
        }
    }

    /// The newest segment and the length up to which it is durable. Every older segment
    /// is durable whole: after a failed sync, cut this file back to this length.
    pub fn durable_point(&self) -> Option<(PathBuf, u64)> {
        self.current
            .as_ref()
            .map(|(p, j)| (p.clone(), j.synced_len()))
    }

    /// Starts a new segment at `seq` once the current one is full: the full one is made
    /// durable first, and the new file's name is made durable in the directory.
    fn roll_if_full(&mut self, seq: u64) -> io::Result<()> {
        if let Some((_, j)) = &mut self.current {
            if j.len() < self.segment_bytes {
                return Ok(());
            }
            j.sync()?;
        }
        let path = self.dir.join(segment_name(seq));
        let j = FileJournal::open(&path)?;
        sync_dir(&self.dir)?;
        self.current = Some((path, j));
        Ok(())
    }
}

impl Journal for Segments {
    fn append(&mut self, seq: u64, ts: i64, command: &[u8], meta: &[u8]) -> io::Result<()> {
        self.roll_if_full(seq)?;
        let (_, j) = self.current.as_mut().expect("a segment after roll_if_full");
        j.append(seq, ts, command, meta)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.current {
            Some((_, j)) => j.flush(),
            None => Ok(()),
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        match &mut self.current {
            Some((_, j)) => j.sync(),
            None => Ok(()),
        }
    }
}

/// What was found after the last good record of a journal directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The newest segment, the only one that may end torn.
    pub path: PathBuf,
    pub offset: u64,
    pub bytes: u64,
}

/// Reads the records of a journal directory with a sequence above `after` (0: all),
/// skipping segments that hold nothing above it. Sequences must run on by one across
/// segments, each segment must start at the sequence its name gives, and only the newest
/// segment may end in a torn record.
pub fn read_dir(dir: &Path, after: u64) -> Result<(Vec<Record>, Option<TornTail>), ReadError> {
    let all = segments(dir).map_err(ReadError::Io)?;
    // the first segment that can hold a record above `after`
    let start = all
        .iter()
        .rposition(|(first, _)| *first <= after.saturating_add(1))
        .unwrap_or(0);
    let mut records: Vec<Record> = Vec::new();
    let mut torn = None;
    let mut prev: Option<u64> = None;
    for (i, (first, path)) in all.iter().enumerate().skip(start) {
        let (recs, tail) = read(path)?;
        let newest = i + 1 == all.len();
        if let Tail::Torn { offset, bytes } = tail {
            if !newest {
                return Err(ReadError::Corrupt {
                    offset,
                    why: "damaged record in a segment that is not the newest",
                });
            }
            torn = Some(TornTail {
                path: path.clone(),
                offset,
                bytes,
            });
        }
        match recs.first() {
            Some(r) if r.seq != *first => {
                return Err(ReadError::Corrupt {
                    offset: 0,
                    why: "segment does not start at the sequence its name gives",
                })
            }
            None if !newest => {
                return Err(ReadError::Corrupt {
                    offset: 0,
                    why: "empty segment that is not the newest",
                })
            }
            _ => {}
        }
        if let (Some(p), Some(r)) = (prev, recs.first()) {
            if r.seq != p + 1 {
                return Err(ReadError::Corrupt {
                    offset: 0,
                    why: "sequence gap between segments",
                });
            }
        }
        prev = recs.last().map(|r| r.seq).or(prev);
        records.extend(recs.into_iter().filter(|r| r.seq > after));
    }
    Ok((records, torn))
}

/// Retires the segments that hold only records at or below `upto` (never the newest):
/// moves them into `archive` when given, removes them otherwise. Returns their paths.
pub fn retire(dir: &Path, upto: u64, archive: Option<&Path>) -> io::Result<Vec<PathBuf>> {
    let all = segments(dir)?;
    let mut retired = Vec::new();
    for pair in all.windows(2) {
        let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
        if *next_first > upto + 1 {
            break;
        }
        match archive {
            Some(to) => {
                fs::create_dir_all(to)?;
                fs::rename(
                    path,
                    to.join(path.file_name().expect("a segment file name")),
                )?;
            }
            None => fs::remove_file(path)?,
        }
        retired.push(path.clone());
    }
    if !retired.is_empty() {
        sync_dir(dir)?;
        if let Some(to) = archive {
            sync_dir(to)?;
        }
    }
    Ok(retired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: u64) -> Vec<u8> {
        (1..=n)
            .flat_map(|s| frame(s, s as i64 * 10, &[s as u8; 5], b"meta"))
            .collect()
    }

    #[test]
    fn reads_back_what_was_written() {
        let (recs, tail) = parse(&log(5)).unwrap();
        assert_eq!(tail, Tail::Clean);
        assert_eq!(
            recs.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(recs[2].command, vec![3; 5]);
        assert_eq!(recs[2].meta, b"meta");
    }

    #[test]
    fn a_torn_tail_is_reported_not_applied() {
        let full = log(5);
        let one = frame(1, 10, &[1; 5], b"meta").len();
        for cut in 1..one {
            let (recs, tail) = parse(&full[..full.len() - cut]).unwrap();
            assert_eq!(recs.len(), 4);
            assert_eq!(
                tail,
                Tail::Torn {
                    offset: (4 * one) as u64,
                    bytes: (one - cut) as u64
                }
            );
        }
        let mut flipped = full.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x40;
        assert_eq!(parse(&flipped).unwrap().0.len(), 4);
    }

    #[test]
    fn damage_in_the_middle_is_refused() {
        let mut buf = log(5);
        let one = frame(1, 10, &[1; 5], b"meta").len();
        buf[one * 2 + 12] ^= 1;
        assert!(matches!(parse(&buf), Err(ReadError::Corrupt { .. })));
        let mut gap = log(2);
        gap.extend(frame(4, 40, &[4; 5], b""));
        assert!(matches!(
            parse(&gap),
            Err(ReadError::Corrupt {
                why: "sequence gap",
                ..
            })
        ));
    }
    fn write_segments(dir: &Path, n: u64, segment_bytes: u64) {
        let mut j = Segments::open(dir, segment_bytes).unwrap();
        for s in 1..=n {
            j.append(s, s as i64, &[s as u8; 5], b"m").unwrap();
            if s % 3 == 0 {
                j.sync().unwrap();
            }
        }
        j.sync().unwrap();
    }

    fn seqs(recs: &[Record]) -> Vec<u64> {
        recs.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn segments_roll_read_back_and_retire() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let one = frame(1, 1, &[1; 5], b"m").len() as u64;
        write_segments(&dir, 20, 4 * one); // four records a segment
        let segs = segments(&dir).unwrap();
        assert_eq!(
            segs.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![1, 5, 9, 13, 17]
        );
        let (recs, torn) = read_dir(&dir, 0).unwrap();
        assert_eq!((seqs(&recs), torn), ((1..=20).collect(), None));
        // reading after a sequence skips what lies before it
        assert_eq!(
            seqs(&read_dir(&dir, 10).unwrap().0),
            (11..=20).collect::<Vec<_>>()
        );
        // reopening appends to the newest segment, continuing the sequence
        write_segments_from(&dir, 21, 22, 4 * one);
        assert_eq!(
            seqs(&read_dir(&dir, 0).unwrap().0),
            (1..=22).collect::<Vec<_>>()
        );

        // retire what a snapshot at 10 covers: segments 1-4 and 5-8, not 9-12
        let archive = tmp.path().join("archive");
        let gone = retire(&dir, 10, Some(&archive)).unwrap();
        assert_eq!(gone.len(), 2);
        assert_eq!(segments(&archive).unwrap().len(), 2);
        assert_eq!(
            seqs(&read_dir(&dir, 10).unwrap().0),
            (11..=22).collect::<Vec<_>>()
        );
        assert_eq!(read_dir(&dir, 0).unwrap().0[0].seq, 9);
        // the newest segment is never retired, whatever the bound
        retire(&dir, u64::MAX - 1, None).unwrap();
        assert_eq!(segments(&dir).unwrap().len(), 1);
    }

    fn write_segments_from(dir: &Path, from: u64, to: u64, segment_bytes: u64) {
        let mut j = Segments::open(dir, segment_bytes).unwrap();
        for s in from..=to {
            j.append(s, s as i64, &[s as u8; 5], b"m").unwrap();
        }
        j.sync().unwrap();
    }

    #[test]
    fn only_the_newest_segment_may_end_torn() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let one = frame(1, 1, &[1; 5], b"m").len() as u64;
        write_segments(&dir, 10, 4 * one);
        let segs = segments(&dir).unwrap();
        let newest = &segs.last().unwrap().1;
        let len = fs::metadata(newest).unwrap().len();
        truncate(newest, len - 3).unwrap();
        let (recs, torn) = read_dir(&dir, 0).unwrap();
        assert_eq!(recs.len(), 9);
        let torn = torn.unwrap();
        assert_eq!((&torn.path, torn.offset), (newest, one));
        // the same damage in an older segment is corruption
        let older = &segs[0].1;
        let len = fs::metadata(older).unwrap().len();
        truncate(older, len - 3).unwrap();
        assert!(matches!(read_dir(&dir, 0), Err(ReadError::Corrupt { .. })));
    }

    #[test]
    fn a_missing_segment_is_a_gap_not_a_skip() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let one = frame(1, 1, &[1; 5], b"m").len() as u64;
        write_segments(&dir, 12, 4 * one);
        fs::remove_file(&segments(&dir).unwrap()[1].1).unwrap();
        assert!(matches!(
            read_dir(&dir, 0),
            Err(ReadError::Corrupt {
                why: "sequence gap between segments",
                ..
            })
        ));
    }
}
