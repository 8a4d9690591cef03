//! The rows of the quality rollup: one cell per request hour × (task, model) × metric ×
//! feedback day, its exact sums (fixed-point, so they add up the same in any order), and the
//! batch in `quality_hourly`'s table schema that a set of cells becomes.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Decimal128Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};

use super::HOUR_US;
use crate::error::Result;
use crate::schema::{Table, partition_of};

/// One rolled-up cell.
#[derive(Default, Clone, Copy)]
pub(super) struct Acc {
    samples: i64,
    sum: i128,
    sum_sq: i128,
    successes: i64,
    non_binary: i64,
}

impl Acc {
    pub(super) fn add(&mut self, v: f64) {
        self.samples += 1;
        self.sum += fixed(v);
        self.sum_sq += fixed(v * v);
        self.successes += i64::from(v == 1.0);
        self.non_binary += i64::from(v != 0.0 && v != 1.0);
    }
}

/// Digits after the point of the value sums: decimal sums add up the same in any order, so a
/// mean on a rounding boundary rounds the same way however the rows were flushed.
pub const SUM_SCALE: i8 = 12;

fn fixed(v: f64) -> i128 {
    (v * 10f64.powi(i32::from(SUM_SCALE))).round() as i128
}

pub(super) const DAY_US: i64 = 24 * HOUR_US;

/// (request hour, group, metric, feedback day number) → cell.
pub(super) type Cells<'a> = HashMap<(i64, u32, &'a str, i64), Acc>;

/// The rollup rows (table schema) of some cells; `groups` names the (task, model) ids.
pub(super) fn cells_batch(cells: Cells, groups: &[(String, String)]) -> Result<RecordBatch> {
    let mut rows: Vec<_> = cells.into_iter().collect();
    rows.sort_unstable_by(|a, b| {
        let (ka, kb) = (&a.0, &b.0);
        (ka.0, &groups[ka.1 as usize], ka.2, ka.3).cmp(&(kb.0, &groups[kb.1 as usize], kb.2, kb.3))
    });
    let n = rows.len();
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut strs: Vec<StringBuilder> = (0..4).map(|_| StringBuilder::new()).collect();
    let mut samples = Int64Builder::with_capacity(n);
    let decimal = || Decimal128Builder::with_capacity(n).with_precision_and_scale(38, SUM_SCALE);
    let mut sum = decimal()?;
    let mut sum_sq = decimal()?;
    let mut successes = Int64Builder::with_capacity(n);
    let mut non_binary = Int64Builder::with_capacity(n);
    let mut hour = StringBuilder::new();
    let mut date = StringBuilder::new();
    for ((h, group, metric, day), a) in &rows {
        let (task, model) = &groups[*group as usize];
        ts.append_value(*h);
        let feedback_date = partition_of(day * DAY_US).0;
        for (b, v) in strs.iter_mut().zip([
            task.as_str(),
            model.as_str(),
            metric,
            feedback_date.as_str(),
        ]) {
            b.append_value(v);
        }
        samples.append_value(a.samples);
        sum.append_value(a.sum);
        sum_sq.append_value(a.sum_sq);
        successes.append_value(a.successes);
        non_binary.append_value(a.non_binary);
        let (d, hh) = partition_of(*h);
        hour.append_value(hh);
        date.append_value(d);
    }
    let mut cols: Vec<ArrayRef> = vec![Arc::new(ts.finish())];
    cols.extend(strs.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    cols.push(Arc::new(samples.finish()));
    cols.push(Arc::new(sum.finish()));
    cols.push(Arc::new(sum_sq.finish()));
    cols.push(Arc::new(successes.finish()));
    cols.push(Arc::new(non_binary.finish()));
    cols.push(Arc::new(hour.finish()));
    cols.push(Arc::new(date.finish()));
    Ok(RecordBatch::try_new(
        Table::QualityHourly.table_schema(),
        cols,
    )?)
}
