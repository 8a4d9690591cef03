//! The proxy's state and its routes (a table of paths and nothing else), and running it:
//! bind, announce the address on stdout, serve until shut down, drain the log sink.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use super::budget::Budgets;
use super::keys::KeyRing;
use super::routing::Live;
use super::sink::LogSink;
use super::upstream::{Breaker, Upstreams};
use super::{admin, chat, stats::Stats};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::prices::PriceCatalog;
use crate::recommend::Policy;

/// Knobs of one proxy.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    pub policy_path: Option<PathBuf>,
    /// Longest a request may take, attempts and backoff included.
    pub deadline: Duration,
    /// Extra passes over the candidate list after every candidate failed.
    pub retries: u32,
    /// First backoff between passes (doubled each pass, with jitter).
    pub backoff: Duration,
    pub breaker: Breaker,
    /// How often the policy file is checked for changes.
    pub watch_interval: Duration,
}

/// What every proxy handler reaches, behind one `Arc`.
pub struct Proxy {
    pub upstreams: Upstreams,
    pub live: ArcSwap<Live>,
    pub prices: Arc<PriceCatalog>,
    pub sink: LogSink,
    pub keys: KeyRing,
    pub budgets: Budgets,
    pub opts: Options,
    pub admin_token: Option<String>,
    pub max_body_bytes: usize,
    pub stats: Stats,
    id_prefix: u64,
    id_next: AtomicU64,
}

pub type State = Arc<Proxy>;

impl Proxy {
    pub fn new(
        config: &Config,
        opts: Options,
        prices: Arc<PriceCatalog>,
        sink: LogSink,
        budgets: Budgets,
    ) -> Result<Proxy> {
        let upstreams = Upstreams::new(config, opts.breaker)?;
        let live = match &opts.policy_path {
            Some(p) => {
                let text = std::fs::read(p).map_err(|e| Error::io(p, e))?;
                let policy = Policy::parse(&text)
                    .map_err(|e| Error::Config(format!("{}: {e}", p.display())))?;
                Live::compile(policy, &upstreams)
                    .map_err(|e| Error::Config(format!("{}: {e}", p.display())))?
            }
            None => Live::none(),
        };
        Ok(Proxy {
            upstreams,
            live: ArcSwap::from_pointee(live),
            prices,
            sink,
            keys: KeyRing::from_config(config)?,
            budgets,
            admin_token: config.tokens().admin,
            max_body_bytes: config.max_body_bytes,
            opts,
            stats: Stats::default(),
            id_prefix: fastrand::u64(..) >> 16,
            id_next: AtomicU64::new(0),
        })
    }

    /// A new request id: unique per process start (random prefix) and per request.
    pub fn request_id(&self) -> String {
        let n = self.id_next.fetch_add(1, Ordering::Relaxed);
        format!("sy-{:012x}{n:08x}", self.id_prefix)
    }
}

/// The proxy's routes.
pub fn router(state: State) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/embeddings", post(chat::embeddings))
        .route("/v1/models", get(admin::models))
        .route("/healthz", get(admin::healthz))
        .route("/metrics", get(admin::metrics))
        .route(
            "/admin/policy",
            get(admin::get_policy).put(admin::put_policy),
        )
        .fallback(super::error::no_route)
        .layer(axum::middleware::from_fn(super::error::openai_shaped))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Binds the proxy's address.
pub async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {listen}: {e}")))
}

/// Binds, then [`serve`]s.
pub async fn run(
    state: State,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = bind(state.opts.listen).await?;
    serve(state, listener, shutdown).await
}

/// Prints `switchyard proxy listening on http://ADDR`, serves until `shutdown` resolves,
/// then stops watching the policy file and lets in-flight requests finish.
pub async fn serve(
    state: State,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let bound = listener.local_addr()?;
    let watcher = state
        .opts
        .policy_path
        .clone()
        .map(|p| tokio::spawn(admin::watch_policy(state.clone(), p)));
    println!("switchyard proxy listening on http://{bound}");
    tracing::info!(%bound, "proxy listening");
    // Small SSE chunks and answers go out at once, not after Nagle's delay.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Internal(format!("proxy server: {e}")));
    if let Some(w) = watcher {
        w.abort();
    }
    served
}
