//! The write-ahead log: numbered segment files of checksummed entries, each entry one Arrow
//! IPC batch of `requests` or `feedback` rows. An entry is acknowledged only after the segment
//! is synced (`fdatasync`); many concurrent batches share one sync (group commit, done by
//! the writer thread in `store::mod`).
//!
//! Format (version [`FORMAT_VERSION`]): a segment opens with a 16-byte header (`SYWALSEG`, the
//! format version, a CRC of both); each entry is a 16-byte header (`SYWE`, table kind, payload
//! length, CRC-32 of kind, length and payload) and the payload. Segments of version 1 (no
//! segment header, `SYW1` entries) are read and converted; a newer version is refused with a
//! message naming the segment. Replayed batches are conformed to the current table schema.
//!
//! Failures: a failed write is rolled back (the segment truncated to its last good entry; if
//! that fails too, the writer moves on to a new segment), so no torn bytes precede later
//! entries. A failed sync is fatal: the kernel may have dropped the dirty pages, so a retry that
//! succeeds proves nothing; every later append fails with the reason until restart. On replay,
//! a torn tail of the last segment is cut (a crash mid-write, never acknowledged); a torn or
//! corrupt entry anywhere else sends the segment to `quarantine/` (its good prefix stays in
//! place and replays) and is reported, never silently cut.
//!
//! Failpoints: `store::wal_write` (the write stops halfway and fails, as on a full disk),
//! `store::wal_sync` (the sync fails), `store::wal_rotate` (a new segment cannot be created).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{RecordBatch, new_null_array};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use crate::error::{Error, Result};
use crate::schema::Table;

/// The format this release writes; it reads this one and every older one.
pub const FORMAT_VERSION: u32 = 2;
const SEGMENT_MAGIC: &[u8; 8] = b"SYWALSEG";
const ENTRY_MAGIC: &[u8; 4] = b"SYWE";
const V1_MAGIC: &[u8; 4] = b"SYW1";
const HEADER: usize = 16;
/// Largest entry accepted on replay (a batch is bounded by the request body limit).
const MAX_ENTRY: usize = 1 << 30;
/// Where damaged segments are moved, inside the WAL directory.
pub const QUARANTINE: &str = "quarantine";

/// One replayed entry.
pub struct Replayed {
    pub segment: u64,
    pub table: Table,
    pub batch: RecordBatch,
}

/// What opening the WAL found.
pub struct Opened {
    pub wal: Wal,
    pub replayed: Vec<Replayed>,
    /// Damaged segments moved to `quarantine/` (their good prefix replayed).
    pub quarantined: Vec<PathBuf>,
}

/// An open WAL directory: the current segment and the lock that keeps a second writer out.
pub struct Wal {
    dir: PathBuf,
    seq: u64,
    file: File,
    /// Bytes of the current segment that hold whole entries.
    len: u64,
    _lock: File,
    buf: Vec<u8>,
    /// Set by a failed sync: the reason every later append fails with.
    fatal: Option<Arc<str>>,
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((n, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn kind_of(table: Table) -> u8 {
    match table {
        Table::Requests => 1,
        Table::Feedback => 2,
        // Rollups are never logged; these kinds are refused on replay.
        Table::RequestsHourly => 3,
        Table::LatencyHourly => 4,
        Table::QualityHourly => 5,
        Table::FeedbackUnmatched => 6,
    }
}

fn segment_header() -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[0..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&h[0..12]);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

fn entry_crc(header: &[u8], payload: &[u8]) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(&header[4..12]);
    c.update(payload);
    c.finalize()
}

fn encode_entry(out: &mut Vec<u8>, table: Table, batch: &RecordBatch) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    {
        let mut w = StreamWriter::try_new(&mut *out, &batch.schema())?;
        w.write(batch)?;
        w.finish()?;
    }
    let len = u32::try_from(out.len() - start - HEADER)
        .map_err(|_| Error::TooLarge("a WAL entry is limited to 4 GiB".into()))?;
    let (head, payload) = out[start..].split_at_mut(HEADER);
    head[0..4].copy_from_slice(ENTRY_MAGIC);
    head[4] = kind_of(table);
    head[8..12].copy_from_slice(&len.to_le_bytes());
    let crc = entry_crc(head, payload);
    head[12..16].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// How a segment's bytes ended.
#[derive(Debug, PartialEq)]
enum End {
    Clean,
    /// Cut short by the end of the file (or followed only by zeros): an unfinished write.
    Torn,
    /// Bad bytes with more after them (good entries after the damage still replay).
    Corrupt(String),
}

struct SegmentRead {
    entries: Vec<Replayed>,
    /// Byte ranges of the good entries (with their headers).
    good: Vec<(usize, usize)>,
    /// Bytes before the first damage.
    valid: u64,
    /// Bytes of the segment header (0 for version 1).
    header: usize,
    end: End,
}

impl SegmentRead {
    /// The segment rewritten with its good entries only.
    fn good_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes[..self.header].to_vec();
        for (s, e) in &self.good {
            out.extend_from_slice(&bytes[*s..*e]);
        }
        out
    }
}

/// One entry read at an offset.
enum Step {
    /// A whole entry with a good checksum: its table, payload and end offset.
    Entry(Table, std::ops::Range<usize>, usize),
    /// Cut short by the end of the file.
    Short,
    /// Bad bytes.
    Bad(&'static str),
}

fn step(bytes: &[u8], at: usize, version: u32) -> Step {
    let rest = &bytes[at..];
    if rest.len() < HEADER {
        return Step::Short;
    }
    let h = &rest[..HEADER];
    let magic = if version == 1 { V1_MAGIC } else { ENTRY_MAGIC };
    let len = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
    let crc = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    let table = match h[4] {
        1 => Table::Requests,
        2 => Table::Feedback,
        _ => return Step::Bad("a bad entry header"),
    };
    if &h[0..4] != magic || len > MAX_ENTRY {
        return Step::Bad("a bad entry header");
    }
    if rest.len() < HEADER + len {
        return Step::Short;
    }
    let payload = &rest[HEADER..HEADER + len];
    let sum = if version == 1 {
        crc32fast::hash(payload)
    } else {
        entry_crc(h, payload)
    };
    if sum != crc {
        return Step::Bad("a checksum mismatch");
    }
    let start = at + HEADER;
    Step::Entry(table, start..start + len, start + len)
}

/// Decodes one segment held in memory. Errors are refusals (a newer format, a schema that
/// cannot be converted); damage is reported in `end`. After damage, reading resumes at the
/// next offset where a whole entry with a good checksum starts.
fn decode_segment(path: &Path, seq: u64, bytes: &[u8]) -> Result<SegmentRead> {
    let mut out = SegmentRead {
        entries: Vec::new(),
        good: Vec::new(),
        valid: 0,
        header: 0,
        end: End::Clean,
    };
    if bytes.is_empty() {
        return Ok(out);
    }
    let version = if bytes.starts_with(V1_MAGIC) {
        1
    } else if bytes.len() < HEADER {
        out.end = End::Torn;
        return Ok(out);
    } else if &bytes[0..8] == SEGMENT_MAGIC
        && crc32fast::hash(&bytes[0..12]).to_le_bytes() == bytes[12..16]
    {
        let v = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if v > FORMAT_VERSION {
            return Err(Error::Unavailable(format!(
                "WAL segment {} was written in format version {v}; this release reads versions \
                 1 to {FORMAT_VERSION}: start the release that wrote it so that it flushes it, \
                 or move the segment out of the WAL directory",
                path.display()
            )));
        }
        v
    } else if bytes.iter().all(|b| *b == 0) {
        out.end = End::Torn;
        return Ok(out);
    } else {
        out.end = End::Corrupt("no segment header".into());
        return Ok(out);
    };
    let magic = if version == 1 { V1_MAGIC } else { ENTRY_MAGIC };
    let mut at = if version == 1 { 0 } else { HEADER };
    out.valid = at as u64;
    out.header = at;
    let mut damage: Option<(usize, &'static str)> = None;
    while at < bytes.len() {
        let (table, payload, next) = match step(bytes, at, version) {
            Step::Entry(t, p, n) => (t, p, n),
            bad => {
                let why = match bad {
                    Step::Bad(w) => w,
                    _ => "an entry cut short",
                };
                damage.get_or_insert((at, why));
                // Resume at the next whole entry, if any.
                let resume = memchr::memmem::find_iter(&bytes[at + 1..], magic)
                    .map(|p| at + 1 + p)
                    .find(|p| matches!(step(bytes, *p, version), Step::Entry(..)));
                match resume {
                    Some(p) => {
                        at = p;
                        continue;
                    }
                    None => {
                        // Nothing whole after it: an unfinished write when only the end of the
                        // file (or zeros) follows, as a crash leaves it.
                        let first = damage.is_some_and(|(d, _)| d == at);
                        let unfinished = matches!(bad, Step::Short)
                            || bytes[at..].iter().all(|b| *b == 0)
                            || last_entry_of_file(bytes, at);
                        out.end = match damage {
                            _ if first && unfinished => End::Torn,
                            Some((d_at, d_why)) => End::Corrupt(format!("{d_why} at byte {d_at}")),
                            None => End::Corrupt(format!("{why} at byte {at}")),
                        };
                        return Ok(out);
                    }
                }
            }
        };
        let batches = StreamReader::try_new(std::io::Cursor::new(&bytes[payload.clone()]), None)
            .and_then(|r| r.collect::<std::result::Result<Vec<_>, _>>());
        let batches = match batches {
            Ok(b) => b,
            Err(_) => {
                damage.get_or_insert((at, "an undecodable entry"));
                at = next;
                continue;
            }
        };
        for b in batches {
            let batch = conform(table, b).map_err(|e| {
                Error::Unavailable(format!(
                    "WAL segment {} (format version {version}) holds {} rows this release \
                     cannot convert: {e}",
                    path.display(),
                    table.name()
                ))
            })?;
            out.entries.push(Replayed {
                segment: seq,
                table,
                batch,
            });
        }
        out.good.push((at, next));
        if damage.is_none() {
            out.valid = next as u64;
        }
        at = next;
    }
    if let Some((d_at, why)) = damage {
        out.end = End::Corrupt(format!("{why} at byte {d_at}"));
    }
    Ok(out)
}

/// True when the entry header at `at` claims exactly the rest of the file: the last write,
/// whose pages did not all reach the disk.
fn last_entry_of_file(bytes: &[u8], at: usize) -> bool {
    let rest = &bytes[at..];
    rest.len() >= HEADER
        && u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize + HEADER
            == rest.len()
}

/// Converts a replayed batch to the current schema of its table: columns are matched by name,
/// cast where the type changed, and nullable columns the writer did not have are filled with
/// nulls. A required column that is missing, or a cast that fails, is an error.
pub fn conform(table: Table, batch: RecordBatch) -> std::result::Result<RecordBatch, String> {
    let schema = table.table_schema();
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let mut cols = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => cols.push(c.clone()),
            Some(c) => cols.push(
                arrow::compute::cast(c, f.data_type())
                    .map_err(|e| format!("column `{}`: {e}", f.name()))?,
            ),
            None if f.is_nullable() => cols.push(new_null_array(f.data_type(), batch.num_rows())),
            None => return Err(format!("required column `{}` is missing", f.name())),
        }
    }
    RecordBatch::try_new(schema, cols).map_err(|e| e.to_string())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Moves a damaged segment aside: its bytes are copied to `quarantine/` (kept for
/// inspection), then the segment is replaced by its good entries, which replay again should
/// the process stop before a flush. Each step is synced; redoing it after a crash is harmless.
fn quarantine(dir: &Path, path: &Path, bytes: &[u8], good: &[u8]) -> Result<PathBuf> {
    let qdir = dir.join(QUARANTINE);
    std::fs::create_dir_all(&qdir).map_err(|e| Error::io(&qdir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut target = qdir.join(&name);
    let mut n = 1;
    while target.exists() {
        target = qdir.join(format!("{name}.{n}"));
        n += 1;
    }
    write_synced(&target, bytes)?;
    sync_dir(&qdir)?;
    let tmp = path.with_extension("wal.tmp");
    write_synced(&tmp, good)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    sync_dir(dir)?;
    Ok(target)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// True when the failpoint of that name fires (its action is `return`).
fn failpoint(name: &str) -> bool {
    (|| {
        fail::fail_point!(name, |_| true);
        false
    })()
}

impl Wal {
    /// Opens (creating) the WAL directory, takes its lock, replays every segment and starts a
    /// new one (see the module doc for what happens to damaged segments).
    pub fn open(dir: &Path) -> Result<Opened> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(Error::Unavailable(format!(
                "WAL directory {} is in use by another switchyard process",
                dir.display()
            )));
        }
        // Leftovers of a quarantine interrupted between its two renames.
        for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let p = e.map_err(|e| Error::io(dir, e))?.path();
            if p.to_string_lossy().ends_with(".wal.tmp") {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
        let segs = segments(dir)?;
        let mut replayed = Vec::new();
        let mut quarantined = Vec::new();
        let last = segs.len().saturating_sub(1);
        for (i, (seq, path)) in segs.iter().enumerate() {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let read = decode_segment(path, *seq, &bytes)?;
            match (&read.end, i == last) {
                (End::Clean, _) => {}
                (End::Torn, true) => {
                    tracing::warn!(
                        segment = %path.display(),
                        bytes = bytes.len() as u64 - read.valid,
                        "WAL: cut the torn tail of the last segment (a write the crash interrupted, never acknowledged)"
                    );
                    let f = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(|e| Error::io(path, e))?;
                    f.set_len(read.valid).map_err(|e| Error::io(path, e))?;
                    f.sync_all().map_err(|e| Error::io(path, e))?;
                }
                (End::Torn, false) | (End::Corrupt(_), _) => {
                    let why = match &read.end {
                        End::Corrupt(w) => w.clone(),
                        _ => "a torn entry before the last segment".into(),
                    };
                    let moved = quarantine(dir, path, &bytes, &read.good_bytes(&bytes))?;
                    tracing::error!(
                        segment = %path.display(),
                        quarantined = %moved.display(),
                        damage = %why,
                        good_entries = read.entries.len(),
                        lost_bytes = bytes.len() - read.good_bytes(&bytes).len(),
                        "WAL: damaged segment moved to quarantine; its entries before the damage replay"
                    );
                    quarantined.push(moved);
                }
            }
            replayed.extend(read.entries);
        }
        let seq = segs.last().map(|(s, _)| s + 1).unwrap_or(1);
        let file = Self::create_segment(dir, seq)?;
        Ok(Opened {
            wal: Wal {
                dir: dir.to_path_buf(),
                seq,
                file,
                len: HEADER as u64,
                _lock: lock,
                buf: Vec::new(),
                fatal: None,
            },
            replayed,
            quarantined,
        })
    }

    /// A new segment with its header, synced, its directory entry synced too.
    fn create_segment(dir: &Path, seq: u64) -> Result<File> {
        let path = dir.join(segment_name(seq));
        if failpoint("store::wal_rotate") {
            return Err(Error::io(
                &path,
                std::io::Error::other("injected failure (store::wal_rotate)"),
            ));
        }
        let mut f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        f.write_all(&segment_header())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(&path, e))?;
        sync_dir(dir)?;
        Ok(f)
    }

    fn path(&self) -> PathBuf {
        self.dir.join(segment_name(self.seq))
    }

    /// Why appends fail, once a sync has failed.
    pub fn fatal(&self) -> Option<Arc<str>> {
        self.fatal.clone()
    }

    /// Appends entries and syncs them to disk: on `Ok`, they survive a crash. On a write
    /// error nothing of them stays in the log; on a sync error the log stops taking appends.
    pub fn append(&mut self, entries: &[(Table, RecordBatch)]) -> Result<()> {
        if let Some(reason) = &self.fatal {
            return Err(Error::Unavailable(reason.to_string()));
        }
        self.buf.clear();
        for (t, b) in entries {
            encode_entry(&mut self.buf, *t, b)?;
        }
        let written = if failpoint("store::wal_write") {
            let half = self.buf.len() / 2;
            self.file
                .write_all(&self.buf[..half])
                .and_then(|_| Err(std::io::Error::other("injected failure (store::wal_write)")))
        } else {
            self.file.write_all(&self.buf)
        };
        if let Err(e) = written {
            let path = self.path();
            self.roll_back();
            return Err(Error::Unavailable(format!(
                "WAL write to {} failed, the batch was not stored: {e}",
                path.display()
            )));
        }
        let synced = if failpoint("store::wal_sync") {
            Err(std::io::Error::other("injected failure (store::wal_sync)"))
        } else {
            self.file.sync_data()
        };
        if let Err(e) = synced {
            let reason: Arc<str> = format!(
                "WAL sync of {} failed ({e}); the log can no longer prove what is on disk, so \
                 ingest is stopped until the process restarts",
                self.path().display()
            )
            .into();
            tracing::error!(reason = %reason, "WAL: sync failed; ingest stopped");
            self.fatal = Some(reason.clone());
            return Err(Error::Unavailable(reason.to_string()));
        }
        self.len += self.buf.len() as u64;
        if self.buf.capacity() > 64 << 20 {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// Removes the bytes of a failed write: the segment is cut back to its last whole entry,
    /// or, when that fails, left behind (its torn tail is then found and reported on replay)
    /// for a new segment.
    fn roll_back(&mut self) {
        let path = self.path();
        match self.file.set_len(self.len) {
            Ok(()) => tracing::warn!(segment = %path.display(), "WAL: rolled back a failed write"),
            Err(e) => {
                tracing::error!(segment = %path.display(), error = %e, "WAL: cannot roll back a failed write; moving to a new segment");
                if let Err(e) = self.rotate() {
                    let reason: Arc<str> = format!(
                        "WAL segment {} holds a torn write that can neither be cut ({e}) nor \
                         left behind; ingest is stopped until the process restarts",
                        path.display()
                    )
                    .into();
                    tracing::error!(reason = %reason, "WAL: ingest stopped");
                    self.fatal = Some(reason);
                }
            }
        }
    }

    /// Closes the current segment and starts the next; returns the closed segment's number.
    pub fn rotate(&mut self) -> Result<u64> {
        let file = Self::create_segment(&self.dir, self.seq + 1)?;
        let closed = self.seq;
        self.seq += 1;
        self.file = file;
        self.len = HEADER as u64;
        Ok(closed)
    }

    /// Deletes segments numbered `upto` and below (their rows are in Parquet).
    pub fn remove_upto(dir: &Path, upto: u64) -> Result<()> {
        for (seq, path) in segments(dir)? {
            if seq <= upto {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        Ok(())
    }

    /// Bytes currently held in segment files (for metrics).
    pub fn disk_bytes(dir: &Path) -> u64 {
        segments(dir)
            .map(|s| {
                s.iter()
                    .filter_map(|(_, p)| std::fs::metadata(p).ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}
