//! Every adapter fed arbitrary and mutated bytes answers with an error, never a panic:
//! 10,000 proptest cases per input shape, each through parsing and validation.

use std::path::Path;

use proptest::prelude::*;
use prost::Message;
use switchyard::formats::{self, Format};
use switchyard::prices::PriceCatalog;
use switchyard::record::Item;

const CASES: u32 = 10_000;

fn fixtures(dir: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    out.sort();
    assert!(!out.is_empty());
    out
}

fn canonical_lines() -> Vec<Vec<u8>> {
    let cat = PriceCatalog::embedded().unwrap();
    let opts = switchyard::generate::GenerateOptions {
        requests: 20,
        threads: 1,
        ..Default::default()
    };
    let mut body = Vec::new();
    switchyard::generate::generate(&opts, &cat, &mut body).unwrap();
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Parses and validates; must not panic, whatever the bytes.
fn exercise(bytes: &[u8], format: Format, cat: &PriceCatalog) {
    let parsed = formats::parse_body(bytes, format, 1_764_000_000_000_000);
    for (_, item) in parsed.items {
        match item {
            Item::Request(r) => {
                let _ = r.finish(cat);
            }
            Item::Feedback(f) => {
                let _ = f.finish();
            }
        }
    }
}

/// A mutation of a valid payload: byte flips, insertions, deletions, truncation.
fn mutate(seed: &[u8], ops: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for &(op, pos, byte) in ops {
        let p = if v.is_empty() { 0 } else { pos % v.len() };
        match op % 5 {
            0 if !v.is_empty() => v[p] = byte,
            1 => v.insert(p, byte),
            2 if !v.is_empty() => {
                v.remove(p);
            }
            3 => v.truncate(p),
            _ => {
                // Splice in JSON-ish tokens that reach deeper branches than random bytes.
                let tok: &[u8] = match byte % 8 {
                    0 => b"null",
                    1 => b"-1",
                    2 => b"1e400",
                    3 => b"\"\"",
                    4 => b"[]",
                    5 => b"{}",
                    6 => b"18446744073709551616",
                    _ => b"\"2026-13-45T99:99:99Z\"",
                };
                for (i, t) in tok.iter().enumerate() {
                    v.insert((p + i).min(v.len()), *t);
                }
            }
        }
    }
    v
}

fn ops() -> impl Strategy<Value = Vec<(u8, usize, u8)>> {
    proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

macro_rules! fuzz_json_shape {
    ($name:ident, $format:expr, $seeds:expr) => {
        #[test]
        fn $name() {
            let cat = PriceCatalog::embedded().unwrap();
            let seeds: Vec<Vec<u8>> = $seeds;
            // Arbitrary bytes.
            proptest!(config(), |(bytes in proptest::collection::vec(any::<u8>(), 0..512))| {
                exercise(&bytes, $format, &cat);
                exercise(&bytes, Format::Auto, &cat);
            });
            // Mutated valid payloads.
            proptest!(config(), |(pick in any::<usize>(), ops in ops())| {
                let seed = &seeds[pick % seeds.len()];
                let bytes = mutate(seed, &ops);
                exercise(&bytes, $format, &cat);
                exercise(&bytes, Format::Auto, &cat);
            });
        }
    };
}

fuzz_json_shape!(canonical_never_panics, Format::Canonical, canonical_lines());
fuzz_json_shape!(feedback_never_panics, Format::Feedback, canonical_lines());
fuzz_json_shape!(openai_never_panics, Format::Openai, fixtures("openai"));
fuzz_json_shape!(
    openrouter_never_panics,
    Format::Openrouter,
    fixtures("openrouter")
);
fuzz_json_shape!(litellm_never_panics, Format::Litellm, fixtures("litellm"));
fuzz_json_shape!(otlp_json_never_panics, Format::Otlp, fixtures("otlp"));

#[test]
fn otlp_protobuf_never_panics() {
    let cat = PriceCatalog::embedded().unwrap();
    let valid = crate::formats_otlp::current_as_protobuf().encode_to_vec();
    let check = |bytes: &[u8]| {
        if let Ok(items) = formats::otlp::from_protobuf(bytes) {
            for item in items {
                if let Item::Request(r) = item {
                    let _ = r.finish(&cat);
                }
            }
        }
    };
    proptest!(config(), |(bytes in proptest::collection::vec(any::<u8>(), 0..1024))| {
        check(&bytes);
    });
    proptest!(config(), |(ops in ops())| {
        check(&mutate(&valid, &ops));
    });
    // The unmutated export still decodes: the mutations start from a meaningful input.
    assert!(!formats::otlp::from_protobuf(&valid).unwrap().is_empty());
}

#[test]
fn mutated_inputs_are_reported_not_silently_dropped() {
    // A record with a broken field is rejected with a reason, not accepted and not lost.
    let p = formats::parse_body(
        br#"{"request_id":"a","ts":"2026-11-20T10:00:00Z","model":"gpt-4o","prompt_tokens":"many"}"#,
        Format::Auto,
        0,
    );
    assert!(p.items.is_empty());
    assert_eq!(p.rejected.len(), 1);
    assert!(
        p.rejected[0].1.contains("prompt_tokens"),
        "{}",
        p.rejected[0].1
    );
}

#[test]
fn canonical_fast_path_agrees_with_the_general_path() {
    let seeds = canonical_lines();
    let general = |bytes: &[u8]| -> Option<switchyard::record::Record> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        match formats::canonical::record(v.as_object()?.clone()).ok()? {
            Item::Request(r) => Some(*r),
            Item::Feedback(_) => None,
        }
    };
    let general_fb = |bytes: &[u8]| -> Option<switchyard::record::Feedback> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        match formats::canonical::feedback(v.as_object()?.clone(), 7).ok()? {
            Item::Feedback(f) => Some(f),
            Item::Request(_) => None,
        }
    };
    let mut fast_hits = 0;
    let mut fast_fb = 0;
    for s in &seeds {
        if let Some(f) = formats::canonical::fast_feedback(s, 7) {
            fast_fb += 1;
            assert_eq!(
                Some(f.into_owned()),
                general_fb(s),
                "{}",
                String::from_utf8_lossy(s)
            );
        }
        if let Some(f) = formats::canonical::fast_record(s) {
            fast_hits += 1;
            assert_eq!(
                Some(f.into_owned()),
                general(s),
                "{}",
                String::from_utf8_lossy(s)
            );
        }
    }
    assert!(fast_hits > 10, "the fast path must take generated records");
    assert!(fast_fb > 3, "the fast path must take generated feedback");
    proptest!(config(), |(pick in any::<usize>(), ops in ops())| {
        let bytes = mutate(&seeds[pick % seeds.len()], &ops);
        if let Some(f) = formats::canonical::fast_record(&bytes) {
            // Whatever the fast path accepts, the general path reads the same way.
            prop_assert_eq!(Some(f.into_owned()), general(&bytes));
        }
        if let Some(f) = formats::canonical::fast_feedback(&bytes, 7) {
            prop_assert_eq!(Some(f.into_owned()), general_fb(&bytes));
        }
    });
}
