//! Parquet files of the store: writer properties (zstd, delta-encoded timestamps, dictionary
//! for low-cardinality text, bloom filter on `request_id`, declared sort on `ts`), encoding a
//! batch to a file body, and reading the dedupe keys back from stored files.

use object_store::ObjectStoreExt as _;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::Result;
use crate::schema::Table;

/// Rows per row group: large groups compress best; queries prune by statistics.
const ROW_GROUP_ROWS: usize = 1 << 20;
/// Encoded bytes a row group may buffer before it is written out.
const ROW_GROUP_BYTES: usize = 16 << 20;

/// Writer settings; `sorted` declares the rows sorted by `ts` (true of flushed files).
pub fn writer_properties(table: Table, sorted: bool, rows: Option<usize>) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page);
    if matches!(
        table,
        Table::RequestsHourly | Table::LatencyHourly | Table::QualityHourly
    ) {
        // Rollups: small files, sorted by hour then group key as written.
        return b
            .set_column_encoding(ColumnPath::from("ts_hour"), Encoding::DELTA_BINARY_PACKED)
            .set_column_dictionary_enabled(ColumnPath::from("ts_hour"), false)
            .build();
    }
    let ts_index = 1; // `ts` is the second column of both ingested tables.
    b = b
        .set_sorting_columns(sorted.then(|| {
            vec![SortingColumn {
                column_idx: ts_index,
                descending: false,
                nulls_first: false,
            }]
        }))
        .set_column_dictionary_enabled(ColumnPath::from("ts"), false)
        .set_column_encoding(ColumnPath::from("ts"), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(ColumnPath::from("request_id"), false)
        .set_column_bloom_filter_enabled(ColumnPath::from("request_id"), true)
        .set_column_bloom_filter_fpp(ColumnPath::from("request_id"), 0.01);
    if let Some(n) = rows {
        // Sized for the file: the default (a million ids) costs a megabyte per small file.
        b = b.set_column_bloom_filter_max_ndv(ColumnPath::from("request_id"), n.max(1) as u64);
    }
    if table == Table::Requests {
        for c in [
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
        ] {
            b = b.set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
        }
    }
    b.build()
}

/// Drops the partition columns of a table-schema batch, leaving the file schema.
pub fn to_file_batch(table: Table, batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = table.file_schema();
    let cols = (0..schema.fields().len())
        .map(|i| batch.column(i).clone())
        .collect::<Vec<_>>();
    Ok(RecordBatch::try_new(schema, cols)?)
}

/// Merges batches into one, sorted by `ts` (then `request_id`), the order files declare.
/// Rows are copied once, straight into their sorted place.
pub fn sort_by_ts(batches: &[RecordBatch]) -> Result<RecordBatch> {
    let all: Vec<(usize, usize)> = batches
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| (0..batch.num_rows()).map(move |i| (b, i)))
        .collect();
    sort_rows(batches, &all)
}

/// The rows `(batch, row)` of `batches` as one batch in [`sort_by_ts`]'s order.
pub fn sort_rows(batches: &[RecordBatch], rows: &[(usize, usize)]) -> Result<RecordBatch> {
    use arrow::datatypes::TimestampMicrosecondType;
    let cols: Vec<_> = batches
        .iter()
        .map(|b| {
            (
                b.column(1).as_primitive::<TimestampMicrosecondType>(),
                b.column(0).as_string::<i32>(),
            )
        })
        .collect();
    let mut keys: Vec<(i64, &str, usize, usize)> = rows
        .iter()
        .map(|&(b, i)| (cols[b].0.value(i), cols[b].1.value(i), b, i))
        .collect();
    keys.sort_unstable();
    let idx: Vec<(usize, usize)> = keys.into_iter().map(|(_, _, b, i)| (b, i)).collect();
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    Ok(arrow::compute::interleave_record_batch(&refs, &idx)?)
}

/// Encodes `ts`-sorted file-schema batches as one Parquet file body.
pub fn encode(table: Table, batches: &[RecordBatch]) -> Result<Bytes> {
    let mut w = FileEncoder::new(table, true, Some(rows(batches)))?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()
}

/// A Parquet file body written batch by batch (memory: one row group of encoded pages).
pub struct FileEncoder {
    writer: ArrowWriter<Vec<u8>>,
}

impl FileEncoder {
    pub fn new(table: Table, sorted: bool, rows: Option<usize>) -> Result<Self> {
        let buf = Vec::with_capacity(1 << 20);
        let props = writer_properties(table, sorted, rows);
        Ok(FileEncoder {
            writer: ArrowWriter::try_new(buf, table.file_schema(), Some(props))?,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch)?;
        // Bound the buffered row group by its encoded size, not only by rows.
        if self.writer.in_progress_size() > ROW_GROUP_BYTES {
            self.writer.flush()?;
        }
        Ok(())
    }

    pub fn finish(self) -> Result<Bytes> {
        Ok(Bytes::from(self.writer.into_inner()?))
    }
}

/// Merges stored files into one object, streaming: each input is read and each row group
/// written out as it fills, so memory stays bounded whatever the inputs add up to. Of the
/// copies of one record only the first is kept, unless `keep` names its key.
pub async fn merge_files(
    store: &Arc<dyn ObjectStore>,
    table: Table,
    inputs: &[Path],
    output: &Path,
    keep: &super::dedupe::KeySet,
) -> Result<Merged> {
    use parquet::arrow::AsyncArrowWriter;
    let sink = object_store::buffered::BufWriter::new(store.clone(), output.clone());
    let props = writer_properties(table, false, None);
    let mut w = AsyncArrowWriter::try_new(sink, table.file_schema(), Some(props))?;
    let mut merged = Merged::default();
    let mut seen = super::dedupe::KeySet::default();
    for path in inputs {
        let bytes = store.get(path).await?.bytes().await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?
            .with_batch_size(16 * 1024)
            .build()?;
        for b in reader {
            // Copies of one record stored by two nodes merge into one.
            let (b, repeats) = super::claim::first_copies(table, b?, &mut seen, keep)?;
            merged.rows += b.num_rows();
            merged.repeats.extend(repeats);
            w.write(&b).await?;
            if w.in_progress_size() > ROW_GROUP_BYTES {
                w.flush().await?;
            }
        }
    }
    w.close().await?;
    Ok(merged)
}

/// What a merge wrote: its rows, and the repeated copies it left out (file schema).
#[derive(Default)]
pub struct Merged {
    pub rows: usize,
    pub repeats: Vec<RecordBatch>,
}

/// Reads the first `n_cols` columns (the dedupe key columns lead each file) of a stored file.
pub async fn read_key_columns(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    cols: &[usize],
) -> Result<Vec<RecordBatch>> {
    let bytes = store.get(path).await?.bytes().await?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), cols.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

/// Lists the committed Parquet files below `dir`.
pub async fn list_files(store: &Arc<dyn ObjectStore>, dir: &Path) -> Result<Vec<Path>> {
    let metas: Vec<_> = store.list(Some(dir)).try_collect().await?;
    let mut out: Vec<Path> = metas
        .into_iter()
        .map(|m| m.location)
        .filter(|p| p.as_ref().ends_with(".parquet"))
        .collect();
    out.sort();
    Ok(out)
}

/// The string column `i` of a batch, if it is one.
pub fn str_column(batch: &RecordBatch, i: usize) -> Option<&arrow::array::StringArray> {
    batch.column(i).as_string_opt::<i32>()
}

/// Number of rows in a set of batches.
pub fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

/// Whether any batch has rows.
pub fn any_rows(batches: &[RecordBatch]) -> bool {
    batches
        .iter()
        .any(|b| b.num_rows() > 0 && !b.column(0).is_empty())
}
