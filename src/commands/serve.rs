//! `switchyard serve`: the ingest and query API over one store, flushing on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::FutureExt as _;
use tokio::sync::Notify;

use super::{Outcome, load_catalog, query_config, store_config};
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
    let prices = load_catalog(&loc).await?;
    let cfg = store_config(g, config, &loc, &args.store, true);
    let store = Store::open(loc, cfg, prices).await?;
    if args.demo {
        fill_demo(&store, args.demo_requests).await?;
    }
    let engine = QueryEngine::new(store.clone(), query_config(config))?;
    let state = AppState {
        store: store.clone(),
        query: engine,
        tokens: Arc::new(tokens),
        max_body_bytes: config.max_body_bytes,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {listen}: {e}")))?;
    let bound = listener.local_addr()?;
    let stop = Arc::new(Notify::new());
    let flusher = tokio::spawn(store.clone().run_flusher(stop.clone()));
    let shutdown = shutdown_signal().shared();
    println!("switchyard listening on http://{bound}");
    tracing::info!(%bound, "listening");
    // The proxy in the same process, logging into the same store.
    let proxy = match args.proxy_listen.or(config.proxy_listen) {
        Some(addr) => {
            let (p, sink) = super::proxy::build(config, &args.proxy, addr, &store).await?;
            // Bound here, so a taken address fails serve at start, not at shutdown.
            let listener = crate::proxy::bind(addr).await?;
            let task = tokio::spawn(crate::proxy::serve(p, listener, shutdown.clone()));
            Some((task, sink))
        }
        None => None,
    };
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Internal(format!("server: {e}")));
    if let Some((task, sink)) = proxy {
        match task.await {
            Ok(Err(e)) => tracing::error!(error = %e, "proxy failed"),
            Err(e) => tracing::error!(error = %e, "proxy task failed"),
            Ok(Ok(())) => {}
        }
        sink.close().await?;
    }
    served?;
    tracing::info!("shutting down: flushing buffered records");
    stop.notify_one();
    let _ = flusher.await;
    let stats = store.close().await?;
    tracing::info!(rows = stats.rows, files = stats.files, "flushed; bye");
    Ok(Outcome::Ok)
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
    for chunk in body
        .chunk_by(|_, b| *b != b'\n')
        .collect::<Vec<_>>()
        .chunks(50_000)
    {
        let part: Vec<u8> = chunk.concat();
        store
            .ingest(formats::parse_body(&part, Format::Auto, now))
            .await?;
        // The flusher is not running yet: flush here, or back-pressure would wait forever.
        store.flush().await?;
    }
    Ok(())
}
