//! The Arrow schemas of the `requests` and `feedback` tables, and record ⇄ RecordBatch.
//!
//! Batches in memory (the write buffer, the WAL) carry the partition columns `date` and `hour`
//! at the end; Parquet files leave them out, since the Hive path holds them.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, BooleanBuilder, Decimal128Builder, Float64Builder, Int32Builder, Int64Builder,
    MapBuilder, MapFieldNames, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Datelike, Timelike};
use rust_decimal::Decimal;

use crate::error::Result;
use crate::record::{COST_SCALE, Feedback, Record};

/// Precision of `cost_usd`: DECIMAL(18, 12) fits a Parquet INT64 and up to 999,999 USD.
pub const COST_PRECISION: u8 = 18;

fn utc_ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

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

fn request_fields() -> Vec<Field> {
    let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    let i = |n: &str| Field::new(n, DataType::Int64, true);
    vec![
        s("request_id", false),
        Field::new("ts", utc_ts(), false),
        s("model", false),
        s("provider", true),
        s("task", false),
        s("gateway", true),
        s("key_id", true),
        s("user_id", true),
        s("team_id", true),
        s("app", true),
        i("prompt_tokens"),
        i("completion_tokens"),
        i("cached_tokens"),
        i("cache_write_tokens"),
        i("reasoning_tokens"),
        Field::new(
            "cost_usd",
            DataType::Decimal128(COST_PRECISION, COST_SCALE as i8),
            true,
        ),
        s("cost_source", false),
        Field::new("latency_ms", DataType::Float64, true),
        Field::new("ttft_ms", DataType::Float64, true),
        Field::new("status", DataType::Int32, true),
        s("error", true),
        s("finish_reason", true),
        Field::new("streamed", DataType::Boolean, true),
        Field::new("attempt", DataType::Int32, true),
        s("parent_id", true),
        s("policy_version", true),
        s("route", true),
        Field::new("metadata", metadata_type(), true),
    ]
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
}

impl Table {
    /// The ingested tables (what the WAL and the write buffer hold).
    pub const ALL: [Table; 2] = [Table::Requests, Table::Feedback];
    /// The rollups of `requests`.
    pub const ROLLUPS: [Table; 2] = [Table::RequestsHourly, Table::LatencyHourly];
    /// Every table with files in the store.
    pub const STORED: [Table; 4] = [
        Table::Requests,
        Table::Feedback,
        Table::RequestsHourly,
        Table::LatencyHourly,
    ];

    /// The table's SQL name and its directory in the store.
    pub fn name(self) -> &'static str {
        match self {
            Table::Requests => "requests",
            Table::Feedback => "feedback",
            Table::RequestsHourly => "requests_hourly",
            Table::LatencyHourly => "latency_hourly",
        }
    }

    /// Columns stored in each Parquet file.
    pub fn file_schema(self) -> SchemaRef {
        match self {
            Table::Requests => REQUEST_FILE.clone(),
            Table::Feedback => FEEDBACK_FILE.clone(),
            Table::RequestsHourly => HOURLY_FILE.clone(),
            Table::LatencyHourly => LATENCY_FILE.clone(),
        }
    }

    /// File columns plus the partition columns (`date`, and `hour` for requests).
    pub fn table_schema(self) -> SchemaRef {
        match self {
            Table::Requests => REQUEST_TABLE.clone(),
            Table::Feedback => FEEDBACK_TABLE.clone(),
            Table::RequestsHourly => HOURLY_TABLE.clone(),
            Table::LatencyHourly => LATENCY_TABLE.clone(),
        }
    }

    /// Names of the Hive partition columns, outermost first.
    pub fn partition_columns(self) -> &'static [&'static str] {
        match self {
            Table::Requests => &["date", "hour"],
            _ => &["date"],
        }
    }
}

/// Precision of summed costs in the rollups (what `SUM` of `cost_usd` gives).
pub const COST_SUM_PRECISION: u8 = 28;

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
    ];
    for n in [
        "requests",
        "errors",
        "retries",
        "streamed",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
    ] {
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

fn decimal_units(d: Decimal) -> i128 {
    let mut d = d;
    d.rescale(COST_SCALE);
    d.mantissa()
}

/// Builds a `requests` batch (table schema, with partition columns) from finished records.
pub fn requests_to_batch(records: &[Record]) -> Result<RecordBatch> {
    let n = records.len();
    // Builders get their exact sizes: buffered batches stay as small as they can be.
    let str_col = |f: &dyn Fn(&Record) -> Option<&str>| -> ArrayRef {
        let bytes = records.iter().map(|r| f(r).map_or(0, str::len)).sum();
        let mut b = StringBuilder::with_capacity(n, bytes);
        for r in records {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    let i64_col = |f: &dyn Fn(&Record) -> Option<i64>| -> ArrayRef {
        let mut b = Int64Builder::with_capacity(n);
        for r in records {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    let f64_col = |f: &dyn Fn(&Record) -> Option<f64>| -> ArrayRef {
        let mut b = Float64Builder::with_capacity(n);
        for r in records {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    let i32_col = |f: &dyn Fn(&Record) -> Option<i32>| -> ArrayRef {
        let mut b = Int32Builder::with_capacity(n);
        for r in records {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut cost = Decimal128Builder::with_capacity(n)
        .with_precision_and_scale(COST_PRECISION, COST_SCALE as i8)?;
    let mut streamed = BooleanBuilder::with_capacity(n);
    let entries: usize = records.iter().map(|r| r.metadata.len()).sum();
    let (kb, vb) = records
        .iter()
        .flat_map(|r| r.metadata.iter())
        .fold((0, 0), |(k, v), (a, b)| (k + a.len(), v + b.len()));
    let mut meta = MapBuilder::with_capacity(
        Some(MapFieldNames {
            entry: "entries".into(),
            key: "keys".into(),
            value: "values".into(),
        }),
        StringBuilder::with_capacity(entries, kb),
        StringBuilder::with_capacity(entries, vb),
        n,
    );
    let mut date = StringBuilder::with_capacity(n, n * 10);
    let mut hour = StringBuilder::with_capacity(n, n * 2);
    let mut pc = PartitionCache::new();
    for r in records {
        ts.append_value(r.ts_us);
        cost.append_option(r.cost_usd.map(decimal_units));
        streamed.append_option(r.streamed);
        if r.metadata.is_empty() {
            meta.append(false)?;
        } else {
            for (k, v) in &r.metadata {
                meta.keys().append_value(k);
                meta.values().append_value(v);
            }
            meta.append(true)?;
        }
        let (d, h) = pc.get(r.ts_us);
        date.append_value(d);
        hour.append_value(h);
    }
    let columns: Vec<ArrayRef> = vec![
        str_col(&|r| Some(&r.request_id)),
        Arc::new(ts.finish()),
        str_col(&|r| Some(&r.model)),
        str_col(&|r| r.provider.as_deref()),
        str_col(&|r| Some(r.task.as_deref().unwrap_or("default"))),
        str_col(&|r| r.gateway.as_deref()),
        str_col(&|r| r.key_id.as_deref()),
        str_col(&|r| r.user_id.as_deref()),
        str_col(&|r| r.team_id.as_deref()),
        str_col(&|r| r.app.as_deref()),
        i64_col(&|r| r.prompt_tokens),
        i64_col(&|r| r.completion_tokens),
        i64_col(&|r| r.cached_tokens),
        i64_col(&|r| r.cache_write_tokens),
        i64_col(&|r| r.reasoning_tokens),
        Arc::new(cost.finish()),
        str_col(&|r| Some(r.cost_source.map(|c| c.as_str()).unwrap_or("unknown"))),
        f64_col(&|r| r.latency_ms),
        f64_col(&|r| r.ttft_ms),
        i32_col(&|r| r.status),
        str_col(&|r| r.error.as_deref()),
        str_col(&|r| r.finish_reason.as_deref()),
        Arc::new(streamed.finish()),
        i32_col(&|r| r.attempt),
        str_col(&|r| r.parent_id.as_deref()),
        str_col(&|r| r.policy_version.as_deref()),
        str_col(&|r| r.route.as_deref()),
        Arc::new(meta.finish()),
        Arc::new(date.finish()),
        Arc::new(hour.finish()),
    ];
    Ok(RecordBatch::try_new(
        Table::Requests.table_schema(),
        columns,
    )?)
}

/// Builds a `feedback` batch (table schema, with `date`) from finished feedback records.
pub fn feedback_to_batch(items: &[Feedback]) -> Result<RecordBatch> {
    let n = items.len();
    let mut id = StringBuilder::with_capacity(n, n * 24);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut metric = StringBuilder::with_capacity(n, n * 8);
    let mut value = Float64Builder::with_capacity(n);
    let mut source = StringBuilder::with_capacity(n, n * 4);
    let mut date = StringBuilder::with_capacity(n, n * 10);
    let mut pc = PartitionCache::new();
    for f in items {
        id.append_value(&f.request_id);
        ts.append_value(f.ts_us);
        metric.append_value(&f.metric);
        value.append_value(f.value);
        source.append_option(f.source.as_deref());
        date.append_value(pc.get(f.ts_us).0);
    }
    Ok(RecordBatch::try_new(
        Table::Feedback.table_schema(),
        vec![
            Arc::new(id.finish()),
            Arc::new(ts.finish()),
            Arc::new(metric.finish()),
            Arc::new(value.finish()),
            Arc::new(source.finish()),
            Arc::new(date.finish()),
        ],
    )?)
}

/// Reads `requests` rows back into records (file or table schema; columns found by name).
pub fn batch_to_requests(batch: &RecordBatch) -> Result<Vec<Record>> {
    use crate::error::Error;
    use crate::record::CostSource;
    use arrow::array::AsArray;
    use arrow::datatypes::{
        Decimal128Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    };

    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| Error::Invalid(format!("requests batch has no `{name}` column")))
    };
    let text = |name: &str| -> Result<&arrow::array::StringArray> {
        col(name)?
            .as_string_opt::<i32>()
            .ok_or_else(|| Error::Invalid(format!("`{name}` is not a string column")))
    };
    let opt_text =
        |a: &arrow::array::StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_string());
    let ids = text("request_id")?;
    let ts = col("ts")?.as_primitive::<TimestampMicrosecondType>();
    let model = text("model")?;
    let strs: Vec<&arrow::array::StringArray> = [
        "provider",
        "task",
        "gateway",
        "key_id",
        "user_id",
        "team_id",
        "app",
        "error",
        "finish_reason",
        "parent_id",
        "policy_version",
        "route",
        "cost_source",
    ]
    .iter()
    .map(|n| text(n))
    .collect::<Result<_>>()?;
    let ints: Vec<&arrow::array::Int64Array> = [
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
    ]
    .iter()
    .map(|n| col(n).map(|c| c.as_primitive::<Int64Type>()))
    .collect::<Result<_>>()?;
    let cost = col("cost_usd")?.as_primitive::<Decimal128Type>();
    let latency = col("latency_ms")?.as_primitive::<Float64Type>();
    let ttft = col("ttft_ms")?.as_primitive::<Float64Type>();
    let status = col("status")?.as_primitive::<Int32Type>();
    let attempt = col("attempt")?.as_primitive::<Int32Type>();
    let streamed = col("streamed")?.as_boolean();
    let oi = |a: &arrow::array::Int64Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
    let of = |a: &arrow::array::Float64Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
    let o32 = |a: &arrow::array::Int32Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        out.push(Record {
            request_id: ids.value(i).to_string(),
            ts_us: ts.value(i),
            model: model.value(i).to_string(),
            provider: opt_text(strs[0], i),
            task: opt_text(strs[1], i),
            gateway: opt_text(strs[2], i),
            key_id: opt_text(strs[3], i),
            user_id: opt_text(strs[4], i),
            team_id: opt_text(strs[5], i),
            app: opt_text(strs[6], i),
            prompt_tokens: oi(ints[0], i),
            completion_tokens: oi(ints[1], i),
            cached_tokens: oi(ints[2], i),
            cache_write_tokens: oi(ints[3], i),
            reasoning_tokens: oi(ints[4], i),
            cost_usd: (!cost.is_null(i))
                .then(|| Decimal::from_i128_with_scale(cost.value(i), COST_SCALE)),
            cost_source: opt_text(strs[12], i).as_deref().and_then(CostSource::parse),
            latency_ms: of(latency, i),
            ttft_ms: of(ttft, i),
            status: o32(status, i),
            error: opt_text(strs[7], i),
            finish_reason: opt_text(strs[8], i),
            streamed: (!streamed.is_null(i)).then(|| streamed.value(i)),
            attempt: o32(attempt, i),
            parent_id: opt_text(strs[9], i),
            policy_version: opt_text(strs[10], i),
            route: opt_text(strs[11], i),
            metadata: metadata_at(batch, i),
        });
    }
    Ok(out)
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
