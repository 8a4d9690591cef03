//! switchyard: usage analytics and cost optimisation for LLM traffic.
//!
//! The data's path:
//!
//! ```text
//! gateway logs ─┐   formats::*        record::finish      store::Store
//! (HTTP, files) ├─▶ detect + adapt ─▶ validate + price ─▶ dedupe ─▶ WAL (fsync, group commit)
//! proxy ────────┘                     (prices)                       │
//!                                                                    ▼
//!                      query::* (DataFusion) ◀── Parquet (Hive layout) + unflushed buffer
//!                      query::reports (queries/*.sql)     + hourly rollups (store::rollup)
//!                              │
//!                              ▼
//!                      recommend (evidence ─▶ shrink ─▶ optimise ─▶ policy file)
//! ```
//!
//! `http` serves the ingest and query API, the reports and the dashboards over the same
//! [`store::Store`] the CLI uses.

pub mod cli;
pub mod commands;
pub mod config;
#[cfg(feature = "distributed")]
pub mod distributed;
pub mod error;
pub mod formats;
pub mod generate;
pub mod http;
pub mod metrics;
pub mod mock;
pub mod prices;
pub mod proxy;
pub mod query;
pub mod recommend;
pub mod record;
pub mod schema;
pub mod store;

pub use error::{Error, Result};
pub use query::reports;
