//! The one bound on money: every cost, reported by the source or priced from the catalog, is
//! at most `record::max_cost_usd()` (below what the `DECIMAL(18, 12)` column holds); a larger
//! one rejects the record with the field and the limit in the error.

use std::collections::BTreeMap;

use switchyard::prices::{CatalogFile, ModelPrice, PriceCatalog};
use switchyard::record::{CostSource, Record, max_cost_usd};

use crate::common::{Server, client, d, us};

fn request(cost: Option<&str>, prompt: i64) -> Record {
    Record {
        request_id: "r-1".into(),
        ts_us: us("2026-11-20T10:00:00Z"),
        model: "absurd-model".into(),
        prompt_tokens: Some(prompt),
        completion_tokens: Some(0),
        cost_usd: cost.map(d),
        ..Default::default()
    }
}

/// A catalog whose one model costs `per_million` USD per million input tokens.
fn catalog(per_million: &str) -> PriceCatalog {
    let price: ModelPrice = serde_json::from_value(serde_json::json!({
        "provider": "acme",
        "input": per_million,
        "output": "0",
    }))
    .unwrap();
    PriceCatalog::new(CatalogFile {
        models: BTreeMap::from([("absurd-model".to_string(), price)]),
        aliases: BTreeMap::new(),
    })
}

#[test]
fn the_bound_fits_the_stored_decimal() {
    // DECIMAL(18, 12) holds up to 999 999.999999999999.
    assert!(max_cost_usd() < d("999999.999999999999"));
    assert!(max_cost_usd() >= d("999999"));
}

#[test]
fn a_reported_cost_of_a_million_is_rejected_with_field_and_limit() {
    let cat = PriceCatalog::default();
    let err = request(Some("1000000"), 10).finish(&cat).unwrap_err();
    assert!(err.contains("`cost_usd`"), "{err}");
    assert!(err.contains(&max_cost_usd().to_string()), "{err}");
    // Rounding to the stored scale cannot carry a cost over the limit either.
    let err = request(Some("999999.9999999999999"), 10)
        .finish(&cat)
        .unwrap_err();
    assert!(err.contains("`cost_usd`"), "{err}");
    let ok = request(Some("999999.999999"), 10).finish(&cat).unwrap();
    assert_eq!(ok.cost_usd, Some(max_cost_usd()));
    assert_eq!(ok.cost_source, Some(CostSource::Reported));
}

#[test]
fn an_absurd_catalog_priced_cost_is_rejected_with_field_and_limit() {
    // 10 billion tokens at 1 000 USD per million: 10 million USD.
    let err = request(None, 10_000_000_000)
        .finish(&catalog("1000"))
        .unwrap_err();
    assert!(err.contains("`cost_usd` (catalog)"), "{err}");
    assert!(err.contains(&max_cost_usd().to_string()), "{err}");
    // Past what `Decimal` holds: rejected the same way, never a panic or a wrapped value.
    let err = request(None, 100_000_000_000)
        .finish(&catalog("79228162514264337593543950335"))
        .unwrap_err();
    assert!(err.contains("`cost_usd` (catalog)"), "{err}");
    // A sane catalog price passes and is marked as such.
    let ok = request(None, 1_000_000).finish(&catalog("2.5")).unwrap();
    assert_eq!(ok.cost_usd, Some(d("2.5")));
    assert_eq!(ok.cost_source, Some(CostSource::Catalog));
}

#[tokio::test]
async fn ingest_rejects_a_cost_past_the_bound_and_stores_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    let line = |id: &str, cost: f64| {
        serde_json::json!({
            "request_id": id, "ts": "2026-11-20T10:15:00Z", "model": "gpt-4o",
            "prompt_tokens": 10, "completion_tokens": 1, "cost_usd": cost,
        })
        .to_string()
    };
    let body = [line("ok", 0.5), line("huge", 1_000_000.0)].join("\n");
    let r: serde_json::Value = client()
        .post(s.url("/v1/logs"))
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["accepted"], 1, "{r}");
    let err = r["rejected"][0]["error"].as_str().unwrap();
    assert_eq!(r["rejected"][0]["index"], 1);
    assert!(
        err.contains("`cost_usd`") && err.contains("999999.999999"),
        "{err}"
    );
}
