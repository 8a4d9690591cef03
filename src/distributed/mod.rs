//! Distributed SQL on Apache DataFusion Ballista (cargo feature `distributed`): the same
//! tables and the same `queries/*.sql` as a single node, planned by a Ballista scheduler and
//! run by its executors, which read the data dir (a bucket, or a directory every node mounts)
//! directly.
//!
//! - [`nodes`]: the `scheduler` and `executor` processes.
//! - [`Cluster`]: `query --cluster df://ADDR` / `report --cluster df://ADDR`: a client session
//!   on the scheduler with `requests`, `feedback`, the rollups and `prices` registered.
//!
//! Every process reads the data dir through the committed view (`store::view`), as a single
//! node does, so a listing shows each commit all or nothing. Rows still in a node's write
//! buffer are not in the data dir yet, so the cluster does not see them.

pub mod nodes;

use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::{SessionConfigExt as _, SessionContextExt as _};
use datafusion::common::ScalarValue;
use datafusion::datasource::ViewTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::{Expr, SQLOptions, SessionConfig, SessionContext, col, lit};

use crate::error::{Error, Result};
use crate::prices::PriceCatalog;
use crate::query::QueryResult;
use crate::schema::Table;
use crate::store::Location;

/// A runtime that reads the data dir `loc` through its committed view.
pub fn runtime(loc: &Location) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    let runtime = RuntimeEnvBuilder::new().build_arc()?;
    runtime.register_object_store(&loc.store_url, loc.committed());
    Ok(runtime)
}

fn ballista_err(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("Ballista cluster: {e}"))
}

/// A session on a Ballista cluster with the store's tables registered.
pub struct Cluster {
    ctx: SessionContext,
    timeout: Duration,
}

impl Cluster {
    /// Connects to the scheduler at `url` (`df://HOST:PORT`) for the data dir `loc`; each
    /// query is given `timeout`.
    pub async fn connect(
        url: &str,
        loc: &Location,
        prices: &PriceCatalog,
        timeout: Duration,
    ) -> Result<Cluster> {
        if !url.starts_with("df://") {
            return Err(Error::Invalid(format!(
                "cluster {url:?}: give the scheduler as df://HOST:PORT"
            )));
        }
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(SessionConfig::new_with_ballista())
            .with_runtime_env(runtime(loc)?)
            .build();
        let ctx = SessionContext::remote_with_state(url, state)
            .await
            .map_err(ballista_err)?;
        for table in Table::STORED {
            // Internal: the rollup's bookkeeping, not a table of its own.
            if table != Table::FeedbackUnmatched {
                ctx.register_table(
                    table.name(),
                    Arc::new(crate::query::listing_table(loc, table)?),
                )?;
            }
        }
        ctx.register_table(
            "prices",
            Arc::new(ViewTable::new(prices_plan(prices)?, None)),
        )?;
        Ok(Cluster { ctx, timeout })
    }

    /// Runs one read-only statement on the cluster. DDL, DML, `COPY` and `SET` are rejected.
    pub async fn sql(&self, sql: &str) -> Result<QueryResult> {
        let opts = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let run = async {
            let df = self
                .ctx
                .sql_with_options(sql, opts)
                .await
                .map_err(crate::query::classify)?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            let batches = df.collect().await.map_err(crate::query::classify)?;
            Ok::<_, Error>(QueryResult { schema, batches })
        };
        tokio::time::timeout(self.timeout, run)
            .await
            .unwrap_or_else(|_| {
                Err(Error::QueryLimit(format!(
                    "query exceeded its time limit of {} ms",
                    self.timeout.as_millis()
                )))
            })
    }
}

/// The price catalog as a plan of literal rows, which travels to the cluster with the query
/// (an in-memory table would not).
fn prices_plan(cat: &PriceCatalog) -> Result<LogicalPlan> {
    let batch = crate::query::prices_batch(cat)?;
    let mut rows: Vec<Vec<Expr>> = Vec::with_capacity(batch.num_rows());
    for r in 0..batch.num_rows() {
        let row = batch
            .columns()
            .iter()
            .map(|c| ScalarValue::try_from_array(c, r).map(lit))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(Error::Config("the price catalog is empty".into()));
    }
    let named: Vec<Expr> = batch
        .schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| col(format!("column{}", i + 1)).alias(f.name()))
        .collect();
    Ok(LogicalPlanBuilder::values(rows)?.project(named)?.build()?)
}
