//! Dedupe memory over a long history: the dedupe index fed the way the store feeds it — every
//! hour of `BENCH_DEDUPE_DAYS` days (default 90) at `BENCH_DEDUPE_PER_DAY` requests a day
//! (default 1,000,000), 0.3 feedback records per request, 1% of records re-sent or arriving
//! late with an old `ts` (its partition loaded back from storage, as after eviction), each
//! hour flushed. Printed: the index's peak and final bytes and keys, the process's peak RSS,
//! the insert rate, and, side by side, what the previous design (every key in one hash set,
//! never dropped) holds for the same history, measured on its first day and scaled.
//!
//! `cargo bench --bench dedupe` (env `BENCH_DEDUPE_DAYS`, `BENCH_DEDUPE_PER_DAY`,
//! `BENCH_DEDUPE_BUDGET` keys, default the store's).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use switchyard::store::StoreConfig;
use switchyard::store::dedupe::{Bucket, Dedupe, KeySet, feedback_key, request_key};

fn env_n(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The request ids of one hour of the history (what its Parquet files hold).
fn hour_keys(hour: i64, n: u64) -> Vec<u64> {
    (0..n)
        .map(|i| request_key(&format!("req-{hour}-{i}")))
        .collect()
}

fn day_feedback_keys(day: i64, n: u64) -> Vec<u64> {
    (0..n)
        .map(|i| feedback_key(&format!("req-{day}-{i}"), "quality", Some("judge")))
        .collect()
}

/// Makes sure a partition is in memory, loading it "from storage" when it is not.
fn ensure(dd: &mut Dedupe, b: Bucket, load: impl FnOnce() -> Vec<u64>) {
    for (bucket, done) in dd.missing([b]).load {
        dd.install(bucket, load(), done);
    }
}

fn main() {
    let days = env_n("BENCH_DEDUPE_DAYS", 90) as i64;
    let per_day = env_n("BENCH_DEDUPE_PER_DAY", 1_000_000);
    let budget = env_n(
        "BENCH_DEDUPE_BUDGET",
        StoreConfig::default().dedupe_budget as u64,
    );
    let per_hour = per_day / 24;
    let fb_per_day = per_day * 3 / 10;
    let mut rng = rand_pcg::Pcg64::seed_from_u64(7);
    let mut dd = Dedupe::new(budget as usize);
    let (mut peak_bytes, mut peak_keys) = (0usize, 0usize);
    let (mut inserted, mut dups, mut late_loads) = (0u64, 0u64, 0u64);
    let start_hour = 480_000i64;
    let started = Instant::now();
    for d in 0..days {
        let day = start_hour / 24 + d;
        let fb = Bucket::FeedbackDay(day);
        ensure(&mut dd, fb, Vec::new);
        let fb_keys = day_feedback_keys(day, fb_per_day);
        for h in 0..24 {
            let hour = day * 24 + h;
            let bucket = Bucket::RequestHour(hour);
            ensure(&mut dd, bucket, Vec::new);
            let mut flushed: HashMap<Bucket, usize> = HashMap::new();
            for (i, k) in hour_keys(hour, per_hour).into_iter().enumerate() {
                assert_eq!(dd.insert(bucket, k), Some(true));
                inserted += 1;
                // 1%: a re-send, or a late record of an older hour.
                if i % 100 == 0 {
                    let back = rng.random_range(0..=(hour - start_hour));
                    let old = Bucket::RequestHour(hour - back);
                    let loaded = !dd.ready([old]);
                    ensure(&mut dd, old, || hour_keys(hour - back, per_hour));
                    late_loads += u64::from(loaded);
                    let id = rng.random_range(0..per_hour);
                    let key = request_key(&format!("req-{}-{id}", hour - back));
                    if back == 0 && id as usize > i {
                        continue; // not sent yet
                    }
                    assert_eq!(dd.insert(old, key), Some(false), "a duplicate was missed");
                    dups += 1;
                }
            }
            *flushed.entry(bucket).or_default() += per_hour as usize;
            let fb_hour = &fb_keys
                [(h as usize * fb_keys.len() / 24)..((h as usize + 1) * fb_keys.len() / 24)];
            ensure(&mut dd, fb, || day_feedback_keys(day, fb_per_day));
            let mut fb_new = 0;
            for k in fb_hour {
                if dd.insert(fb, *k) == Some(true) {
                    fb_new += 1;
                }
            }
            inserted += fb_hour.len() as u64;
            *flushed.entry(fb).or_default() += fb_new;
            dd.mark_flushed(&flushed);
            peak_bytes = peak_bytes.max(dd.heap_bytes());
            peak_keys = peak_keys.max(dd.len());
        }
    }
    let secs = started.elapsed().as_secs_f64();

    // The previous design: every key in one hash set for good. One day of it, measured.
    let mut all = KeySet::default();
    let day = start_hour / 24;
    for h in 0..24 {
        all.extend(hour_keys(day * 24 + h, per_hour));
    }
    all.extend(day_feedback_keys(day, fb_per_day));
    let one_day = all.capacity() * 9 + all.capacity() / 8;
    let unbounded = one_day as f64 * days as f64;

    let mb = |b: f64| b / (1 << 20) as f64;
    println!(
        "dedupe over {days} days at {per_day} requests/day (+{fb_per_day} feedback/day), budget {budget} keys"
    );
    println!(
        "  index: peak {:.1} MB ({peak_keys} keys), final {:.1} MB ({} keys); process peak RSS {:.0} MB",
        mb(peak_bytes as f64),
        mb(dd.heap_bytes() as f64),
        dd.len(),
        peak_rss_mb()
    );
    println!(
        "  {:.1} M keys checked in {secs:.1} s ({:.2} M/s), {dups} re-sent records caught, {late_loads} partitions loaded back",
        inserted as f64 / 1e6,
        inserted as f64 / 1e6 / secs
    );
    println!(
        "  previous design (one set, never dropped): {:.0} MB for the same history ({:.1} MB a day); ratio {:.1}x",
        mb(unbounded),
        mb(one_day as f64),
        unbounded / peak_bytes as f64
    );
}
