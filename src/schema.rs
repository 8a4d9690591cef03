//! The Arrow schemas of the `requests` and `feedback` tables, and record ⇄ RecordBatch.
//!
//! Batches in memory (the write buffer, the WAL) carry the partition columns `date` and `hour`
//! at the end; Parquet files leave them out, since the Hive path holds them.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, Float64Builder, MapBuilder, MapFieldNames, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use chrono::{DateTime, Datelike, Timelike};

use crate::error::{Error, Result};
use crate::record::fields::{self, Kind, utc_ts};
use crate::record::{Feedback, FeedbackRef, Record, RecordRef};

pub use crate::record::COST_SCALE;
pub use crate::record::fields::COST_PRECISION;

fn metadata_type() -> DataType {
    let entries = Fields::from(vec![
        Field::new("keys", DataType::Utf8, false),
        Field::new("values", DataType::Utf8, true),
    ]);
    DataType::Map(
        Arc::new(Field::new("entries", DataType::Struct(entries), false)),
        false,
    )
}

fn partition_fields(hour: bool) -> Vec<Field> {
    let mut f = vec![Field::new("date", DataType::Utf8, false)];
    if hour {
        f.push(Field::new("hour", DataType::Utf8, false));
    }
    f
}

/// The columns of the canonical fields, from the field list.
macro_rules! arrow_fields {
    ($($(#[$doc:meta])* $f:ident $json:literal $kind:ident,)*) => {
        vec![$(Field::new(
            $json,
            <fields::$kind as Kind>::data_type(),
            <fields::$kind as Kind>::NULLABLE,
        ),)*]
    };
}

fn request_fields() -> Vec<Field> {
    let mut f = crate::record::request_fields!(arrow_fields);
    f.push(Field::new("metadata", metadata_type(), true));
    f
}

fn feedback_fields() -> Vec<Field> {
    vec![
        Field::new("request_id", DataType::Utf8, false),
        Field::new("ts", utc_ts(), false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
        Field::new("source", DataType::Utf8, true),
    ]
}

static REQUEST_FILE: LazyLock<SchemaRef> =
    LazyLock::new(|| Arc::new(Schema::new(request_fields())));
static REQUEST_TABLE: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut f = request_fields();
    f.extend(partition_fields(true));
    Arc::new(Schema::new(f))
});
static FEEDBACK_FILE: LazyLock<SchemaRef> =
    LazyLock::new(|| Arc::new(Schema::new(feedback_fields())));
static FEEDBACK_TABLE: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut f = feedback_fields();
    f.extend(partition_fields(false));
    Arc::new(Schema::new(f))
});

/// The stored tables: the two ingested ones, and the hourly rollups derived from `requests`
/// at flush (see `store::rollup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Requests,
    Feedback,
    RequestsHourly,
    LatencyHourly,
    /// Feedback joined to its request, rolled up at flush (see `store::quality`).
    QualityHourly,
    /// Feedback stored before its request: rolled up when the request is (internal).
    FeedbackUnmatched,
}

impl Table {
    /// The ingested tables (what the WAL and the write buffer hold).
    pub const ALL: [Table; 2] = [Table::Requests, Table::Feedback];
    /// The rollup tables (one partition a day).
    pub const ROLLUPS: [Table; 3] = [
        Table::RequestsHourly,
        Table::LatencyHourly,
        Table::QualityHourly,
    ];
    /// Every table with files in the store.
    pub const STORED: [Table; 6] = [
        Table::Requests,
        Table::Feedback,
        Table::RequestsHourly,
        Table::LatencyHourly,
        Table::QualityHourly,
        Table::FeedbackUnmatched,
    ];

    /// The table's SQL name and its directory in the store.
    pub fn name(self) -> &'static str {
        match self {
            Table::Requests => "requests",
            Table::Feedback => "feedback",
            Table::RequestsHourly => "requests_hourly",
            Table::LatencyHourly => "latency_hourly",
            Table::QualityHourly => "quality_hourly",
            Table::FeedbackUnmatched => "feedback_unmatched",
        }
    }

    /// Columns stored in each Parquet file.
    pub fn file_schema(self) -> SchemaRef {
        match self {
            Table::Requests => REQUEST_FILE.clone(),
            Table::Feedback => FEEDBACK_FILE.clone(),
            Table::RequestsHourly => HOURLY_FILE.clone(),
            Table::LatencyHourly => LATENCY_FILE.clone(),
            Table::QualityHourly => QUALITY_FILE.clone(),
            Table::FeedbackUnmatched => FEEDBACK_FILE.clone(),
        }
    }

    /// File columns plus the partition columns (`date`, and `hour` for requests).
    pub fn table_schema(self) -> SchemaRef {
        match self {
            Table::Requests => REQUEST_TABLE.clone(),
            Table::Feedback => FEEDBACK_TABLE.clone(),
            Table::RequestsHourly => HOURLY_TABLE.clone(),
            Table::LatencyHourly => LATENCY_TABLE.clone(),
            Table::QualityHourly => QUALITY_TABLE.clone(),
            Table::FeedbackUnmatched => FEEDBACK_FILE.clone(),
        }
    }

    /// Names of the Hive partition columns, outermost first.
    pub fn partition_columns(self) -> &'static [&'static str] {
        match self {
            Table::Requests => &["date", "hour"],
            Table::FeedbackUnmatched => &[],
            _ => &["date"],
        }
    }
}

/// Precision of summed costs in the rollups (what `SUM` of `cost_usd` gives).
pub const COST_SUM_PRECISION: u8 = 28;

/// The token counts of a request, summed per group in `requests_hourly` under the same names.
pub const TOKEN_COLUMNS: [&str; 5] = [
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
];

fn hourly_fields() -> Vec<Field> {
    let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    let i = |n: &str| Field::new(n, DataType::Int64, false);
    let mut f = vec![
        Field::new("ts_hour", utc_ts(), false),
        s("model", false),
        s("provider", true),
        s("task", false),
        s("key_id", true),
        s("team_id", true),
        // NULL also in files written before the rollup kept them.
        s("policy_version", true),
        s("route", true),
    ];
    for n in ["requests", "errors", "retries", "streamed"]
        .into_iter()
        .chain(TOKEN_COLUMNS)
    {
        f.push(i(n));
    }
    f.push(Field::new(
        "cost_usd",
        DataType::Decimal128(COST_SUM_PRECISION, COST_SCALE as i8),
        false,
    ));
    f.push(i("unpriced"));
    f.push(Field::new("latency_ms_sum", DataType::Float64, false));
    f.push(i("latency_count"));
    f.push(Field::new("ttft_ms_sum", DataType::Float64, false));
    f.push(i("ttft_count"));
    // First and last `ts` of the group's attempts (NULL in files written before).
    f.push(Field::new("first_ts", utc_ts(), true));
    f.push(Field::new("last_ts", utc_ts(), true));
    f.push(Field::new("hour", DataType::Utf8, false));
    f
}

fn latency_fields() -> Vec<Field> {
    vec![
        Field::new("ts_hour", utc_ts(), false),
        Field::new("model", DataType::Utf8, false),
        Field::new("task", DataType::Utf8, false),
        Field::new("key_id", DataType::Utf8, true),
        Field::new("metric", DataType::Utf8, false),
        Field::new("bucket", DataType::Int32, false),
        Field::new("count", DataType::Int64, false),
        Field::new("hour", DataType::Utf8, false),
    ]
}

static HOURLY_FILE: LazyLock<SchemaRef> = LazyLock::new(|| Arc::new(Schema::new(hourly_fields())));
static HOURLY_TABLE: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut f = hourly_fields();
    f.extend(partition_fields(false));
    Arc::new(Schema::new(f))
});
static LATENCY_FILE: LazyLock<SchemaRef> =
    LazyLock::new(|| Arc::new(Schema::new(latency_fields())));
static LATENCY_TABLE: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut f = latency_fields();
    f.extend(partition_fields(false));
    Arc::new(Schema::new(f))
});

fn quality_fields() -> Vec<Field> {
    let s = |n: &str| Field::new(n, DataType::Utf8, false);
    let i = |n: &str| Field::new(n, DataType::Int64, false);
    // Exact sums (see `store::quality::SUM_SCALE`).
    let f = |n: &str| Field::new(n, DataType::Decimal128(38, 12), false);
    vec![
        Field::new("ts_hour", utc_ts(), false),
        s("task"),
        s("model"),
        // NULL: the request was not routed by a switchyard policy (and rows stored before the
        // rollup kept the version read as NULL too).
        Field::new("policy_version", DataType::Utf8, true),
        s("metric"),
        s("feedback_date"),
        i("samples"),
        f("value_sum"),
        f("value_sq_sum"),
        i("successes"),
        i("non_binary"),
        s("hour"),
    ]
}

static QUALITY_FILE: LazyLock<SchemaRef> =
    LazyLock::new(|| Arc::new(Schema::new(quality_fields())));
static QUALITY_TABLE: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut f = quality_fields();
    f.extend(partition_fields(false));
    Arc::new(Schema::new(f))
});

/// `YYYY-MM-DD` and `HH` (UTC) of a microsecond timestamp.
pub fn partition_of(ts_us: i64) -> (String, String) {
    match DateTime::from_timestamp_micros(ts_us) {
        Some(t) => (
            format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day()),
            format!("{:02}", t.hour()),
        ),
        None => ("1970-01-01".into(), "00".into()),
    }
}

/// Caches the partition strings of the last hour seen (records arrive roughly in time order).
struct PartitionCache {
    hour_bucket: i64,
    date: String,
    hour: String,
}

impl PartitionCache {
    fn new() -> Self {
        PartitionCache {
            hour_bucket: i64::MIN,
            date: String::new(),
            hour: String::new(),
        }
    }

    fn get(&mut self, ts_us: i64) -> (&str, &str) {
        let bucket = ts_us.div_euclid(3_600_000_000);
        if bucket != self.hour_bucket {
            let (d, h) = partition_of(ts_us);
            self.hour_bucket = bucket;
            self.date = d;
            self.hour = h;
        }
        (&self.date, &self.hour)
    }
}

fn metadata_builder() -> MapBuilder<StringBuilder, StringBuilder> {
    MapBuilder::new(
        Some(MapFieldNames {
            entry: "entries".into(),
            key: "keys".into(),
            value: "values".into(),
        }),
        StringBuilder::new(),
        StringBuilder::new(),
    )
}

/// Defines [`RequestColumns`] and [`batch_to_requests`] from the field list.
macro_rules! define_columns {
    ($($(#[$doc:meta])* $f:ident $json:literal $kind:ident,)*) => {
        /// Column builders of a `requests` batch (table schema, with the partition columns):
        /// finished records are appended straight into them, text copied once from the input.
        pub struct RequestColumns {
            $($f: <fields::$kind as Kind>::Builder,)*
            metadata: MapBuilder<StringBuilder, StringBuilder>,
            date: StringBuilder,
            hour: StringBuilder,
            partitions: PartitionCache,
            rows: usize,
        }

        impl RequestColumns {
            pub fn with_capacity(rows: usize) -> Self {
                RequestColumns {
                    $($f: <fields::$kind as Kind>::builder(rows),)*
                    metadata: metadata_builder(),
                    date: StringBuilder::with_capacity(rows, rows * 10),
                    hour: StringBuilder::with_capacity(rows, rows * 2),
                    partitions: PartitionCache::new(),
                    rows: 0,
                }
            }

            /// Appends one finished record.
            pub fn append(&mut self, r: &RecordRef<'_>) -> Result<()> {
                $(<fields::$kind as Kind>::append(&mut self.$f, &r.$f);)*
                for (k, v) in &r.metadata {
                    self.metadata.keys().append_value(k);
                    self.metadata.values().append_value(v);
                }
                self.metadata.append(!r.metadata.is_empty())?;
                let (d, h) = self.partitions.get(r.ts_us);
                self.date.append_value(d);
                self.hour.append_value(h);
                self.rows += 1;
                Ok(())
            }

            /// The batch of the rows appended so far; `None` when there are none.
            pub fn finish(mut self) -> Result<Option<RecordBatch>> {
                if self.rows == 0 {
                    return Ok(None);
                }
                let columns: Vec<ArrayRef> = vec![
                    $(<fields::$kind as Kind>::finish(&mut self.$f),)*
                    Arc::new(self.metadata.finish()),
                    Arc::new(self.date.finish()),
                    Arc::new(self.hour.finish()),
                ];
                Ok(Some(RecordBatch::try_new(Table::Requests.table_schema(), columns)?))
            }
        }

        /// Reads `requests` rows back into records (file or table schema; columns found by
        /// name and checked against the field list).
        pub fn batch_to_requests(batch: &RecordBatch) -> Result<Vec<Record>> {
            let col = |name: &str, ty: DataType| -> Result<&ArrayRef> {
                let c = batch.column_by_name(name).ok_or_else(|| {
                    Error::Invalid(format!("requests batch has no `{name}` column"))
                })?;
                if c.data_type() != &ty {
                    return Err(Error::Invalid(format!(
                        "`{name}` is {}, not {ty}",
                        c.data_type()
                    )));
                }
                Ok(c)
            };
            $(let $f = col($json, <fields::$kind as Kind>::data_type())?;)*
            let mut out = Vec::with_capacity(batch.num_rows());
            for i in 0..batch.num_rows() {
                out.push(Record {
                    $($f: <fields::$kind as Kind>::read($f.as_ref(), i),)*
                    metadata: metadata_at(batch, i),
                });
            }
            Ok(out)
        }
    };
}

crate::record::request_fields!(define_columns);

/// Builds a `requests` batch (table schema, with partition columns) from finished records.
pub fn requests_to_batch(records: &[Record]) -> Result<RecordBatch> {
    let mut cols = RequestColumns::with_capacity(records.len());
    for r in records {
        cols.append(&r.as_ref())?;
    }
    match cols.finish()? {
        Some(b) => Ok(b),
        None => Ok(RecordBatch::new_empty(Table::Requests.table_schema())),
    }
}

/// Column builders of a `feedback` batch (table schema, with `date`).
pub struct FeedbackColumns {
    id: StringBuilder,
    ts: TimestampMicrosecondBuilder,
    metric: StringBuilder,
    value: Float64Builder,
    source: StringBuilder,
    date: StringBuilder,
    partitions: PartitionCache,
    rows: usize,
}

impl FeedbackColumns {
    pub fn with_capacity(n: usize) -> Self {
        FeedbackColumns {
            id: StringBuilder::with_capacity(n, n * 24),
            ts: TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"),
            metric: StringBuilder::with_capacity(n, n * 8),
            value: Float64Builder::with_capacity(n),
            source: StringBuilder::with_capacity(n, n * 4),
            date: StringBuilder::with_capacity(n, n * 10),
            partitions: PartitionCache::new(),
            rows: 0,
        }
    }

    /// Appends one validated feedback record.
    pub fn append(&mut self, f: &FeedbackRef<'_>) {
        self.id.append_value(&f.request_id);
        self.ts.append_value(f.ts_us);
        self.metric.append_value(&f.metric);
        self.value.append_value(f.value);
        self.source.append_option(f.source.as_deref());
        self.date.append_value(self.partitions.get(f.ts_us).0);
        self.rows += 1;
    }

    /// The batch of the rows appended so far; `None` when there are none.
    pub fn finish(mut self) -> Result<Option<RecordBatch>> {
        if self.rows == 0 {
            return Ok(None);
        }
        Ok(Some(RecordBatch::try_new(
            Table::Feedback.table_schema(),
            vec![
                Arc::new(self.id.finish()),
                Arc::new(self.ts.finish()),
                Arc::new(self.metric.finish()),
                Arc::new(self.value.finish()),
                Arc::new(self.source.finish()),
                Arc::new(self.date.finish()),
            ],
        )?))
    }
}

/// Builds a `feedback` batch (table schema, with `date`) from finished feedback records.
pub fn feedback_to_batch(items: &[Feedback]) -> Result<RecordBatch> {
    let mut cols = FeedbackColumns::with_capacity(items.len());
    for f in items {
        cols.append(&f.as_ref());
    }
    match cols.finish()? {
        Some(b) => Ok(b),
        None => Ok(RecordBatch::new_empty(Table::Feedback.table_schema())),
    }
}

/// The metadata of row `i` of a `requests` batch, as a map (used by tests and exports).
pub fn metadata_at(batch: &RecordBatch, i: usize) -> BTreeMap<String, String> {
    use arrow::array::{AsArray, StringArray};
    let mut out = BTreeMap::new();
    let Some(col) = batch.column_by_name("metadata") else {
        return out;
    };
    let Some(map) = col.as_map_opt() else {
        return out;
    };
    if map.is_null(i) {
        return out;
    }
    let entries = map.value(i);
    let keys = entries.column(0).as_any().downcast_ref::<StringArray>();
    let vals = entries.column(1).as_any().downcast_ref::<StringArray>();
    if let (Some(k), Some(v)) = (keys, vals) {
        for j in 0..k.len() {
            out.insert(k.value(j).to_string(), v.value(j).to_string());
        }
    }
    out
}
