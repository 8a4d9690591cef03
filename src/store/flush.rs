//! Flushing: the buffer's rows, sorted by time, become one Parquet file per partition plus the
//! day's rollups, written as `.pending` and renamed into place under the buffer's write lock,
//! so readers see each row exactly once; then the WAL is trimmed and small files compacted.

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
            None => {
                let buf = self.inner.buffer.read().await;
                Ok(Snapshot {
                    wal_seq: None,
                    requests: buf.requests.clone(),
                    feedback: buf.feedback.clone(),
                })
            }
        }
    }

    /// Moves every buffered row into Parquet (one file per partition), then compacts the
    /// partitions it wrote to and applies retention.
    pub async fn flush(&self) -> Result<FlushStats> {
        if self.inner.cfg.read_only {
            return Ok(FlushStats::default());
        }
        let _one = self.inner.flush_lock.lock().await;
        let started = Instant::now();
        let snap = self.take_snapshot().await?;
        let (n_req, n_fb) = (snap.requests.len(), snap.feedback.len());
        let mut stats = FlushStats::default();
        let mut pending: Vec<(Path, Path)> = Vec::new();
        let mut flushed_buckets: HashMap<i64, usize> = HashMap::new();
        let mut touched: std::collections::BTreeSet<Path> = Default::default();
        for (table, batches) in [
            (Table::Requests, &snap.requests),
            (Table::Feedback, &snap.feedback),
        ] {
            if !parquet::any_rows(batches) {
                continue;
            }
            let batches = batches.clone();
            let sorted = tokio::task::spawn_blocking(move || parquet::sort_by_ts(&batches))
                .await
                .map_err(|e| Error::Internal(format!("sort task: {e}")))??;
            // Rollups of the flushed requests, one file per day and rollup table.
            let mut pieces: Vec<(Option<i64>, Table, String, String, RecordBatch)> = Vec::new();
            if table == Table::Requests {
                let all = sorted.clone();
                let (hourly, latency) = tokio::task::spawn_blocking(move || {
                    rollup::compute(std::slice::from_ref(&all))
                })
                .await
                .map_err(|e| Error::Internal(format!("rollup task: {e}")))??;
                for (t, b) in [
                    (Table::RequestsHourly, hourly),
                    (Table::LatencyHourly, latency),
                ] {
                    for (date, day) in rollup::split_days(&b) {
                        pieces.push((None, t, date, String::new(), day));
                    }
                }
            }
            // Partitions are encoded and written in parallel, one task per core.
            for (bucket, slice) in split_partitions(table, &sorted) {
                let (date, hour) = partition_of(bucket * 3_600_000_000);
                pieces.push((Some(bucket), table, date, hour, slice));
            }
            drop(sorted);
            let jobs = pieces.into_iter().map(|(bucket, t, date, hour, slice)| {
                let loc = self.inner.loc.clone();
                async move {
                    let rows = slice.num_rows();
                    let dir = match t {
                        Table::Requests => {
                            loc.path(&[t.name(), &format!("date={date}"), &format!("hour={hour}")])
                        }
                        _ => loc.path(&[t.name(), &format!("date={date}")]),
                    };
                    let body = tokio::task::spawn_blocking(move || {
                        parquet::encode(t, &[parquet::to_file_batch(t, &slice)?])
                    })
                    .await
                    .map_err(|e| Error::Internal(format!("encode task: {e}")))??;
                    let (final_path, tmp) = part_paths(&dir, "");
                    loc.store.put(&tmp, PutPayload::from_bytes(body)).await?;
                    Ok::<_, Error>((bucket, rows, dir, tmp, final_path))
                }
            });
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            let written: Vec<_> = futures::stream::iter(jobs)
                .buffer_unordered(cores)
                .try_collect()
                .await?;
            for (bucket, rows, dir, tmp, final_path) in written {
                pending.push((tmp, final_path));
                touched.insert(dir);
                // Rollup files summarise rows counted once already.
                let Some(bucket) = bucket else { continue };
                if table == Table::Requests {
                    *flushed_buckets.entry(bucket).or_default() += rows;
                }
                stats.rows += rows;
                stats.files += 1;
            }
        }
        // Commit: files become visible and rows leave the buffer in one step for readers.
        {
            let mut buf = self.inner.buffer.write().await;
            for (tmp, fin) in &pending {
                self.inner.loc.store.rename(tmp, fin).await?;
            }
            let drop_req: usize = buf.requests.drain(..n_req).map(|b| b.num_rows()).sum();
            let drop_fb: usize = buf.feedback.drain(..n_fb).map(|b| b.num_rows()).sum();
            buf.rows -= drop_req + drop_fb;
            self.inner
                .metrics
                .buffered_rows
                .store(buf.rows as u64, Ordering::Relaxed);
        }
        if let (Some(seq), Some(dir)) = (snap.wal_seq, &self.inner.cfg.wal_dir) {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || Wal::remove_upto(&dir, seq))
                .await
                .map_err(|e| Error::Internal(format!("WAL cleanup task: {e}")))??;
        }
        self.inner
            .dedupe
            .lock()
            .await
            .mark_flushed(&flushed_buckets);
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
        if let Some(days) = self.inner.cfg.retention_days {
            compact::apply_retention(self, days).await?;
        }
        Ok(stats)
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
            if let Err(e) = self.flush().await {
                tracing::error!(error = %e, "flush failed; rows stay in the WAL and buffer");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Stops taking writes and flushes everything buffered to Parquet.
    pub async fn close(&self) -> Result<FlushStats> {
        self.inner.closed.store(true, Ordering::Release);
        self.flush().await
    }

    pub(crate) async fn commit_lock(&self) -> tokio::sync::RwLockWriteGuard<'_, Buffer> {
        self.inner.buffer.write().await
    }
}

/// Splits a `ts`-sorted table batch into runs of one partition each (hour for requests, day
/// for feedback), keyed by hour bucket.
fn split_partitions(table: Table, sorted: &RecordBatch) -> Vec<(i64, RecordBatch)> {
    let ts = sorted.column(1).as_primitive::<TimestampMicrosecondType>();
    let width: i64 = match table {
        Table::Feedback => 24,
        _ => 1,
    };
    let key = |i: usize| hour_bucket(ts.value(i)).div_euclid(width) * width;
    let mut out = Vec::new();
    let mut start = 0;
    let n = sorted.num_rows();
    while start < n {
        let k = key(start);
        let mut end = start + 1;
        while end < n && key(end) == k {
            end += 1;
        }
        out.push((k, sorted.slice(start, end - start)));
        start = end;
    }
    out
}
