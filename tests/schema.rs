//! Record ⇄ RecordBatch: every field survives the trip, money exactly.

use switchyard::formats::{Format, parse_body};
use switchyard::prices::PriceCatalog;
use switchyard::record::Item;
use switchyard::schema::{Table, batch_to_requests, requests_to_batch};

#[test]
fn records_round_trip_through_arrow() {
    let cat = PriceCatalog::embedded().unwrap();
    let opts = switchyard::generate::GenerateOptions {
        requests: 2_000,
        threads: 1,
        ..Default::default()
    };
    let mut body = Vec::new();
    switchyard::generate::generate(&opts, &cat, &mut body).unwrap();
    let records: Vec<_> = parse_body(&body, Format::Auto, 0)
        .items
        .into_iter()
        .filter_map(|(_, i)| match i {
            Item::Request(r) => Some(r.finish(&cat).unwrap()),
            Item::Feedback(_) => None,
        })
        .collect();
    assert_eq!(records.len(), 2_000);
    assert!(records.iter().any(|r| !r.metadata.is_empty()));
    assert!(records.iter().any(|r| r.reasoning_tokens.is_some()));
    let batch = requests_to_batch(&records).unwrap();
    assert_eq!(batch.schema(), Table::Requests.table_schema());
    assert_eq!(batch_to_requests(&batch).unwrap(), records);
}
