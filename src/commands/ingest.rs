//! `switchyard ingest`: files or stdin (plain, .gz, .zst) through the store's one write
//! pipeline. A reader thread cuts the input into line-aligned chunks, worker threads parse,
//! validate and price them into Arrow batches, and the committer dedupes and stores them in
//! input order. Rejected lines are reported with their line numbers.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Notify;

use super::{Outcome, load_catalog, store_config};
use crate::cli::{Global, IngestArgs};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::formats::Format;
use crate::store::{Location, Prepared, Store};

/// Bytes per parse chunk.
const CHUNK: usize = 4 << 20;

/// Totals of an import.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestSummary {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
}

struct Chunk {
    seq: usize,
    /// Line number (0-based) of the chunk's first line; whole documents count as line 0.
    first_line: usize,
    body: Vec<u8>,
}

/// Counts the compressed bytes read, for the progress bar.
struct Counting<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

fn open_input(path: &Path, bar: &ProgressBar) -> Result<Box<dyn BufRead + Send>> {
    let raw: Box<dyn Read + Send> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        if let Ok(m) = f.metadata() {
            bar.inc_length(m.len());
        }
        Box::new(f)
    };
    let mut r = BufReader::with_capacity(
        1 << 20,
        Counting {
            inner: raw,
            bar: bar.clone(),
        },
    );
    let head = r.fill_buf().map_err(|e| Error::io(path, e))?;
    let name = path.to_string_lossy();
    let gz = head.starts_with(&[0x1f, 0x8b]) || name.ends_with(".gz");
    let zst = head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || name.ends_with(".zst");
    Ok(if gz {
        Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(r),
        ))
    } else if zst {
        let d = zstd::stream::read::Decoder::with_buffer(r).map_err(|e| Error::io(path, e))?;
        Box::new(BufReader::with_capacity(1 << 20, d))
    } else {
        Box::new(r)
    })
}

/// Reads `input` into line-aligned chunks. A JSON array or a pretty-printed single document
/// (an OTLP export) is passed whole.
fn read_chunks(
    path: &Path,
    mut input: Box<dyn BufRead + Send>,
    tx: &SyncSender<Chunk>,
    seq: &mut usize,
) -> Result<()> {
    let head = input.fill_buf().map_err(|e| Error::io(path, e))?;
    let first = head.iter().copied().find(|b| !b.is_ascii_whitespace());
    let whole = match first {
        Some(b'[') => true,
        Some(b'{') => {
            let line_end = head.iter().position(|b| *b == b'\n').unwrap_or(head.len());
            serde_json::from_slice::<serde::de::IgnoredAny>(&head[..line_end]).is_err()
                && line_end < head.len()
        }
        _ => false,
    };
    if whole {
        let mut body = Vec::new();
        input
            .read_to_end(&mut body)
            .map_err(|e| Error::io(path, e))?;
        let _ = tx.send(Chunk {
            seq: *seq,
            first_line: 0,
            body,
        });
        *seq += 1;
        return Ok(());
    }
    let mut line_no = 0usize;
    loop {
        let mut body = Vec::with_capacity(CHUNK + 64 * 1024);
        let mut lines = 0usize;
        while body.len() < CHUNK {
            let n = input
                .read_until(b'\n', &mut body)
                .map_err(|e| Error::io(path, e))?;
            if n == 0 {
                break;
            }
            lines += 1;
        }
        if lines == 0 {
            return Ok(());
        }
        if tx
            .send(Chunk {
                seq: *seq,
                first_line: line_no,
                body,
            })
            .is_err()
        {
            return Ok(());
        }
        *seq += 1;
        line_no += lines;
    }
}

/// Imports files through `store`, printing rejected lines to stderr.
pub async fn ingest_paths(
    store: &Store,
    paths: &[PathBuf],
    format: Format,
    progress: bool,
) -> Result<IngestSummary> {
    let mut total = IngestSummary::default();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    for path in paths {
        let bar = if progress {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_message(path.display().to_string());
            b
        } else {
            ProgressBar::hidden()
        };
        let input = open_input(path, &bar)?;
        let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(workers * 2);
        let (done_tx, mut done_rx) =
            tokio::sync::mpsc::channel::<(usize, usize, Result<Prepared>)>(workers * 2);
        let reader_path = path.clone();
        let reader = std::thread::spawn(move || {
            let mut seq = 0;
            read_chunks(&reader_path, input, &chunk_tx, &mut seq)
        });
        let shared_rx: Arc<Mutex<Receiver<Chunk>>> = Arc::new(Mutex::new(chunk_rx));
        let mut handles = Vec::new();
        for _ in 0..workers {
            let rx = shared_rx.clone();
            let tx = done_tx.clone();
            let store = store.clone();
            handles.push(std::thread::spawn(move || {
                let now = chrono::Utc::now().timestamp_micros();
                loop {
                    let chunk = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    let Ok(chunk) = chunk else { return };
                    let prepared = store
                        .prepare_body(&chunk.body, format, now)
                        .map(|p| p.unwrap_or_default());
                    if tx
                        .blocking_send((chunk.seq, chunk.first_line, prepared))
                        .is_err()
                    {
                        return;
                    }
                }
            }));
        }
        drop(done_tx);
        // Commit in input order so "first one wins" among duplicates follows the file.
        let mut next = 0usize;
        let mut waiting = std::collections::BTreeMap::new();
        let mut failure = None;
        while let Some((seq, first_line, prepared)) = done_rx.recv().await {
            waiting.insert(seq, (first_line, prepared));
            while let Some((first_line, prepared)) = waiting.remove(&next) {
                next += 1;
                if failure.is_some() {
                    continue;
                }
                match prepared {
                    Ok(p) => match store.commit(p).await {
                        Ok(out) => {
                            total.accepted += out.accepted;
                            total.duplicates += out.duplicates;
                            total.rejected += out.rejected.len();
                            for r in out.rejected {
                                bar.suspend(|| {
                                    eprintln!(
                                        "{}:{}: {}",
                                        path.display(),
                                        first_line + r.index + 1,
                                        r.error
                                    )
                                });
                            }
                        }
                        Err(e) => failure = Some(e),
                    },
                    Err(e) => failure = Some(e),
                }
            }
        }
        drop(shared_rx);
        for h in handles {
            let _ = h.join();
        }
        let read = reader
            .join()
            .map_err(|_| Error::Internal("reader thread panicked".into()))?;
        bar.finish_and_clear();
        if let Some(e) = failure {
            return Err(e);
        }
        read?;
    }
    Ok(total)
}

pub async fn ingest_command(g: &Global, config: &Config, args: IngestArgs) -> Result<Outcome> {
    let loc = Location::open(&g.data_dir)?;
    let prices = load_catalog(&loc).await?;
    // The serve defaults hold for batch import too: a flush every `max_buffer_rows` rows
    // keeps memory bounded whatever the input's size (figures in the README).
    let mut cfg = store_config(g, config, &loc, &args.store, false);
    // Nobody retries a batch import: it waits for its flushes however long they take.
    cfg.ingest_deadline = std::time::Duration::MAX;
    let store = Store::open(loc, cfg, prices).await?;
    let stop = Arc::new(Notify::new());
    let flusher = tokio::spawn(store.clone().run_flusher(stop.clone()));
    let progress = !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let result = ingest_paths(&store, &args.paths, args.format, progress).await;
    stop.notify_one();
    let _ = flusher.await;
    let flushed = store.close().await;
    let sum = result?;
    flushed?;
    println!(
        "accepted {} duplicates {} rejected {}",
        sum.accepted, sum.duplicates, sum.rejected
    );
    Ok(if sum.rejected > 0 {
        Outcome::Partial
    } else {
        Outcome::Ok
    })
}
