//! The commands behind the CLI: each takes parsed arguments and returns an [`Outcome`].

mod demo;
mod ingest;
mod mock;
mod proxy;
mod recommend;
mod serve;

use object_store::ObjectStoreExt as _;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use object_store::PutPayload;

use crate::cli::{
    CatalogFormat, Cli, ClusterArg, Command, ConfigCommand, Global, PricesCommand, QueryArgs,
    ReportArgs, StoreArgs,
};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::prices::{self, CatalogFile, PriceCatalog};
use crate::query::output::{self, OutputFormat};
use crate::query::{QueryConfig, QueryEngine};
use crate::store::{Location, Store, StoreConfig};

pub use ingest::{IngestSummary, ingest_paths};
pub use recommend::keep_policy;

/// How a command ended: 0 ok, 2 partial (some input rejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Partial,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Ok => ExitCode::SUCCESS,
            Outcome::Partial => ExitCode::from(2),
        }
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<Outcome> {
    let g = cli.global;
    let config = Config::load(g.config.as_deref())?;
    match cli.command {
        Command::Serve(args) => serve::serve(&g, &config, args).await,
        Command::Ingest(args) => ingest::ingest_command(&g, &config, args).await,
        Command::Query(args) => query_command(&g, &config, args).await,
        Command::Report(args) => report_command(&g, &config, args).await,
        Command::Recommend(args) => recommend::recommend_command(&g, &config, args).await,
        Command::Evaluate(args) => recommend::evaluate_command(&g, &config, args).await,
        Command::Generate(args) => generate_command(args),
        Command::Prices(cmd) => prices_command(&g, cmd).await,
        Command::MockUpstream(args) => mock::mock_upstream(args).await,
        Command::Proxy(args) => proxy::proxy_command(&g, &config, args).await,
        Command::Apply(args) => proxy::apply_command(&config, args).await,
        #[cfg(feature = "distributed")]
        Command::Scheduler(args) => {
            let loc = Location::open(&g.data_dir)?;
            crate::distributed::nodes::scheduler(loc, args.listen).await?;
            Ok(Outcome::Ok)
        }
        #[cfg(feature = "distributed")]
        Command::Executor(args) => {
            let loc = Location::open(&g.data_dir)?;
            let opts = crate::distributed::nodes::ExecutorOptions {
                scheduler: args.scheduler,
                listen: args.listen,
                grpc_listen: args.grpc_listen,
                vcores: args.vcores,
                work_dir: args.work_dir,
            };
            crate::distributed::nodes::executor(loc, opts).await?;
            Ok(Outcome::Ok)
        }
        Command::Config(ConfigCommand::Check) => {
            let origin = g
                .config
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(no config file: defaults)".into());
            println!("{origin}: ok");
            Ok(Outcome::Ok)
        }
    }
}

/// Where the catalog imported into a data dir is kept.
const CATALOG_PATH: &str = "catalog/prices.json";

/// The embedded catalog merged with the data dir's imported one, if any.
pub async fn load_catalog(loc: &Location) -> Result<PriceCatalog> {
    let base = PriceCatalog::embedded()?;
    match loc.store.get(&loc.path(&[CATALOG_PATH])).await {
        Ok(r) => {
            let bytes = r.bytes().await?;
            let file: CatalogFile = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Config(format!("{}: {e}", loc.path(&[CATALOG_PATH]))))?;
            Ok(base.merged(&file))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(base),
        Err(e) => Err(e.into()),
    }
}

/// Store settings from flags, then the config file, then defaults.
pub fn store_config(
    g: &Global,
    config: &Config,
    loc: &Location,
    a: &StoreArgs,
    wal: bool,
) -> StoreConfig {
    let d = StoreConfig::default();
    let wal_dir = wal.then(|| {
        g.wal_dir.clone().unwrap_or_else(|| match &loc.local_dir {
            Some(dir) => dir.join("wal"),
            None => PathBuf::from("./switchyard-wal"),
        })
    });
    StoreConfig {
        wal_dir,
        max_buffer_rows: a
            .max_buffer_rows
            .or(config.max_buffer_rows)
            .unwrap_or(d.max_buffer_rows),
        flush_interval: a
            .flush_interval_ms
            .map(std::time::Duration::from_millis)
            .or(config.flush_interval)
            .unwrap_or(d.flush_interval),
        retention_days: a.retention_days.or(config.retention_days),
        ingest_deadline: a
            .ingest_deadline_ms
            .map(std::time::Duration::from_millis)
            .unwrap_or(d.ingest_deadline),
        compact_min_files: config.compact_min_files.unwrap_or(d.compact_min_files),
        node_id: a.node_id.clone(),
        ..d
    }
}

pub fn query_config(config: &Config) -> QueryConfig {
    QueryConfig {
        memory_limit_bytes: config.query_memory_limit_bytes,
        timeout: config.query_timeout,
    }
}

async fn query_command(g: &Global, config: &Config, args: QueryArgs) -> Result<Outcome> {
    let sql = match (&args.sql, &args.file) {
        (Some(s), None) => s.clone(),
        (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?,
        (None, None) => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            s
        }
        (Some(_), Some(_)) => {
            return Err(Error::Invalid(
                "give the SQL as an argument or --file, not both".into(),
            ));
        }
    };
    let result = SqlRunner::open(g, config, &args.cluster)
        .await?
        .sql(&sql)
        .await?;
    write_answer(&result, args.format, args.output.as_deref())?;
    Ok(Outcome::Ok)
}

/// Where `query` and `report` run their SQL: this process, or a Ballista cluster.
enum SqlRunner {
    Local(QueryEngine),
    #[cfg(feature = "distributed")]
    Cluster(crate::distributed::Cluster),
}

impl SqlRunner {
    #[cfg_attr(not(feature = "distributed"), allow(unused_variables))]
    async fn open(g: &Global, config: &Config, at: &ClusterArg) -> Result<SqlRunner> {
        #[cfg(feature = "distributed")]
        if let Some(url) = &at.cluster {
            let loc = Location::open(&g.data_dir)?;
            let prices = load_catalog(&loc).await?;
            let cluster =
                crate::distributed::Cluster::connect(url, &loc, &prices, config.query_timeout)
                    .await?;
            return Ok(SqlRunner::Cluster(cluster));
        }
        Ok(SqlRunner::Local(read_only_engine(g, config).await?))
    }

    async fn sql(&self, sql: &str) -> Result<crate::query::QueryResult> {
        match self {
            SqlRunner::Local(engine) => engine.sql(sql).await,
            #[cfg(feature = "distributed")]
            SqlRunner::Cluster(cluster) => cluster.sql(sql).await,
        }
    }
}

/// A query engine over the data dir that never replays or takes the WAL lock: a running
/// server keeps it.
pub(crate) async fn read_only_engine(g: &Global, config: &Config) -> Result<QueryEngine> {
    let loc = Location::open(&g.data_dir)?;
    let prices = load_catalog(&loc).await?;
    let ro = StoreConfig {
        read_only: true,
        ..StoreConfig::default()
    };
    let store = Store::open(loc, ro, prices).await?;
    QueryEngine::new(store, query_config(config))
}

/// Writes a query answer in `format` to `path` or stdout.
fn write_answer(
    result: &crate::query::QueryResult,
    format: OutputFormat,
    path: Option<&std::path::Path>,
) -> Result<()> {
    let bytes = output::render(result, format)?;
    match path {
        Some(p) => std::fs::write(p, bytes).map_err(|e| Error::io(p, e))?,
        None => std::io::stdout().write_all(&bytes)?,
    }
    Ok(())
}

async fn report_command(g: &Global, config: &Config, args: ReportArgs) -> Result<Outcome> {
    if args.list {
        let all = crate::query::reports::all()?;
        let width = all.iter().map(|r| r.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for r in &all {
            out.push_str(&format!("{:width$}  {}\n", r.name, r.purpose));
        }
        std::io::stdout().write_all(out.as_bytes())?;
        return Ok(Outcome::Ok);
    }
    let name = args
        .name
        .as_deref()
        .ok_or_else(|| Error::Invalid("name a report, or use --list".into()))?;
    // Fail on a bad name or window before opening the store.
    crate::query::reports::get(name)?;
    let window = crate::query::reports::Window::parse(
        args.since.as_deref(),
        args.until.as_deref(),
        args.task.as_deref(),
        args.model.as_deref(),
        chrono::Utc::now(),
    )?;
    let sql = crate::query::reports::bound_sql(name, &window)?;
    let result = SqlRunner::open(g, config, &args.cluster)
        .await?
        .sql(&sql)
        .await
        .map_err(|e| crate::query::reports::named_error(name, e))?;
    write_answer(&result, args.format, args.output.as_deref())?;
    Ok(Outcome::Ok)
}

fn generate_command(args: crate::cli::GenerateArgs) -> Result<Outcome> {
    let catalog = PriceCatalog::embedded()?;
    let mut opts = crate::generate::GenerateOptions {
        requests: args.requests,
        days: args.days,
        seed: args.seed,
        ..Default::default()
    };
    if let Some(end) = &args.end {
        opts.end_ts_us = crate::formats::parse_ts_str(end)
            .ok_or_else(|| Error::Invalid(format!("--end {end:?} is not an RFC 3339 timestamp")))?;
    }
    let stats = match &args.out {
        Some(p) => {
            let f = std::fs::File::create(p).map_err(|e| Error::io(p, e))?;
            let bar = progress_bar(
                args.requests,
                "{spinner} generating {msg} [{bar:30}] {human_pos}/{human_len} requests, eta {eta}",
            );
            bar.set_message(p.display().to_string());
            let mut w = LineCounter {
                inner: std::io::BufWriter::with_capacity(1 << 20, f),
                bar,
            };
            let s =
                crate::generate::generate(&opts, &catalog, &mut w).map_err(|e| Error::io(p, e))?;
            w.flush().map_err(|e| Error::io(p, e))?;
            w.bar.finish_and_clear();
            s
        }
        None => {
            let out = std::io::stdout();
            let mut w = std::io::BufWriter::with_capacity(1 << 20, out.lock());
            let s = crate::generate::generate(&opts, &catalog, &mut w)?;
            w.flush()?;
            s
        }
    };
    eprintln!(
        "generated {} requests and {} feedback records ({} bytes)",
        stats.requests, stats.feedback, stats.bytes
    );
    Ok(Outcome::Ok)
}

/// A progress bar on stderr of `len` steps, hidden unless stderr is a terminal.
pub(crate) fn progress_bar(len: u64, template: &str) -> indicatif::ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(len);
    b.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b
}

/// A writer that moves `bar` by the request records (lines with a `model`) written through it.
struct LineCounter<W: Write> {
    inner: W,
    bar: indicatif::ProgressBar,
}

impl<W: Write> Write for LineCounter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let requests = memchr::memmem::find_iter(&buf[..n], b"\"model\"").count();
        self.bar.inc(requests as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

async fn prices_command(g: &Global, cmd: PricesCommand) -> Result<Outcome> {
    match cmd {
        PricesCommand::Import {
            file,
            format,
            providers,
            out,
            replace,
        } => {
            let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
            let keep: Vec<&str> = providers.iter().map(String::as_str).collect();
            let imported = match format {
                CatalogFormat::Litellm => {
                    prices::import_litellm(&text, (!keep.is_empty()).then_some(&keep[..]))?
                }
                CatalogFormat::Openrouter => prices::import_openrouter(&text)?,
            };
            let n = imported.models.len();
            match out {
                Some(p) => {
                    let file = if replace {
                        imported
                    } else {
                        PriceCatalog::embedded()?.merged(&imported).file().clone()
                    };
                    let mut body = serde_json::to_vec_pretty(&file)?;
                    body.push(b'\n');
                    std::fs::write(&p, body).map_err(|e| Error::io(&p, e))?;
                    println!("imported {n} models into {}", p.display());
                }
                None => {
                    let loc = Location::open(&g.data_dir)?;
                    let current = load_catalog(&loc).await?;
                    let merged = if replace {
                        imported
                    } else {
                        current.merged(&imported).file().clone()
                    };
                    let body = serde_json::to_vec_pretty(&merged)?;
                    loc.store
                        .put(&loc.path(&[CATALOG_PATH]), PutPayload::from(body))
                        .await?;
                    println!("imported {n} models into {}", loc.path(&[CATALOG_PATH]));
                }
            }
            Ok(Outcome::Ok)
        }
        PricesCommand::Show { model } => {
            let loc = Location::open(&g.data_dir)?;
            let cat = load_catalog(&loc).await?;
            let key = cat
                .resolve(&model)
                .ok_or_else(|| Error::NotFound(format!("no price for model {model:?}")))?;
            let p = cat
                .file()
                .models
                .get(&key)
                .ok_or_else(|| Error::NotFound(format!("no price for model {model:?}")))?;
            let json = serde_json::json!({ "model": model, "catalog_key": key, "usd_per_million_tokens": p });
            println!("{}", serde_json::to_string_pretty(&json)?);
            Ok(Outcome::Ok)
        }
    }
}
