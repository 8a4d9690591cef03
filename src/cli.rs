//! The command line (clap derive only; the commands live in `commands/`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::formats::Format;
use crate::query::output::OutputFormat;

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Usage analytics and cost optimisation for LLM traffic"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Data directory, or s3://BUCKET/PREFIX.
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_DATA_DIR",
        default_value = "./switchyard-data"
    )]
    pub data_dir: String,
    /// Write-ahead log directory (default DATA_DIR/wal; always local).
    #[arg(long, global = true, env = "SWITCHYARD_WAL_DIR")]
    pub wal_dir: Option<PathBuf>,
    /// Config file (TOML).
    #[arg(long, global = true, env = "SWITCHYARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest + query API and the dashboards in one process (with --proxy-listen, the proxy too).
    #[command(
        after_help = "Examples:\n  switchyard serve --demo                      # the whole loop on one machine\n  switchyard serve --listen 127.0.0.1:7070 --proxy-listen 127.0.0.1:7071 --config switchyard.toml"
    )]
    Serve(ServeArgs),
    /// Import log files (`-` = stdin; .gz and .zst accepted).
    #[command(
        after_help = "Examples:\n  switchyard ingest workload.ndjson litellm-spendlogs.ndjson.gz otel-export.json\n  zcat logs.ndjson.gz | switchyard ingest --format openrouter -"
    )]
    Ingest(IngestArgs),
    /// Read-only SQL over the store.
    #[command(
        after_help = "Examples:\n  switchyard query \"SELECT model, sum(cost_usd) AS usd FROM requests GROUP BY model ORDER BY usd DESC\"\n  switchyard query --file my.sql --format parquet --output answer.parquet"
    )]
    Query(QueryArgs),
    /// Run a named report (`queries/NAME.sql`) over a time window.
    #[command(
        after_help = "Examples:\n  switchyard report --list\n  switchyard report spend_by_task --since 7d --format csv\n  switchyard report policy_versions --since 1h"
    )]
    Report(ReportArgs),
    /// Recommend a routing policy: per task, the cheapest model (or mix) at the quality target.
    #[command(
        after_help = "Examples:\n  switchyard recommend --quality-target 0.95 --since 30d --out policy.json\n  switchyard recommend --apply --proxy http://127.0.0.1:7071"
    )]
    Recommend(RecommendArgs),
    /// Replay logged traffic under a policy offline.
    #[command(after_help = "Example:\n  switchyard evaluate --policy policy.json --since 30d")]
    Evaluate(EvaluateArgs),
    /// Write a realistic synthetic workload as NDJSON.
    #[command(
        after_help = "Example:\n  switchyard generate --requests 1000000 --days 30 --seed 7 --out workload.ndjson"
    )]
    Generate(GenerateArgs),
    /// Manage the price catalog.
    #[command(
        subcommand,
        after_help = "Examples:\n  switchyard prices import model_prices_and_context_window.json --format litellm\n  switchyard prices show openai/gpt-4o-mini"
    )]
    Prices(PricesCommand),
    /// Validate configuration.
    #[command(
        subcommand,
        after_help = "Example:\n  switchyard config check --config switchyard.toml"
    )]
    Config(ConfigCommand),
    /// A built-in OpenAI-compatible mock upstream for tests, the demo and benchmarks.
    #[command(
        after_help = "Example:\n  switchyard mock-upstream --listen 127.0.0.1:7072 --latency-ms 0 --ttft-ms 0 --tokens-per-s 0"
    )]
    MockUpstream(MockUpstreamArgs),
    /// OpenAI-compatible proxy that routes requests by a policy and logs every attempt.
    #[command(
        after_help = "Example:\n  switchyard proxy --config switchyard.toml --policy policy.json --listen 127.0.0.1:7071"
    )]
    Proxy(ProxyArgs),
    /// Validate a policy file and put it in force on a running proxy.
    #[command(
        after_help = "Example:\n  switchyard apply policy.json --proxy http://127.0.0.1:7071"
    )]
    Apply(ApplyArgs),
    /// A Ballista scheduler: plans distributed queries over the data dir and hands their
    /// stages to executors (build with `--features distributed`).
    #[cfg(feature = "distributed")]
    #[command(after_help = "Example:\n  switchyard scheduler --listen 127.0.0.1:50050")]
    Scheduler(SchedulerArgs),
    /// A Ballista executor: registers with a scheduler and runs its tasks, reading the data
    /// dir (a bucket) itself (build with `--features distributed`).
    #[cfg(feature = "distributed")]
    #[command(
        after_help = "Example:\n  switchyard executor --scheduler 127.0.0.1:50050 --listen 127.0.0.1:50051 --grpc-listen 127.0.0.1:50052"
    )]
    Executor(ExecutorArgs),
}

#[cfg(feature = "distributed")]
#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Address of the scheduler's gRPC service (port 0: any free port, printed at start).
    #[arg(long, env = "SWITCHYARD_SCHEDULER_LISTEN", default_value = crate::distributed::nodes::SCHEDULER_LISTEN)]
    pub listen: SocketAddr,
}

#[cfg(feature = "distributed")]
#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// The scheduler to register with: HOST:PORT or df://HOST:PORT.
    #[arg(long, env = "SWITCHYARD_SCHEDULER")]
    pub scheduler: String,
    /// Address of the executor's Arrow Flight service, which serves its results.
    #[arg(long, default_value = crate::distributed::nodes::EXECUTOR_LISTEN)]
    pub listen: SocketAddr,
    /// Address of the executor's gRPC service, which takes tasks (same host as --listen).
    #[arg(long, default_value = crate::distributed::nodes::EXECUTOR_GRPC_LISTEN)]
    pub grpc_listen: SocketAddr,
    /// Tasks run at once (default: the cores of this machine).
    #[arg(long)]
    pub vcores: Option<usize>,
    /// Where shuffle files go (default: a new directory under the system's temporary one).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// Where a query runs: this process, or a Ballista cluster.
#[derive(Debug, Args, Clone)]
pub struct ClusterArg {
    /// Run on the Ballista cluster whose scheduler is at df://HOST:PORT (build with
    /// `--features distributed`); its executors read the data dir themselves.
    #[cfg(feature = "distributed")]
    #[arg(long, env = "SWITCHYARD_CLUSTER")]
    pub cluster: Option<String>,
}

/// Tuning shared by `proxy` and `serve --proxy-listen`.
#[derive(Debug, Args, Clone)]
pub struct ProxyTuning {
    /// Routing policy file (watched; reloaded on change). Default: the config's `[proxy] policy`.
    #[arg(long, env = "SWITCHYARD_POLICY")]
    pub policy: Option<PathBuf>,
    /// Send log records to this ingest server (`/v1/logs`) instead of the data dir.
    #[arg(long, env = "SWITCHYARD_INGEST_URL")]
    pub ingest_url: Option<String>,
    /// Longest one request may take, all attempts and backoff included.
    #[arg(long, env = "SWITCHYARD_PROXY_DEADLINE_MS", default_value_t = 120_000)]
    pub deadline_ms: u64,
    /// Extra passes over the candidate upstreams after all of them failed.
    #[arg(long, env = "SWITCHYARD_PROXY_RETRIES", default_value_t = 1)]
    pub retries: u32,
    /// First backoff between passes (doubled each pass, with jitter).
    #[arg(long, env = "SWITCHYARD_PROXY_BACKOFF_MS", default_value_t = 50)]
    pub backoff_ms: u64,
    /// Consecutive failures that open an upstream's circuit.
    #[arg(long, env = "SWITCHYARD_PROXY_BREAKER_FAILURES", default_value_t = 3)]
    pub breaker_failures: u32,
    /// How long an open circuit skips its upstream before one probe is let through.
    #[arg(long, env = "SWITCHYARD_PROXY_COOLDOWN_MS", default_value_t = 10_000)]
    pub cooldown_ms: u64,
    /// How often the policy file is checked for changes.
    #[arg(long, env = "SWITCHYARD_PROXY_WATCH_MS", default_value_t = 500)]
    pub watch_ms: u64,
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address to listen on. Default: the config's `[proxy] listen`, else 127.0.0.1:7071.
    #[arg(long, env = "SWITCHYARD_PROXY_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub tuning: ProxyTuning,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The policy file.
    pub file: PathBuf,
    /// Base URL of the running proxy, e.g. http://127.0.0.1:7071.
    #[arg(long, env = "SWITCHYARD_PROXY_URL")]
    pub proxy: String,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Longest time acknowledged rows wait before they are written to Parquet.
    #[arg(long, env = "SWITCHYARD_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// Buffered rows that trigger a flush.
    #[arg(long, env = "SWITCHYARD_MAX_BUFFER_ROWS")]
    pub max_buffer_rows: Option<usize>,
    /// Drop partitions older than this many days.
    #[arg(long, env = "SWITCHYARD_RETENTION_DAYS")]
    pub retention_days: Option<u32>,
    /// Longest wait of a batch for a flush while the buffer is past twice its flush size;
    /// then it is refused with 503 and `Retry-After` [default: 10000].
    #[arg(long, env = "SWITCHYARD_INGEST_DEADLINE_MS")]
    pub ingest_deadline_ms: Option<u64>,
    /// This writer's id among the nodes writing one bucket (letters, digits, `_`); it names
    /// every file the node writes. Default: kept in the WAL dir, created on first start.
    #[arg(long, env = "SWITCHYARD_NODE_ID")]
    pub node_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the ingest and query API.
    #[arg(long, env = "SWITCHYARD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The whole loop on one machine: fill an empty data dir with a generated history, start
    /// a mock upstream and the proxy (default 127.0.0.1:7071) on the history's traffic mix,
    /// and send live traffic with tasks and quality feedback through it.
    #[arg(long)]
    pub demo: bool,
    /// Records the demo's generated history holds.
    #[arg(long, default_value_t = 200_000)]
    pub demo_requests: u64,
    /// Requests per second the demo's app sends through the proxy.
    #[arg(long, default_value_t = 3.0)]
    pub demo_rate: f64,
    /// Share of the demo's answers that get a quality feedback record.
    #[arg(long, default_value_t = 0.5)]
    pub demo_feedback: f64,
    /// The running proxy the dashboards' Apply button loads policies into (default: the
    /// proxy of --proxy-listen, if any).
    #[arg(long, env = "SWITCHYARD_PROXY_URL")]
    pub proxy_url: Option<String>,
    /// Also run the proxy on this address, logging into the same store.
    #[arg(long, env = "SWITCHYARD_PROXY_LISTEN")]
    pub proxy_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub proxy: ProxyTuning,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Input shape; `auto` detects it per record.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Files to import; `-` reads stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL statement (or use --file, or stdin).
    pub sql: Option<String>,
    #[arg(long)]
    pub file: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Write the answer here instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub cluster: ClusterArg,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The report to run (see --list).
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,
    /// List the reports: one name per line, then its purpose.
    #[arg(long)]
    pub list: bool,
    /// Start of the window (inclusive): 7d, 24h, 30m before now, a date (2026-11-01, midnight
    /// UTC) or an RFC 3339 time. Default: the beginning of the data.
    #[arg(long)]
    pub since: Option<String>,
    /// End of the window (exclusive), in the same forms. Default: no end.
    #[arg(long)]
    pub until: Option<String>,
    /// Only this task.
    #[arg(long)]
    pub task: Option<String>,
    /// Only this model.
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Write the answer here instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub cluster: ClusterArg,
}

#[derive(Debug, Args)]
pub struct RecommendArgs {
    /// Quality to hold, as a fraction of the best model's (per task, or overall).
    #[arg(long, default_value_t = 0.95)]
    pub quality_target: f64,
    #[arg(long, value_enum, default_value_t = crate::recommend::Scope::Overall)]
    pub scope: crate::recommend::Scope,
    /// Quality samples a model needs on a task before it can be chosen (default: none; the
    /// shrunk estimate and its uncertainty decide).
    #[arg(long, default_value_t = 0)]
    pub min_samples: u64,
    /// Exclude models whose p95 latency on the task is above this.
    #[arg(long)]
    pub max_p95_latency_ms: Option<f64>,
    /// Traffic share for exploring under-sampled, promising models.
    #[arg(long, default_value_t = 0.05)]
    pub explore: f64,
    /// Probability with which the quality target is to hold on fresh traffic.
    #[arg(long, default_value_t = crate::recommend::DEFAULT_CONFIDENCE)]
    pub confidence: f64,
    /// A fixed one-sided z for the confidence guard, instead of calibrating it on the logs.
    #[arg(long)]
    pub z: Option<f64>,
    /// Fit and fresh windows resampled from the logs, and split halves of the logs, to
    /// calibrate the guard on (0: the normal quantile of --confidence).
    #[arg(long, default_value_t = crate::recommend::DEFAULT_CALIBRATION_DRAWS)]
    pub calibration_draws: u32,
    /// Seed of the calibration's resampling (the same logs and seed give the same policy).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use each task's raw quality means, without empirical-Bayes shrinkage across tasks.
    #[arg(long)]
    pub no_shrink: bool,
    /// Window of logs to learn from (7d, a date, an RFC 3339 time).
    #[arg(long, default_value = "30d")]
    pub since: String,
    #[arg(long)]
    pub until: Option<String>,
    /// Write the policy here (it is also kept as DATA_DIR/policies/VERSION.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ExplainFormat::Text)]
    pub format: ExplainFormat,
    /// Show what changed against an earlier policy file.
    #[arg(long)]
    pub diff: Option<PathBuf>,
    /// Put the new policy in force on the proxy at --proxy (and show the diff against the
    /// one it replaces).
    #[arg(long, requires = "proxy")]
    pub apply: bool,
    /// Base URL of the running proxy for --apply, e.g. http://127.0.0.1:7071.
    #[arg(long, env = "SWITCHYARD_PROXY_URL")]
    pub proxy: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExplainFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// The policy file to replay. With --holdout or --fit-until, its objective is the one
    /// re-fitted on the earlier part of the window (default: recommend's defaults).
    #[arg(long, required_unless_present_any = ["holdout", "fit_until"])]
    pub policy: Option<PathBuf>,
    #[arg(long, default_value = "30d")]
    pub since: String,
    #[arg(long)]
    pub until: Option<String>,
    /// Out-of-sample check: fit a policy on the window but its last DURATION (7d, 24h), and
    /// judge it on that last part, against that part's oracle and the quality bound.
    #[arg(long, value_name = "DURATION", conflicts_with = "fit_until")]
    pub holdout: Option<String>,
    /// Out-of-sample check: fit on [--since, T), judge on [T, --until).
    #[arg(long, value_name = "T")]
    pub fit_until: Option<String>,
    #[arg(long, value_enum, default_value_t = ExplainFormat::Text)]
    pub format: ExplainFormat,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Request records to write (feedback records come on top).
    #[arg(long)]
    pub requests: u64,
    /// Days the workload spans, ending at --end.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// End of the time span (RFC 3339); default 2026-11-25T00:00:00Z, so output is repeatable.
    #[arg(long)]
    pub end: Option<String>,
    /// Output file (default stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MockUpstreamArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = "SWITCHYARD_MOCK_LISTEN", default_value = "127.0.0.1:7072")]
    pub listen: SocketAddr,
    /// Per-model profiles (JSON) merged over the built-in ones.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Total time of every non-streamed answer, ms, for every model.
    #[arg(long)]
    pub latency_ms: Option<u64>,
    /// Time to the first streamed chunk, ms, for every model.
    #[arg(long)]
    pub ttft_ms: Option<u64>,
    /// Token rate of every model (0 = answers at once).
    #[arg(long)]
    pub tokens_per_s: Option<f64>,
    /// Seed of the per-task qualities and the simulated errors.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Subcommand)]
pub enum PricesCommand {
    /// Merge a LiteLLM or OpenRouter catalog into the data dir's catalog.
    Import {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = CatalogFormat::Litellm)]
        format: CatalogFormat,
        /// Keep only these providers (LiteLLM `litellm_provider`), comma separated.
        #[arg(long, value_delimiter = ',')]
        providers: Vec<String>,
        /// Write the merged catalog here instead of the data dir.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write only the imported entries, not merged over the current catalog.
        #[arg(long)]
        replace: bool,
    },
    /// Show the prices a model name resolves to.
    Show { model: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CatalogFormat {
    Litellm,
    Openrouter,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config file and exit.
    Check,
}
