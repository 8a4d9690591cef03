//! The OpenAI-compatible proxy: it routes each request by the live policy to the configured
//! upstreams, with fallbacks, retries and per-upstream circuit breakers, passes streams
//! through as they arrive, authenticates client keys, holds daily budgets, and logs every
//! attempt into the store (or a remote ingest URL).
//!
//! ```text
//! client ─▶ server (routes) ─▶ chat (parse head, plan) ─▶ upstream (pooled client, health)
//!              │                  │ routing (Live policy, arc-swap)        │
//!              │                  ▼                                        ▼
//!              │            stream (SSE pass-through, usage) ◀─────── upstream answer
//!              ▼
//!           admin (models, metrics, policy reload)        every attempt ─▶ log sink ─▶ store
//! ```

mod admin;
mod attempt;
mod body;
pub mod budget;
mod chat;
pub mod control;
mod error;
pub mod keys;
mod routing;
mod server;
pub mod sink;
mod stats;
mod stream;
mod upstream;

pub use error::ProxyError;
pub use routing::AUTO;
pub use server::{Options, Proxy, bind, router, run, serve};
pub use sink::{LogSink, SinkTarget};
pub use stream::{FINISH_CANCELLED, STATUS_CLIENT_CLOSED};
pub use upstream::Breaker;
