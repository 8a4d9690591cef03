//! `switchyard serve`: the ingest and query API over one store, flushing on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::FutureExt as _;
use tokio::sync::Notify;

use super::{Outcome, demo, load_catalog, query_config, store_config};
use crate::cli::{Global, ServeArgs};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::formats::{self, Format};
use crate::http::{AppState, router};
use crate::query::QueryEngine;
use crate::store::{Location, Store};

pub async fn serve(g: &Global, config: &Config, args: ServeArgs) -> Result<Outcome> {
    let listen: SocketAddr = args
        .listen
        .or(config.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7070)));
    let tokens = config.tokens();
    if !tokens.any() && !listen.ip().is_loopback() {
        return Err(Error::Config(format!(
            "refusing to listen on {listen} without tokens: set {} and {} (or listen on 127.0.0.1)",
            config.ingest_token_env, config.admin_token_env
        )));
    }
    let loc = Location::open(&g.data_dir)?;
    let demo_dir = match (&loc.local_dir, args.demo) {
        (Some(d), true) => Some(d.clone()),
        (None, true) => {
            return Err(Error::Config(
                "--demo needs a local --data-dir (it keeps the demo's policy file there)".into(),
            ));
        }
        (_, false) => None,
    };
    let prices = load_catalog(&loc).await?;
    let cfg = store_config(g, config, &loc, &args.store, true);
    let store = Store::open(loc, cfg, prices).await?;
    if args.demo {
        fill_demo(&store, args.demo_requests).await?;
    }
    let engine = QueryEngine::new(store.clone(), query_config(config))?;
    let shutdown = shutdown_signal().shared();
    let stop = Arc::new(Notify::new());
    let flusher = tokio::spawn(store.clone().run_flusher(stop.clone()));
    // The demo: a mock upstream for the proxy, and a starting policy (the history's mix).
    let mut config = config.clone();
    let mut tuning = args.proxy.clone();
    let mut proxy_listen = args.proxy_listen.or(config.proxy_listen);
    let mut mock = None;
    if let Some(dir) = &demo_dir {
        let (addr, task) = demo::start_mock(shutdown.clone()).await?;
        config = demo::config_with_mock(&config, addr);
        proxy_listen.get_or_insert(super::proxy::DEFAULT_LISTEN);
        if tuning.policy.is_none() && config.proxy_policy.is_none() {
            let cands = crate::recommend::candidates(&engine, Some("30d"), None).await?;
            let baseline = demo::baseline_policy(&cands, chrono::Utc::now())?;
            super::recommend::keep_policy(&store, &baseline).await?;
            tuning.policy = Some(demo::write_baseline(dir, &baseline)?);
        }
        mock = Some((addr, task));
    }
    // The proxy in the same process, logging into the same store.
    let proxy = match proxy_listen {
        Some(addr) => {
            let (p, sink) = super::proxy::build(&config, &tuning, addr, &store).await?;
            // Bound here, so a taken address fails serve at start, not at shutdown.
            let listener = crate::proxy::bind(addr).await?;
            let bound = listener.local_addr()?;
            let task = tokio::spawn(crate::proxy::serve(p, listener, shutdown.clone()));
            Some((task, sink, format!("http://{bound}")))
        }
        None => None,
    };
    let proxy_url = args
        .proxy_url
        .clone()
        .or_else(|| proxy.as_ref().map(|(_, _, url)| url.clone()));
    let state = AppState {
        store: store.clone(),
        query: engine.clone(),
        tokens: Arc::new(tokens.clone()),
        max_body_bytes: config.max_body_bytes,
        proxy_url: proxy_url.clone(),
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {listen}: {e}")))?;
    let bound = listener.local_addr()?;
    println!("switchyard listening on http://{bound}");
    tracing::info!(%bound, "listening");
    let driver = match (&mock, &proxy_url) {
        (Some((mock_addr, _)), Some(purl)) => {
            let d = demo::Driver {
                proxy: purl.clone(),
                ingest: format!("http://{bound}"),
                ingest_token: tokens.ingest.clone(),
                rate: args.demo_rate,
                feedback_share: args.demo_feedback,
                load: demo::workload(&engine).await?,
            };
            print_demo_help(bound, purl, *mock_addr, &d, &g.data_dir);
            Some(tokio::spawn(demo::drive(d, shutdown.clone())))
        }
        _ => None,
    };
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Internal(format!("server: {e}")));
    if let Some(d) = driver {
        let _ = d.await;
    }
    if let Some((task, sink, _)) = proxy {
        match task.await {
            Ok(Err(e)) => tracing::error!(error = %e, "proxy failed"),
            Err(e) => tracing::error!(error = %e, "proxy task failed"),
            Ok(Ok(())) => {}
        }
        sink.close().await?;
    }
    if let Some((_, task)) = mock {
        let _ = task.await;
    }
    served?;
    tracing::info!("shutting down: flushing buffered records");
    stop.notify_one();
    let _ = flusher.await;
    let stats = store.close().await?;
    tracing::info!(rows = stats.rows, files = stats.files, "flushed; bye");
    Ok(Outcome::Ok)
}

/// What the demo runs and what to try, on stdout.
fn print_demo_help(
    serve: SocketAddr,
    proxy: &str,
    mock: SocketAddr,
    d: &demo::Driver,
    data_dir: &str,
) {
    let first = d.load.first().map_or("default", |t| t.task.as_str());
    println!(
        "\
demo: mock upstream (10 models, per-task qualities) on http://{mock}
demo: an app sends {rate} requests/s with tasks through the proxy at {proxy}, \
and posts quality feedback for {share:.0}% of the answers
demo: the proxy starts on policy `{baseline}` (the history's traffic mix)

  open    http://{serve}/#what-to-change   the recommended policy; press Apply
          http://{serve}/#what-changed     cost per request and quality per policy version
  or      switchyard recommend --apply --proxy {proxy} --data-dir {data_dir}
  try     curl -s {proxy}/v1/chat/completions -H 'X-Switchyard-Task: {first}' \\
            -d '{{\"model\": \"auto\", \"messages\": [{{\"role\": \"user\", \"content\": \"hi\"}}]}}'
  stop    Ctrl-C (flushes everything to Parquet first)",
        rate = d.rate,
        share = d.feedback_share * 100.0,
        baseline = demo::BASELINE_VERSION,
    );
}

/// Resolves on SIGINT or SIGTERM.
pub(super) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Fills an empty store with a generated workload ending now.
async fn fill_demo(store: &Store, requests: u64) -> Result<()> {
    let probe = store
        .location()
        .store
        .list_with_delimiter(Some(&store.location().path(&["requests"])))
        .await?;
    if !probe.common_prefixes.is_empty() || store.buffered_rows() > 0 {
        return Ok(());
    }
    tracing::info!(requests, "demo: generating a workload");
    let catalog = store.prices();
    let opts = crate::generate::GenerateOptions {
        requests,
        end_ts_us: chrono::Utc::now().timestamp_micros(),
        ..Default::default()
    };
    let mut body = Vec::new();
    crate::generate::generate(&opts, &catalog, &mut body)?;
    let now = chrono::Utc::now().timestamp_micros();
    let lines: Vec<&[u8]> = body.chunk_by(|_, b| *b != b'\n').collect();
    let bar = super::progress_bar(
        lines.len() as u64,
        "demo: storing the history [{bar:30}] {human_pos}/{human_len} records, eta {eta}",
    );
    for chunk in lines.chunks(50_000) {
        let part: Vec<u8> = chunk.concat();
        store
            .ingest(formats::parse_body(&part, Format::Auto, now))
            .await?;
        // The flusher is not running yet: flush here, or back-pressure would wait forever.
        store.flush().await?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(())
}
