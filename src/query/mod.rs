//! SQL over the store with DataFusion: the `requests`, `feedback` and `prices` tables, read-only,
//! bounded in time and memory.
//!
//! `requests` and `feedback` are views over two parts: the Parquet files (a listing table with
//! Hive partition columns, pruned by `date`/`hour` and file statistics) and the rows still in
//! the write buffer. Both parts are fixed while the buffer's read lock is held during planning,
//! so a concurrent flush never shows a row twice or not at all.

pub mod output;
pub mod reports;
mod views;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::MemTable;
use datafusion::common::runtime::SpawnedTask;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};

use crate::error::{Error, Result};
use crate::prices::PriceCatalog;
use crate::schema::Table;
use crate::store::Store;
use crate::store::buffer::ReadView;

/// Bounds on each query.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    pub memory_limit_bytes: usize,
    pub timeout: Duration,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            memory_limit_bytes: 512 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A query's answer.
#[derive(Debug)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// Runs SQL over a store.
#[derive(Clone)]
pub struct QueryEngine {
    store: Store,
    runtime: Arc<RuntimeEnv>,
    cfg: QueryConfig,
    metrics: Arc<QueryMetrics>,
    /// The store generation the cached listings were taken at.
    listed_at: Arc<AtomicU64>,
}

/// Bytes of file listings kept between queries (about 200 bytes a file).
const LIST_CACHE_BYTES: usize = 32 << 20;
/// Bytes of Parquet footers and page indexes kept between queries.
const METADATA_CACHE_BYTES: usize = 512 << 20;

/// Counters of the queries an engine ran.
#[derive(Debug, Default)]
pub struct QueryMetrics {
    /// Wall time of every query, failed or not.
    pub seconds: crate::metrics::Histogram,
    pub rejected: std::sync::atomic::AtomicU64,
    pub limited: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
    /// Queries executing now: a query stops when its caller goes away (a client that
    /// disconnected), not only at its time bound.
    pub running: std::sync::atomic::AtomicU64,
}

/// Counts a query in [`QueryMetrics::running`] while it is alive, however it ends.
struct Running(Arc<QueryMetrics>);

impl Running {
    fn start(metrics: &Arc<QueryMetrics>) -> Self {
        metrics.running.fetch_add(1, Ordering::Relaxed);
        Running(metrics.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

impl QueryEngine {
    pub fn new(store: Store, cfg: QueryConfig) -> Result<Self> {
        // Listings are cached only where every commit is seen (`Store::generation`): the
        // cache is dropped whenever one happened, so new files show up in the next query.
        // Footers and file statistics are cached by path, size and time: files never change
        // in place (a new file gets a new name).
        let list_limit = if store.generation().is_some() {
            LIST_CACHE_BYTES
        } else {
            0
        };
        let cache = CacheManagerConfig::default()
            .with_list_files_cache_limit(list_limit)
            .with_metadata_cache_limit(METADATA_CACHE_BYTES);
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(cfg.memory_limit_bytes)))
            .with_cache_manager(cache)
            .build_arc()?;
        let loc = store.location();
        // Reads go through the committed view: a flush or compaction is seen all or nothing.
        runtime.register_object_store(&loc.store_url, loc.committed());
        Ok(QueryEngine {
            store,
            runtime,
            cfg,
            metrics: Arc::default(),
            listed_at: Arc::new(AtomicU64::new(u64::MAX)),
        })
    }

    pub fn metrics(&self) -> &QueryMetrics {
        &self.metrics
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Drops cached listings when a commit happened since they were taken. Called with the
    /// commit lock held for reading, so no flush commits between this and the planning.
    fn refresh_listings(&self) {
        let Some(cache) = self.runtime.cache_manager.get_list_files_cache() else {
            return;
        };
        let Some(now) = self.store.generation() else {
            cache.clear();
            return;
        };
        if self.listed_at.swap(now, Ordering::AcqRel) != now {
            cache.clear();
        }
    }

    fn context(&self) -> SessionContext {
        // DataFusion's own `DATAFUSION_*` environment variables tune the engine; ours are
        // defaults under them.
        let mut config = SessionConfig::from_env()
            .unwrap_or_default()
            .with_information_schema(true);
        for (key, value) in [
            ("datafusion.execution.parquet.pushdown_filters", true),
            ("datafusion.execution.parquet.reorder_filters", true),
        ] {
            let env = key.replace('.', "_").to_ascii_uppercase();
            if std::env::var_os(env).is_none() {
                config = config.set_bool(key, value);
            }
        }
        SessionContext::new_with_config_rt(config, self.runtime.clone())
    }

    fn listing_table(&self, table: Table) -> Result<ListingTable> {
        let schema = views::read_file_schema(table);
        Ok(listing_table_as(self.store.location(), table, schema)?
            .with_cache(self.runtime.cache_manager.get_file_statistic_cache()))
    }

    /// Registers `table` as its files, plus the buffered rows when there are any.
    fn register(&self, ctx: &SessionContext, table: Table, buffer: &ReadView<'_>) -> Result<()> {
        use datafusion::catalog::TableProvider;
        use datafusion::datasource::{ViewTable, provider_as_source};
        use datafusion::logical_expr::LogicalPlanBuilder;
        let name = table.name();
        let stored: Arc<dyn TableProvider> = Arc::new(self.listing_table(table)?);
        let requests = buffer.batches(Table::Requests);
        let feedback = buffer.batches(Table::Feedback);
        let rollup = |table| -> Arc<dyn TableProvider> {
            Arc::new(BufferedRollup {
                table,
                store: self.store.clone(),
                requests: requests.to_vec(),
                feedback: feedback.to_vec(),
            })
        };
        let buffered: Option<Arc<dyn TableProvider>> = match table {
            Table::RequestsHourly | Table::LatencyHourly => {
                (!requests.is_empty()).then(|| rollup(table))
            }
            Table::QualityHourly => {
                (!requests.is_empty() || !feedback.is_empty()).then(|| rollup(table))
            }
            _ if buffer.batches(table).is_empty() => None,
            _ => Some(Arc::new(MemTable::try_new(
                views::read_schema(table),
                vec![
                    buffer
                        .batches(table)
                        .iter()
                        .map(|b| views::to_read(table, b))
                        .collect::<Result<_>>()?,
                ],
            )?)),
        };
        // `NAME_stored` and `NAME_buffered` name the two parts on their own.
        ctx.register_table(format!("{name}_stored"), stored.clone())?;
        let Some(buffered) = buffered else {
            ctx.register_table(
                format!("{name}_buffered"),
                Arc::new(MemTable::try_new(views::read_schema(table), vec![vec![]])?),
            )?;
            // Nothing unflushed: the files alone, with their statistics and ordering intact.
            ctx.register_table(name, stored)?;
            return Ok(());
        };
        ctx.register_table(format!("{name}_buffered"), buffered.clone())?;
        let plan =
            LogicalPlanBuilder::scan(format!("{name}_stored"), provider_as_source(stored), None)?
                .union(
                    LogicalPlanBuilder::scan(
                        format!("{name}_buffered"),
                        provider_as_source(buffered),
                        None,
                    )?
                    .build()?,
                )?
                .build()?;
        ctx.register_table(name, Arc::new(ViewTable::new(plan, None)))?;
        Ok(())
    }

    /// Runs one read-only statement. DDL, DML, `COPY` and `SET` are rejected.
    pub async fn sql(&self, sql: &str) -> Result<QueryResult> {
        use std::sync::atomic::Ordering::Relaxed;
        let started = std::time::Instant::now();
        let r = replanning(|attempt| async move {
            if attempt > 0 {
                // The listing that named the file may be a cached one: list afresh.
                self.listed_at.store(u64::MAX, Ordering::Release);
            }
            self.run(sql).await
        })
        .await;
        let m = &self.metrics;
        m.seconds.observe(started.elapsed());
        match &r {
            Err(Error::QueryRejected(_)) => m.rejected.fetch_add(1, Relaxed),
            Err(Error::QueryLimit(_)) => m.limited.fetch_add(1, Relaxed),
            Err(_) => m.failed.fetch_add(1, Relaxed),
            Ok(_) => 0,
        };
        r
    }

    async fn run(&self, sql: &str) -> Result<QueryResult> {
        let ctx = self.context();
        let plan = {
            let buffer = self.store.read_buffer().await;
            self.refresh_listings();
            for table in Table::STORED {
                // Internal: the rollup's bookkeeping, not a table of its own.
                if table != Table::FeedbackUnmatched {
                    self.register(&ctx, table, &buffer)?;
                }
            }
            ctx.register_batch("prices", prices_batch(&self.store.prices())?)?;
            let opts = SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false);
            let df = ctx.sql_with_options(sql, opts).await.map_err(classify)?;
            df.create_physical_plan().await.map_err(classify)?
        };
        let schema = views::answer_schema(&plan.schema());
        let task = ctx.task_ctx();
        // On its own task: the answer comes back at the deadline even while an operator is
        // busy inside one poll. The task is aborted when its handle is dropped (at the
        // deadline, or when the caller's future is: an HTTP client that went away), and the
        // query stops at its next yield.
        let running = Running::start(&self.metrics);
        let run = SpawnedTask::spawn(async move {
            let _running = running;
            datafusion::physical_plan::collect(plan, task).await
        });
        match tokio::time::timeout(self.cfg.timeout, run).await {
            Ok(Ok(Ok(batches))) => Ok(QueryResult {
                batches: views::to_answer(batches, &schema)?,
                schema,
            }),
            Ok(Ok(Err(e))) => Err(classify(e)),
            Ok(Err(e)) => Err(Error::Internal(format!("query task: {e}"))),
            Err(_) => Err(Error::QueryLimit(format!(
                "query exceeded its time limit of {} ms",
                self.cfg.timeout.as_millis()
            ))),
        }
    }
}

/// The unflushed part of a rollup table, computed from the buffered rows fixed at planning
/// when a query scans it (most queries never read the rollups, so they pay nothing for them):
/// `requests_hourly` and `latency_hourly` roll up the buffered requests, `quality_hourly`
/// pairs buffered feedback and requests with each other and with stored rows.
struct BufferedRollup {
    table: Table,
    store: Store,
    requests: Vec<RecordBatch>,
    feedback: Vec<RecordBatch>,
}

impl std::fmt::Debug for BufferedRollup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferedRollup")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl datafusion::catalog::TableProvider for BufferedRollup {
    fn schema(&self) -> SchemaRef {
        views::read_schema(self.table)
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::prelude::Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let ext = |e: Error| datafusion::error::DataFusionError::External(Box::new(e));
        let batch = match self.table {
            Table::QualityHourly => {
                crate::store::quality::buffered(&self.store, &self.requests, &self.feedback)
                    .await
                    .map_err(ext)?
            }
            _ => {
                let (hourly, latency) =
                    crate::store::rollup::compute(&self.requests).map_err(ext)?;
                if self.table == Table::LatencyHourly {
                    latency
                } else {
                    hourly
                }
            }
        };
        let batch = views::to_read(self.table, &batch).map_err(ext)?;
        MemTable::try_new(self.schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// Sorts DataFusion errors into the user's (bad SQL, writes) and the limits'.
/// How many times a query is planned again when a file it listed moved under it.
/// The Parquet files of `table` in the data dir `loc` as a listing table (Hive partition
/// columns, `*.parquet` only).
pub fn listing_table(loc: &crate::store::Location, table: Table) -> Result<ListingTable> {
    listing_table_as(loc, table, table.file_schema())
}

/// [`listing_table`] with the file columns typed as in `file_schema` (the stored types, or
/// the same columns read as views: see [`read_schema`]).
fn listing_table_as(
    loc: &crate::store::Location,
    table: Table,
    file_schema: SchemaRef,
) -> Result<ListingTable> {
    let url = ListingTableUrl::parse(loc.table_url(table.name()))?;
    let parts = table
        .partition_columns()
        .iter()
        .map(|c| (c.to_string(), DataType::Utf8))
        .collect();
    let opts = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(parts);
    let cfg = ListingTableConfig::new(url)
        .with_listing_options(opts)
        .with_schema(file_schema);
    Ok(ListingTable::try_new(cfg)?)
}

/// Bounded so a store whose files keep moving answers with an error, not a stall.
const REPLANS_ON_MOVED_FILE: usize = 8;

/// Runs `attempt(0)`, and again with the next number after a short back-off while it fails
/// on a listed file that is gone (up to [`REPLANS_ON_MOVED_FILE`] times). A commit that
/// finishes while a query reads can rename or retire a file the query listed at planning;
/// planning again reads the new listing, which is consistent. Commits that follow each other
/// closely (a short flush interval, compaction after each) can move files again while the
/// replanned query reads: hence the back-off.
pub(crate) async fn replanning<T, F, Fut>(mut attempt: F) -> Result<T>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut r = attempt(0).await;
    for n in 0..REPLANS_ON_MOVED_FILE {
        match &r {
            Err(Error::DataFusion(e)) if file_moved(e) => {
                tokio::time::sleep(std::time::Duration::from_millis(25 << n.min(4))).await;
                r = attempt(n + 1).await;
            }
            _ => break,
        }
    }
    r
}

/// Whether an error comes from a listed file that is no longer where the listing saw it.
fn file_moved(e: &datafusion::error::DataFusionError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(object_store::Error::NotFound { .. }) =
            err.downcast_ref::<object_store::Error>()
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A DataFusion error as the error a user is shown (rejected, over a limit, or failed).
pub fn classify(e: datafusion::error::DataFusionError) -> Error {
    use datafusion::error::DataFusionError as E;
    match e.find_root() {
        E::ResourcesExhausted(m) => {
            Error::QueryLimit(format!("query exceeded its memory limit: {m}"))
        }
        E::SQL(..) | E::Plan(..) | E::SchemaError(..) => Error::QueryRejected(e.strip_backtrace()),
        E::Execution(m) if m.contains("not supported") || m.contains("not allowed") => {
            Error::QueryRejected(e.strip_backtrace())
        }
        _ => Error::DataFusion(e),
    }
}

/// The `prices` table: one row per catalog model, USD per million tokens.
pub fn prices_batch(cat: &PriceCatalog) -> Result<RecordBatch> {
    use arrow::array::{Float64Builder, Int64Builder, StringBuilder};
    use arrow::datatypes::{Field, Schema};
    use rust_decimal::prelude::ToPrimitive;
    let models = &cat.file().models;
    let mut model = StringBuilder::new();
    let mut provider = StringBuilder::new();
    let mut cols: Vec<Float64Builder> = (0..5).map(|_| Float64Builder::new()).collect();
    let mut ctx = Int64Builder::new();
    for (name, p) in models {
        model.append_value(name);
        provider.append_value(&p.provider);
        let vals = [
            Some(p.input),
            Some(p.output),
            p.cached_input,
            p.cache_write,
            p.reasoning,
        ];
        for (b, v) in cols.iter_mut().zip(vals) {
            b.append_option(v.and_then(|d| d.to_f64()));
        }
        ctx.append_option(p.context_window);
    }
    let mut fields = vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("provider", DataType::Utf8, false),
    ];
    for n in [
        "input",
        "output",
        "cached_input",
        "cache_write",
        "reasoning",
    ] {
        fields.push(Field::new(n, DataType::Float64, true));
    }
    fields.push(Field::new("context_window", DataType::Int64, true));
    let mut arrays: Vec<arrow::array::ArrayRef> =
        vec![Arc::new(model.finish()), Arc::new(provider.finish())];
    for mut b in cols {
        arrays.push(Arc::new(b.finish()));
    }
    arrays.push(Arc::new(ctx.finish()));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}
