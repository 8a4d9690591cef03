//! `switchyard proxy` (the proxy alone, logging into the data dir's store), the proxy inside
//! `serve --proxy-listen`, and `switchyard apply` (put a policy in force on a running proxy).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::serve::shutdown_signal;
use super::{Outcome, load_catalog, store_config};
use crate::cli::{ApplyArgs, Global, ProxyArgs, ProxyTuning};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::proxy::budget::Budgets;
use crate::proxy::{self, Breaker, LogSink, Options, Proxy, SinkTarget};
use crate::recommend::Policy;
use crate::store::{Location, Store};

/// The proxy's address when neither a flag nor the config names one.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7071);

/// The proxy's options from flags, then the config file.
fn options(config: &Config, t: &ProxyTuning, listen: SocketAddr) -> Options {
    Options {
        listen,
        policy_path: t
            .policy
            .clone()
            .or_else(|| config.proxy_policy.clone().map(Into::into)),
        deadline: Duration::from_millis(t.deadline_ms.max(1)),
        retries: t.retries,
        backoff: Duration::from_millis(t.backoff_ms),
        breaker: Breaker {
            failures: t.breaker_failures.max(1),
            cooldown: Duration::from_millis(t.cooldown_ms),
        },
        watch_interval: Duration::from_millis(t.watch_ms.max(10)),
    }
}

fn check_listen(config: &Config, listen: SocketAddr) -> Result<()> {
    if !listen.ip().is_loopback() && config.tokens().admin.is_none() {
        return Err(Error::Config(format!(
            "refusing to run the proxy on {listen} without an admin token: set {} (or listen on 127.0.0.1)",
            config.admin_token_env
        )));
    }
    Ok(())
}

/// Builds a proxy: budgets seeded from `store`'s spend today, records into `sink`.
async fn assemble(
    config: &Config,
    t: &ProxyTuning,
    listen: SocketAddr,
    store: &Store,
    sink: LogSink,
) -> Result<Arc<Proxy>> {
    let budgets = Budgets::new(&config.budgets)?;
    if !budgets.is_empty() {
        budgets.seed_from_store(store).await?;
    }
    let proxy = Proxy::new(
        config,
        options(config, t, listen),
        store.prices(),
        sink,
        budgets,
    )?;
    Ok(Arc::new(proxy))
}

/// The proxy inside `serve`: logs into serve's store.
pub(super) async fn build(
    config: &Config,
    t: &ProxyTuning,
    listen: SocketAddr,
    store: &Store,
) -> Result<(Arc<Proxy>, LogSink)> {
    check_listen(config, listen)?;
    if t.ingest_url.is_some() {
        return Err(Error::Config(
            "--ingest-url: inside serve the proxy logs into serve's own store".into(),
        ));
    }
    let sink = LogSink::start(SinkTarget::Store(store.clone()))?;
    Ok((
        assemble(config, t, listen, store, sink.clone()).await?,
        sink,
    ))
}

pub async fn proxy_command(g: &Global, config: &Config, args: ProxyArgs) -> Result<Outcome> {
    let listen = args
        .listen
        .or(config.proxy_listen)
        .unwrap_or(DEFAULT_LISTEN);
    check_listen(config, listen)?;
    let loc = Location::open(&g.data_dir)?;
    let prices = load_catalog(&loc).await?;
    let remote = args
        .tuning
        .ingest_url
        .clone()
        .or_else(|| config.proxy_ingest_url.clone());
    if let Some(url) = remote {
        // Records go to another server through a disk queue; the data dir is only read
        // (today's spend for the budgets), never locked.
        let queue_dir = match &loc.local_dir {
            Some(d) => d.join("proxy-queue"),
            None => std::path::PathBuf::from("./switchyard-proxy-queue"),
        };
        let ro = crate::store::StoreConfig {
            read_only: true,
            ..crate::store::StoreConfig::default()
        };
        let store = Store::open(loc, ro, prices).await?;
        let sink = LogSink::start(SinkTarget::Remote {
            url,
            token: config.tokens().ingest,
            queue_dir,
        })?;
        let state = assemble(config, &args.tuning, listen, &store, sink.clone()).await?;
        let served = proxy::run(state, shutdown_signal()).await;
        tracing::info!("proxy stopping: delivering queued log records");
        sink.close().await?;
        return served.map(|()| Outcome::Ok);
    }
    let cfg = store_config(g, config, &loc, &args.store, true);
    let store = Store::open(loc, cfg, prices).await?;
    let sink = LogSink::start(SinkTarget::Store(store.clone()))?;
    let state = assemble(config, &args.tuning, listen, &store, sink.clone()).await?;
    let stop = Arc::new(Notify::new());
    let flusher = tokio::spawn(store.clone().run_flusher(stop.clone()));
    let served = proxy::run(state, shutdown_signal()).await;
    tracing::info!("proxy stopping: writing queued log records");
    sink.close().await?;
    stop.notify_one();
    let _ = flusher.await;
    let stats = store.close().await?;
    tracing::info!(rows = stats.rows, files = stats.files, "flushed; bye");
    served.map(|()| Outcome::Ok)
}

pub async fn apply_command(config: &Config, args: ApplyArgs) -> Result<Outcome> {
    let text = std::fs::read(&args.file).map_err(|e| Error::io(&args.file, e))?;
    Policy::parse(&text).map_err(|e| Error::Invalid(format!("{}: {e}", args.file.display())))?;
    let control = crate::proxy::control::Control::new(&args.proxy, config.tokens().admin)?;
    let version = control.apply(text).await?;
    println!("policy {version} in force on {}", args.proxy);
    Ok(Outcome::Ok)
}
