//! The upstreams the proxy calls: one pooled keep-alive HTTP client for all of them (HTTP/2
//! where the server offers it over TLS), each upstream's endpoints and credential prepared
//! once, which models it serves, and its health: a circuit breaker that opens after
//! consecutive failures, skips the upstream during a cooldown and then lets one probe through.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;

use crate::config::Config;
use crate::error::{Error, Result};

/// Health settings of every upstream.
#[derive(Debug, Clone, Copy)]
pub struct Breaker {
    /// Consecutive failures that open the circuit.
    pub failures: u32,
    /// How long an open circuit skips the upstream before one probe is let through.
    pub cooldown: Duration,
}

/// One upstream, ready to call.
pub struct Upstream {
    pub name: Arc<str>,
    pub chat_url: reqwest::Url,
    pub embeddings_url: reqwest::Url,
    pub auth: Option<HeaderValue>,
    pub timeout: Duration,
    /// Models it serves by name; `None` = any model.
    pub models: Option<Vec<String>>,
    health: Health,
}

/// Circuit state, lock-free: consecutive failures, and while open the instant (ms since the
/// table was built) until which the upstream is skipped.
#[derive(Default)]
struct Health {
    consecutive: AtomicU32,
    open_until_ms: AtomicU64,
    open: AtomicBool,
}

/// What a caller may do with an upstream right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Circuit half-open: this call is the one probe.
    Probe,
    /// Cooling down: skip it.
    No,
}

/// All upstreams and the model → upstream index.
pub struct Upstreams {
    pub list: Vec<Upstream>,
    by_model: HashMap<String, Vec<usize>>,
    any_model: Vec<usize>,
    pub client: reqwest::Client,
    breaker: Breaker,
    epoch: Instant,
}

fn join(base: &str, path: &str) -> Result<reqwest::Url> {
    let s = format!("{}/{path}", base.trim_end_matches('/'));
    reqwest::Url::parse(&s).map_err(|e| Error::Config(format!("upstream url {s:?}: {e}")))
}

impl Upstreams {
    pub fn new(config: &Config, breaker: Breaker) -> Result<Upstreams> {
        let mut list = Vec::new();
        let mut by_model: HashMap<String, Vec<usize>> = HashMap::new();
        let mut any_model = Vec::new();
        for (i, u) in config.upstreams.iter().enumerate() {
            let auth = match &u.api_key_env {
                Some(env) => match std::env::var(env) {
                    Ok(k) if !k.is_empty() => Some(
                        HeaderValue::try_from(format!("Bearer {k}"))
                            .map_err(|_| {
                                Error::Config(format!(
                                    "upstream {}: {env} holds characters not allowed in a header",
                                    u.name
                                ))
                            })
                            .map(|mut v| {
                                v.set_sensitive(true);
                                v
                            })?,
                    ),
                    _ => {
                        tracing::warn!(upstream = %u.name, env = %env, "upstream key variable is not set: calling it without a key");
                        None
                    }
                },
                None => None,
            };
            let wildcard = u.models.iter().any(|m| m == "*");
            if wildcard {
                any_model.push(i);
            }
            for m in u.models.iter().filter(|m| *m != "*") {
                by_model.entry(m.clone()).or_default().push(i);
            }
            list.push(Upstream {
                name: Arc::from(u.name.as_str()),
                chat_url: join(&u.base_url, "chat/completions")?,
                embeddings_url: join(&u.base_url, "embeddings")?,
                auth,
                timeout: u.timeout,
                models: (!wildcard).then(|| u.models.clone()),
                health: Health::default(),
            });
        }
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Config(format!("upstream client: {e}")))?;
        Ok(Upstreams {
            list,
            by_model,
            any_model,
            client,
            breaker,
            epoch: Instant::now(),
        })
    }

    /// Upstreams serving `model`, named ones first, in config order.
    pub fn serving(&self, model: &str) -> impl Iterator<Item = usize> + '_ {
        self.by_model
            .get(model)
            .into_iter()
            .flatten()
            .chain(self.any_model.iter())
            .copied()
    }

    pub fn serves(&self, model: &str) -> bool {
        self.serving(model).next().is_some()
    }

    /// Every model named by an upstream.
    pub fn named_models(&self) -> impl Iterator<Item = &str> {
        self.list
            .iter()
            .filter_map(|u| u.models.as_ref())
            .flatten()
            .map(String::as_str)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether upstream `i` may be called now. Once an open circuit's cooldown is over, the
    /// first caller moves the cooldown on and is the probe; a probe that never reports (its
    /// client left) just means the next probe comes one cooldown later.
    pub fn admit(&self, i: usize) -> Admit {
        let h = &self.list[i].health;
        if !h.open.load(Ordering::Acquire) {
            return Admit::Yes;
        }
        let until = h.open_until_ms.load(Ordering::Acquire);
        let now = self.now_ms();
        if now < until {
            return Admit::No;
        }
        let next = now + self.breaker.cooldown.as_millis() as u64;
        match h
            .open_until_ms
            .compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Admit::Probe,
            Err(_) => Admit::No,
        }
    }

    /// Records a call's outcome; failures are the retryable kind (429, 5xx, timeout, connect).
    pub fn report(&self, i: usize, ok: bool) {
        let h = &self.list[i].health;
        if ok {
            h.consecutive.store(0, Ordering::Relaxed);
            if h.open.load(Ordering::Acquire) {
                h.open.store(false, Ordering::Release);
                tracing::info!(upstream = %self.list[i].name, "upstream recovered: circuit closed");
            }
            return;
        }
        let n = h.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        let was_open = h.open.load(Ordering::Acquire);
        if was_open || n >= self.breaker.failures {
            h.open_until_ms.store(
                self.now_ms() + self.breaker.cooldown.as_millis() as u64,
                Ordering::Release,
            );
            h.open.store(true, Ordering::Release);
            if !was_open {
                tracing::warn!(upstream = %self.list[i].name, failures = n, "upstream failing: circuit open");
            }
        }
    }

    /// `(name, open)` per upstream, for `/metrics`.
    pub fn states(&self) -> impl Iterator<Item = (&str, bool)> {
        self.list
            .iter()
            .map(|u| (&*u.name, u.health.open.load(Ordering::Relaxed)))
    }
}
