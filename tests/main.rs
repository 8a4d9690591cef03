//! The one integration-test binary: every test of switchyard, by area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod dashboard;
#[cfg(feature = "distributed")]
mod distributed;
mod durability;
mod examples;
mod formats_litellm;
mod formats_openai;
mod formats_otlp;
mod fuzz;
mod generate;
mod ingest_cli;
mod ingest_http;
mod loop_e2e;
mod mock_upstream;
mod money;
mod otlp_http;
mod prices;
mod proxy;
mod proxy_budget;
mod proxy_keys;
mod proxy_openai;
mod proxy_reload;
mod proxy_routing;
mod proxy_sink;
mod proxy_usage;
mod query_bounds;
mod readers;
mod recommend;
mod reports;
mod rollups;
mod s3_store;
mod schema;
mod stalls;
mod store_commit;
mod store_power;
mod store_view;
mod wal;
