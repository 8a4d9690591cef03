//! Hourly rollups of `requests`, written at flush beside the rows they summarise, so
//! dashboards and long-range reports read thousands of rows instead of millions.
//!
//! - `requests_hourly`: per hour × model × provider × task × key × team × policy version ×
//!   route: attempts, errors (status outside 2xx, or an error without a status), retries
//!   (`attempt > 1`), streamed attempts, token sums, exact cost (`unpriced` counts rows
//!   without one), latency and TTFT sums and counts, and the first and last `ts` of the
//!   group's attempts.
//! - `latency_hourly`: per hour × model × task × key, histograms of `latency_ms` and `ttft_ms`
//!   of successful (2xx) attempts in logarithmic buckets: bucket `b` holds values in
//!   `(γ^(b-1), γ^b]` with γ = 1.02, so any percentile read from the buckets (as
//!   `2·γ^b/(γ+1)`) is within 1% of a value of the exact distribution. Zero goes to
//!   [`ZERO_BUCKET`].
//!
//! Sums are additive, so several rollup files per day (one per flush) add up; the rows they
//! summarise were deduplicated before the flush, so no attempt is counted twice. A record
//! that two nodes of a bucket both stored is rolled up by both; the compaction that merges
//! its copies into one also publishes the [`negate`]d rollup of the copy it drops, in the
//! same commit, so rollups and rows agree again. Rollups are
//! partitioned by `date` only (with `hour` as a column): a month is 30 small files to read,
//! not 720.

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Builder, Float64Builder, Int32Builder, Int64Builder,
    RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{
    Decimal128Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
};

use crate::error::Result;
use crate::record::COST_SCALE;
use crate::schema::{COST_SUM_PRECISION, TOKEN_COLUMNS, Table, partition_of};

/// Growth factor between histogram buckets.
pub const GAMMA: f64 = 1.02;
/// The bucket of zero (and of negative values, which validation rejects anyway).
pub const ZERO_BUCKET: i32 = -10_000;

const HOUR_US: i64 = 3_600_000_000;

/// The histogram bucket of a latency in milliseconds.
pub fn bucket_of(v: f64) -> i32 {
    if v > 0.0 && v.is_finite() {
        (v.ln() / GAMMA.ln()).ceil().max(f64::from(ZERO_BUCKET + 1)) as i32
    } else {
        ZERO_BUCKET
    }
}

/// The value a bucket stands for: within (γ-1)/(γ+1) < 1% of every value in it.
pub fn bucket_value(b: i32) -> f64 {
    if b == ZERO_BUCKET {
        0.0
    } else {
        2.0 * GAMMA.powi(b) / (GAMMA + 1.0)
    }
}

/// Hour, model, provider, task, key, team, policy version, route.
type GroupKey<'a> = (
    i64,
    &'a str,
    Option<&'a str>,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

struct Acc {
    requests: i64,
    errors: i64,
    retries: i64,
    streamed: i64,
    tokens: [i64; 5],
    cost: i128,
    unpriced: i64,
    latency_sum: f64,
    latency_count: i64,
    ttft_sum: f64,
    ttft_count: i64,
    first_ts: i64,
    last_ts: i64,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            requests: 0,
            errors: 0,
            retries: 0,
            streamed: 0,
            tokens: [0; 5],
            cost: 0,
            unpriced: 0,
            latency_sum: 0.0,
            latency_count: 0,
            ttft_sum: 0.0,
            ttft_count: 0,
            first_ts: i64::MAX,
            last_ts: i64::MIN,
        }
    }
}

/// A column of a `requests` batch by name (file and table schema alike).
fn col<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    b.column_by_name(name).ok_or_else(|| {
        crate::error::Error::Internal(format!("requests batch without column {name}"))
    })
}

fn opt_str(a: &arrow::array::StringArray, i: usize) -> Option<&str> {
    (!a.is_null(i)).then(|| a.value(i))
}

/// The hourly and the latency rollup of some `requests` rows ([`compute`]).
pub type Rollups = (RecordBatch, RecordBatch);

/// The rollups (table schema: with `date` and `hour` partition columns) of `requests` rows.
pub fn compute(batches: &[RecordBatch]) -> Result<Rollups> {
    let mut groups: HashMap<GroupKey, Acc> = HashMap::new();
    let mut hist: HashMap<HistKey, i64> = HashMap::new();
    for b in batches {
        let ts = col(b, "ts")?.as_primitive::<TimestampMicrosecondType>();
        let model = col(b, "model")?.as_string::<i32>();
        let provider = col(b, "provider")?.as_string::<i32>();
        let task = col(b, "task")?.as_string::<i32>();
        let key = col(b, "key_id")?.as_string::<i32>();
        let team = col(b, "team_id")?.as_string::<i32>();
        let tokens: Vec<_> = TOKEN_COLUMNS
            .iter()
            .map(|n| Ok(col(b, n)?.as_primitive::<Int64Type>()))
            .collect::<Result<_>>()?;
        let cost = col(b, "cost_usd")?.as_primitive::<Decimal128Type>();
        let latency = col(b, "latency_ms")?.as_primitive::<Float64Type>();
        let ttft = col(b, "ttft_ms")?.as_primitive::<Float64Type>();
        let status = col(b, "status")?.as_primitive::<Int32Type>();
        let error = col(b, "error")?.as_string::<i32>();
        let streamed = col(b, "streamed")?.as_boolean();
        let attempt = col(b, "attempt")?.as_primitive::<Int32Type>();
        let policy_version = col(b, "policy_version")?.as_string::<i32>();
        let route = col(b, "route")?.as_string::<i32>();
        for i in 0..b.num_rows() {
            let t = ts.value(i);
            let hour = t.div_euclid(HOUR_US) * HOUR_US;
            let g = groups
                .entry((
                    hour,
                    model.value(i),
                    opt_str(provider, i),
                    task.value(i),
                    opt_str(key, i),
                    opt_str(team, i),
                    opt_str(policy_version, i),
                    opt_str(route, i),
                ))
                .or_default();
            g.requests += 1;
            g.first_ts = g.first_ts.min(t);
            g.last_ts = g.last_ts.max(t);
            let ok = if status.is_null(i) {
                error.is_null(i)
            } else {
                (200..300).contains(&status.value(i))
            };
            g.errors += i64::from(!ok);
            g.retries += i64::from(!attempt.is_null(i) && attempt.value(i) > 1);
            g.streamed += i64::from(!streamed.is_null(i) && streamed.value(i));
            for (sum, col) in g.tokens.iter_mut().zip(&tokens) {
                if !col.is_null(i) {
                    *sum += col.value(i);
                }
            }
            if cost.is_null(i) {
                g.unpriced += 1;
            } else {
                g.cost += cost.value(i);
            }
            if !latency.is_null(i) {
                g.latency_sum += latency.value(i);
                g.latency_count += 1;
            }
            if !ttft.is_null(i) {
                g.ttft_sum += ttft.value(i);
                g.ttft_count += 1;
            }
            if ok {
                for (metric, a) in [(0u8, latency), (1u8, ttft)] {
                    if !a.is_null(i) {
                        *hist
                            .entry((
                                hour,
                                model.value(i),
                                task.value(i),
                                opt_str(key, i),
                                metric,
                                bucket_of(a.value(i)),
                            ))
                            .or_default() += 1;
                    }
                }
            }
        }
    }
    Ok((hourly_batch(groups)?, latency_batch(hist)?))
}

/// The rollups of `requests` rows as day pieces: (rollup table, `date`, rows of that day).
pub fn day_pieces(batches: &[RecordBatch]) -> Result<Vec<(Table, String, RecordBatch)>> {
    day_pieces_of(vec![compute(batches)?])
}

/// [`day_pieces`] of rollups computed part by part ([`compute`] of each part), where no two
/// parts share an hour and the parts come in hour order: every group lies in one part, so
/// the parts side by side are the rollups of all their rows, in the same order.
pub fn day_pieces_of(parts: Vec<Rollups>) -> Result<Vec<(Table, String, RecordBatch)>> {
    let (hourly, latency): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    let mut out = Vec::new();
    for (t, b) in [
        (Table::RequestsHourly, hourly),
        (Table::LatencyHourly, latency),
    ] {
        let Some(first) = b.first() else { continue };
        let all = arrow::compute::concat_batches(&first.schema(), &b)?;
        out.extend(
            split_days(&all)
                .into_iter()
                .map(|(date, day)| (t, date, day)),
        );
    }
    Ok(out)
}

/// A rollup batch with every count and sum negated (timestamps, buckets and keys as they
/// are): added to the rollups, it takes out the rows it was computed from.
pub fn negate(batch: &RecordBatch) -> Result<RecordBatch> {
    use arrow::datatypes::DataType;
    let cols = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Int64 | DataType::Float64 | DataType::Decimal128(..) => {
                arrow::compute::kernels::numeric::neg(c)
            }
            _ => Ok(c.clone()),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), cols)?)
}

fn ts_builder(n: usize) -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC")
}

/// Appends the `hour` column (`HH`, stored in the files) and the `date` partition column for
/// the hours in `ts`.
fn with_partitions(mut cols: Vec<ArrayRef>, hours: &[i64]) -> Vec<ArrayRef> {
    let mut date = StringBuilder::with_capacity(hours.len(), hours.len() * 10);
    let mut hour = StringBuilder::with_capacity(hours.len(), hours.len() * 2);
    let mut last: Option<(i64, String, String)> = None;
    for &h in hours {
        if last.as_ref().is_none_or(|l| l.0 != h) {
            let (d, hh) = partition_of(h);
            last = Some((h, d, hh));
        }
        if let Some((_, d, hh)) = &last {
            date.append_value(d);
            hour.append_value(hh);
        }
    }
    cols.push(Arc::new(hour.finish()));
    cols.push(Arc::new(date.finish()));
    cols
}

/// Splits a rollup batch (rows ordered by hour) into runs of one `date` partition each.
pub fn split_days(batch: &RecordBatch) -> Vec<(String, RecordBatch)> {
    let date_col = batch.num_columns() - 1;
    let dates = batch.column(date_col).as_string::<i32>();
    let mut out = Vec::new();
    let mut start = 0;
    while start < batch.num_rows() {
        let d = dates.value(start);
        let mut end = start + 1;
        while end < batch.num_rows() && dates.value(end) == d {
            end += 1;
        }
        out.push((d.to_string(), batch.slice(start, end - start)));
        start = end;
    }
    out
}

fn hourly_batch(groups: HashMap<GroupKey, Acc>) -> Result<RecordBatch> {
    let mut rows: Vec<(GroupKey, Acc)> = groups.into_iter().collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let n = rows.len();
    let mut ts = ts_builder(n);
    let mut strs: Vec<StringBuilder> = (0..7).map(|_| StringBuilder::new()).collect();
    let mut ints: Vec<Int64Builder> = (0..9).map(|_| Int64Builder::with_capacity(n)).collect();
    let mut cost = Decimal128Builder::with_capacity(n)
        .with_precision_and_scale(COST_SUM_PRECISION, COST_SCALE as i8)?;
    let mut unpriced = Int64Builder::with_capacity(n);
    let mut lat_sum = Float64Builder::with_capacity(n);
    let mut lat_n = Int64Builder::with_capacity(n);
    let mut ttft_sum = Float64Builder::with_capacity(n);
    let mut ttft_n = Int64Builder::with_capacity(n);
    let mut first = ts_builder(n);
    let mut last = ts_builder(n);
    let mut hours = Vec::with_capacity(n);
    for ((hour, model, provider, task, key, team, version, route), a) in &rows {
        ts.append_value(*hour);
        hours.push(*hour);
        for (b, v) in strs.iter_mut().zip([
            Some(*model),
            *provider,
            Some(*task),
            *key,
            *team,
            *version,
            *route,
        ]) {
            b.append_option(v);
        }
        let vals = [
            a.requests,
            a.errors,
            a.retries,
            a.streamed,
            a.tokens[0],
            a.tokens[1],
            a.tokens[2],
            a.tokens[3],
            a.tokens[4],
        ];
        for (b, v) in ints.iter_mut().zip(vals) {
            b.append_value(v);
        }
        cost.append_value(a.cost);
        unpriced.append_value(a.unpriced);
        lat_sum.append_value(a.latency_sum);
        lat_n.append_value(a.latency_count);
        ttft_sum.append_value(a.ttft_sum);
        ttft_n.append_value(a.ttft_count);
        first.append_value(a.first_ts);
        last.append_value(a.last_ts);
    }
    let mut cols: Vec<ArrayRef> = vec![Arc::new(ts.finish())];
    cols.extend(strs.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    cols.extend(ints.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    cols.push(Arc::new(cost.finish()));
    cols.push(Arc::new(unpriced.finish()));
    cols.push(Arc::new(lat_sum.finish()));
    cols.push(Arc::new(lat_n.finish()));
    cols.push(Arc::new(ttft_sum.finish()));
    cols.push(Arc::new(ttft_n.finish()));
    cols.push(Arc::new(first.finish()));
    cols.push(Arc::new(last.finish()));
    Ok(RecordBatch::try_new(
        Table::RequestsHourly.table_schema(),
        with_partitions(cols, &hours),
    )?)
}

type HistKey<'a> = (i64, &'a str, &'a str, Option<&'a str>, u8, i32);

fn latency_batch(hist: HashMap<HistKey, i64>) -> Result<RecordBatch> {
    let mut rows: Vec<(HistKey, i64)> = hist.into_iter().collect();
    rows.sort_unstable();
    let n = rows.len();
    let mut ts = ts_builder(n);
    let mut model = StringBuilder::new();
    let mut task = StringBuilder::new();
    let mut key = StringBuilder::new();
    let mut metric = StringBuilder::new();
    let mut bucket = Int32Builder::with_capacity(n);
    let mut count = Int64Builder::with_capacity(n);
    let mut hours = Vec::with_capacity(n);
    for ((hour, m, t, k, which, b), c) in &rows {
        ts.append_value(*hour);
        hours.push(*hour);
        model.append_value(m);
        task.append_value(t);
        key.append_option(*k);
        metric.append_value(if *which == 0 { "latency_ms" } else { "ttft_ms" });
        bucket.append_value(*b);
        count.append_value(*c);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(model.finish()),
        Arc::new(task.finish()),
        Arc::new(key.finish()),
        Arc::new(metric.finish()),
        Arc::new(bucket.finish()),
        Arc::new(count.finish()),
    ];
    Ok(RecordBatch::try_new(
        Table::LatencyHourly.table_schema(),
        with_partitions(cols, &hours),
    )?)
}
