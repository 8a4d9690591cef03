//! The rows of the quality rollup: one cell per request hour × (task, model) × metric ×
//! feedback day, its exact sums (fixed-point, so they add up the same in any order), and the
//! batch in `quality_hourly`'s table schema that a set of cells becomes.

use foldhash::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Decimal128Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};

use super::HOUR_US;
use crate::error::Result;
use crate::schema::{Table, partition_of};

/// What a cell's feedback is grouped by besides its hour, metric and day: its request's task,
/// model and policy version.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Group {
    pub task: String,
    pub model: String,
    pub policy_version: Option<String>,
}

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

/// The rollup rows (table schema) of some cells; `groups` names the group ids.
pub(super) fn cells_batch(cells: Cells, groups: &[Group]) -> Result<RecordBatch> {
    let mut rows: Vec<_> = cells.into_iter().collect();
    rows.sort_unstable_by(|a, b| {
        let (ka, kb) = (&a.0, &b.0);
        (ka.0, &groups[ka.1 as usize], ka.2, ka.3).cmp(&(kb.0, &groups[kb.1 as usize], kb.2, kb.3))
    });
    let n = rows.len();
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let [
        mut task,
        mut model,
        mut policy_version,
        mut metric,
        mut feedback_date,
    ] = std::array::from_fn(|_| StringBuilder::new());
    let mut samples = Int64Builder::with_capacity(n);
    let decimal = || Decimal128Builder::with_capacity(n).with_precision_and_scale(38, SUM_SCALE);
    let mut sum = decimal()?;
    let mut sum_sq = decimal()?;
    let mut successes = Int64Builder::with_capacity(n);
    let mut non_binary = Int64Builder::with_capacity(n);
    let mut hour = StringBuilder::new();
    let mut date = StringBuilder::new();
    for ((h, group, m, day), a) in &rows {
        let g = &groups[*group as usize];
        ts.append_value(*h);
        task.append_value(&g.task);
        model.append_value(&g.model);
        policy_version.append_option(g.policy_version.as_deref());
        metric.append_value(m);
        feedback_date.append_value(partition_of(day * DAY_US).0);
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
    for mut b in [task, model, policy_version, metric, feedback_date] {
        cols.push(Arc::new(b.finish()));
    }
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
