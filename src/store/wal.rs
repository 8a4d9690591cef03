//! The write-ahead log: numbered segment files of checksummed entries, each entry one Arrow
//! IPC batch of `requests` or `feedback` rows. An entry is acknowledged only after the segment
//! is synced (`fdatasync`); many concurrent batches share one sync (group commit, done by
//! the writer thread in `store::mod`). Replay stops at the first torn or corrupt entry of the
//! last segment, which was never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use crate::error::{Error, Result};
use crate::schema::Table;

const MAGIC: &[u8; 4] = b"SYW1";
const HEADER: usize = 16;
/// Largest entry accepted on replay (a batch is bounded by the request body limit).
const MAX_ENTRY: usize = 1 << 30;

/// One replayed entry.
pub struct Replayed {
    pub segment: u64,
    pub table: Table,
    pub batch: RecordBatch,
}

/// An open WAL directory: the current segment and the lock that keeps a second writer out.
pub struct Wal {
    dir: PathBuf,
    seq: u64,
    file: File,
    _lock: File,
    buf: Vec<u8>,
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

fn encode_entry(out: &mut Vec<u8>, table: Table, batch: &RecordBatch) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    {
        let mut w = StreamWriter::try_new(&mut *out, &batch.schema())?;
        w.write(batch)?;
        w.finish()?;
    }
    let len = out.len() - start - HEADER;
    let crc = crc32fast::hash(&out[start + HEADER..]);
    let kind = match table {
        Table::Requests => 1u8,
        Table::Feedback => 2u8,
        // Rollups are never logged; these kinds are refused on replay.
        Table::RequestsHourly => 3u8,
        Table::LatencyHourly => 4u8,
    };
    let h = &mut out[start..start + HEADER];
    h[0..4].copy_from_slice(MAGIC);
    h[4] = kind;
    h[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Reads the valid entries of one segment; returns them and the byte length of the valid
/// prefix (a torn tail starts there).
fn read_segment(path: &Path, seq: u64) -> Result<(Vec<Replayed>, u64, bool)> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut out = Vec::new();
    let mut valid = 0u64;
    loop {
        let mut h = [0u8; HEADER];
        match read_full(&mut r, &mut h) {
            Ok(0) => return Ok((out, valid, true)),
            Ok(n) if n < HEADER => return Ok((out, valid, false)),
            Ok(_) => {}
            Err(e) => return Err(Error::io(path, e)),
        }
        let len = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let crc = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
        let table = match h[4] {
            1 => Table::Requests,
            2 => Table::Feedback,
            _ => return Ok((out, valid, false)),
        };
        if &h[0..4] != MAGIC || len > MAX_ENTRY {
            return Ok((out, valid, false));
        }
        let mut payload = vec![0u8; len];
        match read_full(&mut r, &mut payload) {
            Ok(n) if n == len => {}
            Ok(_) => return Ok((out, valid, false)),
            Err(e) => return Err(Error::io(path, e)),
        }
        if crc32fast::hash(&payload) != crc {
            return Ok((out, valid, false));
        }
        let reader = StreamReader::try_new(std::io::Cursor::new(payload), None)?;
        for b in reader {
            out.push(Replayed {
                segment: seq,
                table,
                batch: b?,
            });
        }
        valid += (HEADER + len) as u64;
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Wal {
    /// Opens (creating) the WAL directory, takes its lock, replays every segment and starts a
    /// new one. A corrupt tail is cut off; corruption before the last segment's tail is an error.
    pub fn open(dir: &Path) -> Result<(Wal, Vec<Replayed>)> {
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
        let segs = segments(dir)?;
        let mut replayed = Vec::new();
        let last = segs.len().saturating_sub(1);
        for (i, (seq, path)) in segs.iter().enumerate() {
            let (entries, valid, clean) = read_segment(path, *seq)?;
            if !clean {
                if i != last {
                    tracing::warn!(segment = %path.display(), "WAL segment has a corrupt entry before its end; later entries of this segment are skipped");
                }
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| Error::io(path, e))?;
                f.set_len(valid).map_err(|e| Error::io(path, e))?;
                f.sync_all().map_err(|e| Error::io(path, e))?;
            }
            replayed.extend(entries);
        }
        let seq = segs.last().map(|(s, _)| s + 1).unwrap_or(1);
        let file = Self::create_segment(dir, seq)?;
        Ok((
            Wal {
                dir: dir.to_path_buf(),
                seq,
                file,
                _lock: lock,
                buf: Vec::new(),
            },
            replayed,
        ))
    }

    fn create_segment(dir: &Path, seq: u64) -> Result<File> {
        let path = dir.join(segment_name(seq));
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // Make the new file's directory entry durable too.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(f)
    }

    /// Appends entries and syncs them to disk: on `Ok`, they survive a crash.
    pub fn append(&mut self, entries: &[(Table, RecordBatch)]) -> Result<()> {
        self.buf.clear();
        for (t, b) in entries {
            encode_entry(&mut self.buf, *t, b)?;
        }
        let path = self.dir.join(segment_name(self.seq));
        self.file
            .write_all(&self.buf)
            .map_err(|e| Error::io(&path, e))?;
        self.file.sync_data().map_err(|e| Error::io(&path, e))?;
        if self.buf.capacity() > 64 << 20 {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// Closes the current segment and starts the next; returns the closed segment's number.
    pub fn rotate(&mut self) -> Result<u64> {
        let closed = self.seq;
        self.seq += 1;
        self.file = Self::create_segment(&self.dir, self.seq)?;
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
