//! The config file (TOML): parsed strictly (unknown keys are errors) into raw structs, then
//! validated into [`Config`]. Secrets never live in the file, only the names of the
//! environment variables that hold them.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    query: RawQuery,
    #[serde(default)]
    upstream: Vec<RawUpstream>,
    #[serde(default)]
    proxy: RawProxy,
    #[serde(default)]
    budget: Vec<RawBudget>,
    #[serde(default)]
    key: Vec<RawKey>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    max_body_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    ingest_token_env: Option<String>,
    admin_token_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    flush_interval_ms: Option<u64>,
    max_buffer_rows: Option<usize>,
    retention_days: Option<u32>,
    compact_min_files: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuery {
    memory_limit_mb: Option<usize>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: String,
    base_url: String,
    api_key_env: Option<String>,
    #[serde(default)]
    models: Vec<String>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    listen: Option<String>,
    policy: Option<String>,
    ingest_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    key: Option<String>,
    task: Option<String>,
    daily_usd: f64,
    on_exceed: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: String,
    token_env: String,
}

/// An OpenAI-compatible endpoint the proxy may call.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub base_url: String,
    pub api_key_env: Option<String>,
    pub models: Vec<String>,
    pub timeout: Duration,
}

/// A daily spending limit for a key or a task.
#[derive(Debug, Clone)]
pub struct Budget {
    pub key: Option<String>,
    pub task: Option<String>,
    pub daily_usd: f64,
    pub on_exceed: String,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Option<SocketAddr>,
    pub max_body_bytes: usize,
    /// Name of the env var holding the ingest token (default `SWITCHYARD_INGEST_TOKEN`).
    pub ingest_token_env: String,
    /// Name of the env var holding the admin token (default `SWITCHYARD_ADMIN_TOKEN`).
    pub admin_token_env: String,
    pub flush_interval: Option<Duration>,
    pub max_buffer_rows: Option<usize>,
    pub retention_days: Option<u32>,
    pub compact_min_files: Option<usize>,
    pub query_memory_limit_bytes: usize,
    pub query_timeout: Duration,
    pub upstreams: Vec<Upstream>,
    pub proxy_listen: Option<SocketAddr>,
    pub proxy_policy: Option<String>,
    pub proxy_ingest_url: Option<String>,
    pub budgets: Vec<Budget>,
    pub keys: Vec<(String, String)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: None,
            max_body_bytes: 16 << 20,
            ingest_token_env: "SWITCHYARD_INGEST_TOKEN".into(),
            admin_token_env: "SWITCHYARD_ADMIN_TOKEN".into(),
            flush_interval: None,
            max_buffer_rows: None,
            retention_days: None,
            compact_min_files: None,
            query_memory_limit_bytes: 512 << 20,
            query_timeout: Duration::from_secs(30),
            upstreams: Vec::new(),
            proxy_listen: None,
            proxy_policy: None,
            proxy_ingest_url: None,
            budgets: Vec::new(),
            keys: Vec::new(),
        }
    }
}

fn addr(field: &str, s: &Option<String>) -> Result<Option<SocketAddr>> {
    s.as_deref()
        .map(|a| {
            a.parse::<SocketAddr>()
                .map_err(|e| Error::Config(format!("{field} = {a:?}: {e}")))
        })
        .transpose()
}

fn env_name(field: &str, s: &str) -> Result<String> {
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::Config(format!(
            "{field} = {s:?}: must name an environment variable (letters, digits, _), not hold a secret"
        )));
    }
    Ok(s.to_string())
}

impl Config {
    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {e}")))?;
        let d = Config::default();
        let mut upstreams = Vec::new();
        for (i, u) in raw.upstream.into_iter().enumerate() {
            if !(u.base_url.starts_with("http://") || u.base_url.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "{origin}: upstream[{i}] ({}): base_url must start with http:// or https://",
                    u.name
                )));
            }
            upstreams.push(Upstream {
                api_key_env: u
                    .api_key_env
                    .map(|e| env_name(&format!("upstream[{i}].api_key_env"), &e))
                    .transpose()?,
                name: u.name,
                base_url: u.base_url,
                models: if u.models.is_empty() {
                    vec!["*".into()]
                } else {
                    u.models
                },
                timeout: Duration::from_millis(u.timeout_ms.unwrap_or(60_000)),
            });
        }
        let mut budgets = Vec::new();
        for (i, b) in raw.budget.into_iter().enumerate() {
            if b.key.is_some() == b.task.is_some() {
                return Err(Error::Config(format!(
                    "{origin}: budget[{i}]: set exactly one of `key` or `task`"
                )));
            }
            if !(b.daily_usd.is_finite() && b.daily_usd >= 0.0) {
                return Err(Error::Config(format!(
                    "{origin}: budget[{i}]: daily_usd must be a number >= 0"
                )));
            }
            let on_exceed = b.on_exceed.unwrap_or_else(|| "reject".into());
            if on_exceed != "reject" && !on_exceed.starts_with("downgrade:") {
                return Err(Error::Config(format!(
                    "{origin}: budget[{i}]: on_exceed must be \"reject\" or \"downgrade:MODEL\""
                )));
            }
            budgets.push(Budget {
                key: b.key,
                task: b.task,
                daily_usd: b.daily_usd,
                on_exceed,
            });
        }
        let mut keys = Vec::new();
        for (i, k) in raw.key.into_iter().enumerate() {
            keys.push((
                k.name,
                env_name(&format!("key[{i}].token_env"), &k.token_env)?,
            ));
        }
        let max_body = raw.server.max_body_bytes.unwrap_or(d.max_body_bytes as u64);
        if max_body == 0 {
            return Err(Error::Config(format!(
                "{origin}: server.max_body_bytes must be > 0"
            )));
        }
        Ok(Config {
            listen: addr("server.listen", &raw.server.listen)?,
            max_body_bytes: max_body as usize,
            ingest_token_env: raw
                .auth
                .ingest_token_env
                .map(|e| env_name("auth.ingest_token_env", &e))
                .transpose()?
                .unwrap_or(d.ingest_token_env),
            admin_token_env: raw
                .auth
                .admin_token_env
                .map(|e| env_name("auth.admin_token_env", &e))
                .transpose()?
                .unwrap_or(d.admin_token_env),
            flush_interval: raw.store.flush_interval_ms.map(Duration::from_millis),
            max_buffer_rows: raw.store.max_buffer_rows,
            retention_days: raw.store.retention_days,
            compact_min_files: raw.store.compact_min_files,
            query_memory_limit_bytes: raw
                .query
                .memory_limit_mb
                .map(|m| m << 20)
                .unwrap_or(d.query_memory_limit_bytes),
            query_timeout: raw
                .query
                .timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(d.query_timeout),
            upstreams,
            proxy_listen: addr("proxy.listen", &raw.proxy.listen)?,
            proxy_policy: raw.proxy.policy,
            proxy_ingest_url: raw.proxy.ingest_url.filter(|s| !s.is_empty()),
            budgets,
            keys,
        })
    }

    /// Loads a config file, or the defaults when there is none.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        match path {
            None => Ok(Config::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
                Config::parse(&text, &p.display().to_string())
            }
        }
    }

    /// The ingest and admin tokens, read from their environment variables.
    pub fn tokens(&self) -> Tokens {
        let get = |name: &str| std::env::var(name).ok().filter(|s| !s.is_empty());
        Tokens {
            ingest: get(&self.ingest_token_env),
            admin: get(&self.admin_token_env),
        }
    }
}

/// Bearer tokens guarding the HTTP routes; `None` means that class of route is open.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub ingest: Option<String>,
    pub admin: Option<String>,
}

impl Tokens {
    pub fn any(&self) -> bool {
        self.ingest.is_some() || self.admin.is_some()
    }
}
