//! Claiming keys: which rows of a batch are new. The dedupe index's lock is held only to look
//! keys up and insert them, never across I/O: a partition not in memory is loaded from its
//! Parquet files with the lock released, and only batches touching that partition wait for
//! it (a record with an old `ts` slows its own batch, not everyone's ingest).

use std::collections::{BTreeSet, HashMap};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;

use super::dedupe::{Bucket, KeySet, day_bucket, feedback_key, hour_bucket, request_key};
use super::{Store, parquet};
use crate::error::{Error, Result};
use crate::schema::{Table, partition_of};

/// Splits a stored `requests` or `feedback` batch into the rows whose key `seen` does not hold
/// yet (adding their keys) or that `keep` names, and the repeats of rows seen before: a merge
/// keeps the first copy of each record. Other tables pass whole.
pub fn first_copies(
    table: Table,
    batch: RecordBatch,
    seen: &mut KeySet,
    keep: &KeySet,
) -> Result<(RecordBatch, Option<RecordBatch>)> {
    if !matches!(table, Table::Requests | Table::Feedback) {
        return Ok((batch, None));
    }
    let keep: Vec<bool> = row_keys(table, &batch)
        .into_iter()
        .map(|(_, k)| seen.insert(k) || keep.contains(&k))
        .collect();
    if keep.iter().all(|k| *k) {
        return Ok((batch, None));
    }
    let repeats = arrow::compute::filter_record_batch(
        &batch,
        &arrow::array::BooleanArray::from_iter(keep.iter().map(|k| Some(!k))),
    )?;
    Ok((super::keep_rows(batch, keep)?, Some(repeats)))
}

/// Keys a batch claimed, to give back if its rows are not stored after all.
#[derive(Default)]
pub struct Claims(Vec<(Bucket, u64)>);

/// The dedupe partition and key of each row of a `requests` or `feedback` batch (in table
/// schema: `request_id`, `ts` lead; feedback has `metric` third and `source` fifth).
pub fn row_keys(table: Table, batch: &RecordBatch) -> Vec<(Bucket, u64)> {
    let ids = batch.column(0).as_string::<i32>();
    let ts = batch.column(1).as_primitive::<TimestampMicrosecondType>();
    match table {
        Table::Feedback => {
            let metric = batch.column(2).as_string::<i32>();
            let source = batch.column(4).as_string::<i32>();
            (0..batch.num_rows())
                .map(|i| {
                    let src = (!source.is_null(i)).then(|| source.value(i));
                    (
                        Bucket::FeedbackDay(day_bucket(ts.value(i))),
                        feedback_key(ids.value(i), metric.value(i), src),
                    )
                })
                .collect()
        }
        _ => (0..batch.num_rows())
            .map(|i| {
                (
                    Bucket::RequestHour(hour_bucket(ts.value(i))),
                    request_key(ids.value(i)),
                )
            })
            .collect(),
    }
}

impl Store {
    fn dedupe(&self) -> std::sync::MutexGuard<'_, super::dedupe::Dedupe> {
        match self.inner.dedupe.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Marks which rows of `batch` are new and claims their keys, so a concurrent batch with
    /// the same keys counts as a duplicate.
    pub(super) async fn claim(
        &self,
        table: Table,
        batch: &RecordBatch,
        claims: &mut Claims,
    ) -> Result<Vec<bool>> {
        let keys = row_keys(table, batch);
        let buckets: BTreeSet<Bucket> = keys.iter().map(|(b, _)| *b).collect();
        loop {
            let missing = {
                let mut dd = self.dedupe();
                if dd.ready(buckets.iter().copied()) {
                    let mut keep = Vec::with_capacity(keys.len());
                    for (b, k) in &keys {
                        let fresh = dd.insert(*b, *k).unwrap_or(false);
                        if fresh {
                            claims.0.push((*b, *k));
                        }
                        keep.push(fresh);
                    }
                    return Ok(keep);
                }
                dd.missing(buckets.iter().copied())
            };
            for (bucket, done) in missing.load {
                match self.load_keys(bucket).await {
                    Ok(k) => self.dedupe().install(bucket, k, done),
                    Err(e) => {
                        self.dedupe().abandon(bucket);
                        return Err(e);
                    }
                }
            }
            for mut rx in missing.wait {
                // An error means the loader gave up: the next round loads it again.
                let _ = rx.wait_for(|done| *done).await;
            }
        }
    }

    /// Gives back the keys of rows that were not stored.
    pub(super) fn release(&self, claims: Claims) {
        let mut dd = self.dedupe();
        for (b, k) in claims.0 {
            dd.remove(b, k);
        }
    }

    /// After a flush committed these batches: their partitions may be dropped from memory.
    pub(super) fn mark_flushed(&self, requests: &[RecordBatch], feedback: &[RecordBatch]) {
        let mut flushed: HashMap<Bucket, usize> = HashMap::new();
        for (t, batches) in [(Table::Requests, requests), (Table::Feedback, feedback)] {
            for b in batches {
                for (bucket, _) in row_keys(t, b) {
                    *flushed.entry(bucket).or_default() += 1;
                }
            }
        }
        self.dedupe().mark_flushed(&flushed);
    }

    /// Keys held by the dedupe index and the bytes they take.
    pub fn dedupe_usage(&self) -> (usize, usize) {
        let dd = self.dedupe();
        (dd.len(), dd.heap_bytes())
    }

    /// Reads a partition's keys from its Parquet files (no lock held).
    async fn load_keys(&self, bucket: Bucket) -> Result<Vec<u64>> {
        let loc = &self.inner.loc;
        let (dir, cols): (_, &[usize]) = match bucket {
            Bucket::RequestHour(h) => {
                let (date, hour) = partition_of(h * 3_600_000_000);
                (
                    loc.path(&[
                        Table::Requests.name(),
                        &format!("date={date}"),
                        &format!("hour={hour}"),
                    ]),
                    &[0],
                )
            }
            Bucket::FeedbackDay(d) => {
                let (date, _) = partition_of(d * 86_400_000_000);
                (
                    loc.path(&[Table::Feedback.name(), &format!("date={date}")]),
                    &[0, 2, 4],
                )
            }
        };
        let mut keys = Vec::new();
        // Committed files only (see `store::view`).
        let view = loc.committed();
        for f in parquet::list_files(&view, &dir).await? {
            for b in parquet::read_key_columns(&view, &f, cols).await? {
                let Some(ids) = parquet::str_column(&b, 0) else {
                    return Err(Error::Internal(format!("{f}: request_id is not a string")));
                };
                match bucket {
                    Bucket::RequestHour(_) => keys.extend(ids.iter().flatten().map(request_key)),
                    Bucket::FeedbackDay(_) => {
                        let (Some(metric), Some(src)) =
                            (parquet::str_column(&b, 1), parquet::str_column(&b, 2))
                        else {
                            return Err(Error::Internal(format!(
                                "{f}: feedback key columns are not strings"
                            )));
                        };
                        for i in 0..b.num_rows() {
                            let s = (!src.is_null(i)).then(|| src.value(i));
                            keys.push(feedback_key(ids.value(i), metric.value(i), s));
                        }
                    }
                }
            }
        }
        Ok(keys)
    }
}
