//! Dedupe memory over a long history: the dedupe index fed the way the store feeds it — every
//! hour of `BENCH_DEDUPE_DAYS` days (default 90) at `BENCH_DEDUPE_PER_DAY` requests a day
//! (default 1,000,000), 0.3 feedback records per request, 1% of records re-sent within the
//! last day and 1 in 100,000 arriving with a `ts` anywhere in the history (its partition then
//! loaded back from storage, as after eviction), each hour flushed. Keys stand for the 64-bit
//! hashes the store keeps. Printed: the index's peak and final bytes and keys, the process's peak RSS,
//! the insert rate, and, side by side, what the previous design (hash sets: request keys up
//! to 8M, feedback keys never dropped) holds for the same history, at its bytes per key
//! measured on one day of keys.
//!
//! `cargo bench --bench dedupe` (env `BENCH_DEDUPE_DAYS`, `BENCH_DEDUPE_PER_DAY`,
//! `BENCH_DEDUPE_BUDGET` keys, default the store's).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use switchyard::store::StoreConfig;
use switchyard::store::dedupe::{Bucket, Dedupe, KeySet};

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

/// A well-mixed 64-bit key (splitmix64), standing for a request id's hash.
fn key(a: i64, i: u64) -> u64 {
    let mut z =
        (a as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_add(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The request keys of one hour of the history (what its Parquet files hold).
fn hour_keys(hour: i64, n: u64) -> Vec<u64> {
    (0..n).map(|i| key(hour, i)).collect()
}

fn day_feedback_keys(day: i64, n: u64) -> Vec<u64> {
    (0..n).map(|i| key(-day, i)).collect()
}

/// Makes sure a partition is in memory, loading it "from storage" when it is not.
fn ensure(dd: &mut Dedupe, b: Bucket, load: impl FnOnce() -> Vec<u64>) {
    if let Some((bucket, done)) = dd.missing([b]).load.pop() {
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
                // 1%: a re-send from the last day; 1 in 100,000: from anywhere in the history.
                if i % 100 == 0 {
                    let span = if rng.random_range(0..1000) == 0 {
                        hour - start_hour
                    } else {
                        (hour - start_hour).min(23)
                    };
                    let back = rng.random_range(0..=span);
                    let old = Bucket::RequestHour(hour - back);
                    let loaded = !dd.ready([old]);
                    ensure(&mut dd, old, || hour_keys(hour - back, per_hour));
                    late_loads += u64::from(loaded);
                    let id = rng.random_range(0..per_hour);
                    if back == 0 && id as usize > i {
                        continue; // not sent yet
                    }
                    let k = key(hour - back, id);
                    assert_eq!(dd.insert(old, k), Some(false), "a duplicate was missed");
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

    // The previous design: hash sets, request keys up to 8M, feedback keys never dropped.
    // Its bytes per key measured on one day of keys.
    let mut all = KeySet::default();
    let day = start_hour / 24;
    for h in 0..24 {
        all.extend(hour_keys(day * 24 + h, per_hour));
    }
    all.extend(day_feedback_keys(day, fb_per_day));
    let per_key = (all.capacity() * 9) as f64 / all.len() as f64;
    let one_day = per_key * (per_day + fb_per_day) as f64;
    let previous =
        per_key * ((per_day * days as u64).min(8_000_000) + fb_per_day * days as u64) as f64;

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
        "  previous design (hash sets, 8M request keys, feedback never dropped): {:.0} MB for the same history ({:.1} bytes a key, {:.1} MB a day unbounded); ratio {:.1}x",
        mb(previous),
        per_key,
        mb(one_day),
        previous / peak_bytes as f64
    );
}
