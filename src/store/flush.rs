//! Flushing: the buffer's rows, sorted by time, become one Parquet file per partition plus the
//! day's rollups, published in one commit (`store::commit`) that also drops them from the
//! buffer, so readers see each row exactly once; then the WAL is trimmed and small files
//! compacted.

// A second `impl Store` block: the parent module's names are this file's vocabulary.
use super::*;

impl Store {
    async fn take_snapshot(&self) -> Result<Snapshot> {
        match &self.inner.wal_tx {
            Some(tx) => {
                let (done, rx) = oneshot::channel();
                tx.lock()
                    .map_err(|_| Error::Internal("WAL channel poisoned".into()))?
                    .send(WalCmd::Rotate { done })
                    .map_err(|_| Error::Unavailable("the WAL writer has stopped".into()))?;
                rx.await
                    .map_err(|_| Error::Unavailable("the WAL writer has stopped".into()))?
                    .map_err(Error::Internal)
            }
            None => Ok(Snapshot::of(None, &self.inner.buffer.load())),
        }
    }

    /// Moves every buffered row into Parquet (one file per partition, plus the day's
    /// rollups) in one commit (see `store::commit`), then compacts the partitions it wrote
    /// to and applies retention.
    pub async fn flush(&self) -> Result<FlushStats> {
        if self.inner.cfg.read_only {
            return Ok(FlushStats::default());
        }
        let _one = self.inner.flush_lock.lock().await;
        let loc = &self.inner.loc;
        let wal_dir = self.inner.cfg.wal_dir.as_deref();
        // A commit whose last steps failed earlier is finished first.
        commit::finish(loc, wal_dir).await?;
        let started = Instant::now();
        let snap = self.take_snapshot().await?;
        let mut written = self.write_pending(&snap).await?;
        let wrote = started.elapsed();
        // The feedback pairs this flush completes, in the same commit (see `store::quality`).
        let quality = match self.write_quality(&snap, &written).await {
            Ok(q) => q,
            Err(e) => {
                let tmps: Vec<Path> = written.iter().map(|w| w.tmp.clone()).collect();
                commit::discard(loc, &tmps).await;
                return Err(e);
            }
        };
        written.extend(quality.files.iter().map(|(tmp, path, dir, rows)| Written {
            bucket: None,
            rows: *rows,
            dir: dir.clone(),
            tmp: tmp.clone(),
            path: path.clone(),
        }));
        let qualified = started.elapsed();
        let mut stats = FlushStats::default();
        let mut touched: std::collections::BTreeSet<Path> = Default::default();
        for w in &written {
            touched.insert(w.dir.clone());
            // Rollup files summarise rows counted once already.
            if w.bucket.is_none() {
                continue;
            }
            stats.rows += w.rows;
            stats.files += 1;
        }
        let record = commit::Record {
            publish: written
                .iter()
                .map(|w| commit::Publish {
                    pending: w.tmp.to_string(),
                    path: w.path.to_string(),
                })
                .collect(),
            supersede: quality.supersede.iter().map(|p| p.to_string()).collect(),
            wal_upto: snap.wal_seq,
        };
        let committed = if record.publish.is_empty() {
            None
        } else {
            if let Some(lock) = &self.inner.lock
                && let Err(e) = lock.check()
            {
                let tmps: Vec<Path> = written.iter().map(|w| w.tmp.clone()).collect();
                commit::discard(loc, &tmps).await;
                return Err(e);
            }
            // The commit point, with the rows leaving the buffer in the same step for readers.
            // Readers planning a query wait for it; ingest does not.
            let _readers_wait = self.commit_lock().await;
            buffer::pause("store::flush_commit").await;
            let at = commit::commit(loc, &record).await?;
            self.committed(&snap);
            quality.install(&mut self.quality_state());
            Some(at)
        };
        match &committed {
            Some(at) => commit::apply(loc, at, &record, wal_dir, commit::Step::Flush)
                .await
                .map_err(|e| {
                    Error::Unavailable(format!(
                        "flush committed, but finishing it failed (retried at the next flush): {e}"
                    ))
                })?,
            // Nothing was buffered: the rotated segments hold no row that is not in Parquet.
            None => {
                if let (Some(seq), Some(dir)) = (snap.wal_seq, wal_dir) {
                    let dir = dir.to_path_buf();
                    tokio::task::spawn_blocking(move || Wal::remove_upto(&dir, seq))
                        .await
                        .map_err(|e| Error::Internal(format!("WAL cleanup task: {e}")))??;
                }
            }
        }
        let done = started.elapsed();
        let m = &self.inner.metrics;
        if stats.rows > 0 {
            let us = started.elapsed().as_micros() as u64;
            m.flushes.fetch_add(1, Ordering::Relaxed);
            m.flushed_rows
                .fetch_add(stats.rows as u64, Ordering::Relaxed);
            m.flush_micros_total.fetch_add(us, Ordering::Relaxed);
            m.last_flush_micros.store(us, Ordering::Relaxed);
            m.flush_seconds.observe(started.elapsed());
        }
        self.inner.flushed.notify_waiters();
        for dir in touched {
            let n = compact::compact_dir(self, &dir).await?;
            m.compactions.fetch_add(n as u64, Ordering::Relaxed);
        }
        tracing::debug!(
            rows = stats.rows,
            files = stats.files,
            write_ms = wrote.as_millis() as u64,
            quality_ms = (qualified - wrote).as_millis() as u64,
            commit_ms = (done - qualified).as_millis() as u64,
            compact_ms = (started.elapsed() - done).as_millis() as u64,
            "flushed"
        );
        // At the first flush and then once a day: the rollups' past days, one file each.
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let due = match self.inner.rollups_merged_before.lock() {
            Ok(d) => d.as_deref() != Some(today.as_str()),
            Err(_) => true,
        };
        if due {
            let n = compact::merge_rollup_days(self, Some(&today)).await?;
            m.compactions.fetch_add(n as u64, Ordering::Relaxed);
            if let Ok(mut d) = self.inner.rollups_merged_before.lock() {
                *d = Some(today);
            }
        }
        if let Some(days) = self.inner.cfg.retention_days {
            compact::apply_retention(self, days).await?;
        }
        Ok(stats)
    }

    /// Writes a snapshot's rows as pending files (one per partition, plus rollups per day)
    /// and syncs them; on failure removes the ones written.
    async fn write_pending(&self, snap: &Snapshot) -> Result<Vec<Written>> {
        let mut written: Vec<Written> = Vec::new();
        let mut failed: Option<Error> = None;
        for (table, batches) in [
            (Table::Requests, &snap.requests),
            (Table::Feedback, &snap.feedback),
        ] {
            if failed.is_some() || !parquet::any_rows(batches) {
                continue;
            }
            match self.write_table(table, batches).await {
                Ok((ok, err)) => {
                    written.extend(ok);
                    failed = err;
                }
                Err(e) => failed = Some(e),
            }
        }
        if failed.is_none() && !written.is_empty() {
            let files: Vec<Path> = written.iter().map(|w| w.tmp.clone()).collect();
            let dirs: Vec<Path> = written.iter().map(|w| w.dir.clone()).collect();
            let synced = async {
                faults::hit("store::flush::sync").await?;
                commit::sync(&self.inner.loc, &files, &dirs).await?;
                faults::hit("store::flush::commit").await
            };
            failed = synced.await.err();
        }
        if let Some(e) = failed {
            let tmps: Vec<Path> = written.iter().map(|w| w.tmp.clone()).collect();
            commit::discard(&self.inner.loc, &tmps).await;
            return Err(e);
        }
        Ok(written)
    }

    /// The quality rollup's files for a snapshot, synced (`write_pending`'s files are).
    async fn write_quality(
        &self,
        snap: &Snapshot,
        written: &[Written],
    ) -> Result<quality::FlushPart> {
        let recheck = quality::recheck_due(self);
        if written.is_empty() && !recheck {
            return Ok(quality::FlushPart::default());
        }
        let part = quality::flush_part(self, &snap.requests, &snap.feedback, recheck).await;
        let part = match part {
            Ok(p) => p,
            Err(e) => return Err(e),
        };
        let files: Vec<Path> = part.files.iter().map(|f| f.0.clone()).collect();
        let dirs: Vec<Path> = part.files.iter().map(|f| f.2.clone()).collect();
        if let Err(e) = commit::sync(&self.inner.loc, &files, &dirs).await {
            commit::discard(&self.inner.loc, &files).await;
            return Err(e);
        }
        Ok(part)
    }

    /// One table's partition files (and, for requests, the rollups): the files written, and
    /// the first error if some failed.
    ///
    /// Each partition is sorted, rolled up and encoded on its own, one task per core; the
    /// rollups are then one file per day and rollup table. A rollup group's hour is its
    /// partition's, so the partitions' rollups side by side are the rollups of the whole
    /// flush, each group summed in the same (`ts`-sorted) order.
    async fn write_table(
        &self,
        table: Table,
        batches: &[RecordBatch],
    ) -> Result<(Vec<Written>, Option<Error>)> {
        let batches = Arc::new(batches.to_vec());
        let started = Instant::now();
        let parts = {
            let batches = batches.clone();
            tokio::task::spawn_blocking(move || partition_rows(table, &batches))
                .await
                .map_err(|e| Error::Internal(format!("partition task: {e}")))?
        };
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let jobs = parts.into_iter().map(|(bucket, rows)| {
            let loc = self.inner.loc.clone();
            let batches = batches.clone();
            async move {
                let (date, hour) = partition_of(bucket * 3_600_000_000);
                let n = rows.len();
                let (body, rollups) = tokio::task::spawn_blocking(move || {
                    let slice = parquet::sort_rows(&batches, &rows)?;
                    let rollups = match table {
                        Table::Requests => Some(rollup::compute(std::slice::from_ref(&slice))?),
                        _ => None,
                    };
                    let body = parquet::encode(table, &[parquet::to_file_batch(table, &slice)?])?;
                    Ok::<_, Error>((body, rollups))
                })
                .await
                .map_err(|e| Error::Internal(format!("encode task: {e}")))??;
                let w = put_piece(&loc, Some(bucket), table, &date, &hour, n, body).await?;
                Ok::<_, Error>((w, rollups))
            }
        });
        let results: Vec<Result<(Written, Option<rollup::Rollups>)>> =
            futures::stream::iter(jobs).buffered(cores).collect().await;
        let parted = started.elapsed();
        let mut ok = Vec::with_capacity(results.len());
        let mut err = None;
        let mut rollups = Vec::new();
        for r in results {
            match r {
                Ok((w, r)) => {
                    ok.push(w);
                    rollups.extend(r);
                }
                Err(e) => err = err.or(Some(e)),
            }
        }
        // Rollups of the flushed requests, one file per day and rollup table.
        if err.is_none() && !rollups.is_empty() {
            for r in self.write_rollup_days(rollups, cores).await {
                match r {
                    Ok(w) => ok.push(w),
                    Err(e) => err = err.or(Some(e)),
                }
            }
        }
        tracing::debug!(
            table = table.name(),
            files = ok.len(),
            partitions_ms = parted.as_millis() as u64,
            rollups_ms = (started.elapsed() - parted).as_millis() as u64,
            "wrote partitions"
        );
        Ok((ok, err))
    }

    /// The rollup files of a flush's partitions' rollups (in hour order), one per day and
    /// rollup table, written `cores` at a time: each file written, or why it was not.
    async fn write_rollup_days(
        &self,
        rollups: Vec<rollup::Rollups>,
        cores: usize,
    ) -> Vec<Result<Written>> {
        let days = tokio::task::spawn_blocking(move || rollup::day_pieces_of(rollups))
            .await
            .map_err(|e| Error::Internal(format!("rollup task: {e}")));
        let days = match days {
            Ok(Ok(days)) => days,
            Ok(Err(e)) | Err(e) => return vec![Err(e)],
        };
        let jobs = days.into_iter().map(|(t, date, day)| {
            let loc = self.inner.loc.clone();
            async move {
                let rows = day.num_rows();
                let body = tokio::task::spawn_blocking(move || {
                    parquet::encode(t, &[parquet::to_file_batch(t, &day)?])
                })
                .await
                .map_err(|e| Error::Internal(format!("encode task: {e}")))??;
                put_piece(&loc, None, t, &date, "", rows, body).await
            }
        });
        futures::stream::iter(jobs)
            .buffer_unordered(cores)
            .collect()
            .await
    }

    /// Runs the flusher until `shutdown` fires, then flushes what is left.
    pub async fn run_flusher(self, shutdown: Arc<Notify>) {
        let interval = self.inner.cfg.flush_interval;
        loop {
            let stop = tokio::select! {
                _ = tokio::time::sleep(interval) => false,
                _ = self.inner.flush_wanted.notified() => false,
                _ = shutdown.notified() => true,
            };
            if stop {
                break;
            }
            let r = self.flush().await;
            self.inner
                .health
                .flushed(r.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            if let Err(e) = r {
                tracing::error!(error = %e, "flush failed; rows stay in the WAL and buffer");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Stops taking writes, flushes everything buffered to Parquet and merges each day of the
    /// rollups into one file (a batch import's days, today's included).
    pub async fn close(&self) -> Result<FlushStats> {
        self.inner.closed.store(true, Ordering::Release);
        let mut flushed = self.flush().await;
        if flushed.is_ok()
            && !self.inner.cfg.read_only
            && let Err(e) = compact::merge_rollup_days(self, None).await
        {
            flushed = Err(e);
        }
        if let Some(lock) = &self.inner.lock {
            lock.release().await;
        }
        flushed
    }
}

/// One pending file a flush wrote.
struct Written {
    /// The hour bucket of a partition file; `None` for rollups.
    bucket: Option<i64>,
    rows: usize,
    dir: Path,
    tmp: Path,
    path: Path,
}

impl Store {
    /// Held around a commit point: readers planning a query wait; ingest does not.
    pub(crate) async fn commit_lock(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.inner.commit.write().await
    }
}

/// The directory of a partition: `date=`/`hour=` for requests, `date=` for the others.
pub(super) fn partition_dir(loc: &Location, table: Table, date: &str, hour: &str) -> Path {
    match table {
        Table::Requests => loc.path(&[
            table.name(),
            &format!("date={date}"),
            &format!("hour={hour}"),
        ]),
        _ => loc.path(&[table.name(), &format!("date={date}")]),
    }
}

/// The rows `(batch, row)` of each partition (hour for requests, day for feedback), keyed
/// by hour bucket, in bucket order.
fn partition_rows(table: Table, batches: &[RecordBatch]) -> Vec<(i64, Vec<(usize, usize)>)> {
    let width: i64 = match table {
        Table::Feedback => 24,
        _ => 1,
    };
    let mut parts: std::collections::BTreeMap<i64, Vec<(usize, usize)>> = Default::default();
    for (b, batch) in batches.iter().enumerate() {
        let ts = batch.column(1).as_primitive::<TimestampMicrosecondType>();
        for i in 0..batch.num_rows() {
            let k = hour_bucket(ts.value(i)).div_euclid(width) * width;
            parts.entry(k).or_default().push((b, i));
        }
    }
    parts.into_iter().collect()
}

/// Puts one encoded file as a pending file of its partition.
async fn put_piece(
    loc: &Location,
    bucket: Option<i64>,
    table: Table,
    date: &str,
    hour: &str,
    rows: usize,
    body: bytes::Bytes,
) -> Result<Written> {
    let dir = partition_dir(loc, table, date, hour);
    faults::hit("store::flush::write").await?;
    let (path, tmp) = loc.part_paths(&dir, "");
    loc.store.put(&tmp, PutPayload::from_bytes(body)).await?;
    Ok(Written {
        bucket,
        rows,
        dir,
        tmp,
        path,
    })
}
