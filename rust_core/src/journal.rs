//! The journal: an append-only log of accepted commands, each record length-prefixed and
//! checksummed, made durable in groups (one `sync` for many appends).
//!
//! Record: `len: u32` (bytes after the checksum), `crc32: u32` (of those bytes), then
//! `seq: u64`, `ts: i64`, `command_len: u32`, the encoded command, and opaque metadata
//! that the gateway keeps beside it. Sequence numbers increase by one from record to
//! record. A damaged or missing tail (a crash mid-write) is reported and can be cut
//! off; damage followed by good records is corruption in the middle and is refused.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

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
}
