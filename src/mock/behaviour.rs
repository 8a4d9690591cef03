//! The mock upstream's live state: one entry per model seen (its profile, catalog price,
//! request counter and the behaviour tests switch on through `POST /mock/behaviour`), and the
//! effective behaviour of a request (profile, then the switches).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Deserializer, Serialize};

use super::profile::{Profile, Profiles};
use crate::error::{Error, Result};
use crate::prices::{ModelPrice, PriceCatalog};

/// Distinct model names the mock keeps state for; requests for more are refused.
const MAX_MODELS: usize = 10_000;

/// Switches over a model's profile; `None` = the profile's value.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Behaviour {
    /// Answer every request with this status and an OpenAI error body.
    pub status: Option<u16>,
    pub latency_ms: Option<u64>,
    pub ttft_ms: Option<u64>,
    pub tokens_per_s: Option<f64>,
    pub error_rate: Option<f64>,
    /// Drop the connection of a stream after this many chunks.
    pub abort_after_chunks: Option<u32>,
    /// `false` omits `usage` from answers and streams.
    pub usage: Option<bool>,
    /// `true` adds OpenRouter-style `usage.cost` (USD, catalog prices).
    pub report_cost: Option<bool>,
}

/// A `POST /mock/behaviour` body: absent fields stay as they are, `null` clears a field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    /// A model name, or `*` for every model (those seen and those to come).
    pub model: String,
    #[serde(default, deserialize_with = "present")]
    pub status: Option<Option<u16>>,
    #[serde(default, deserialize_with = "present")]
    pub latency_ms: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    pub ttft_ms: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    pub tokens_per_s: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    pub error_rate: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    pub abort_after_chunks: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    pub usage: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    pub report_cost: Option<Option<bool>>,
}

/// A field that is present (possibly `null`) becomes `Some(...)`; absent ones default to `None`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl Patch {
    /// Rejects values no request could follow.
    pub fn validate(&self) -> Result<()> {
        if let Some(Some(s)) = self.status
            && !(100..=599).contains(&s)
        {
            return Err(Error::Invalid(format!("status {s} is not an HTTP status")));
        }
        if let Some(Some(r)) = self.error_rate
            && !(0.0..=1.0).contains(&r)
        {
            return Err(Error::Invalid("error_rate must be in [0, 1]".into()));
        }
        if let Some(Some(r)) = self.tokens_per_s
            && (!r.is_finite() || r < 0.0)
        {
            return Err(Error::Invalid("tokens_per_s must be >= 0".into()));
        }
        Ok(())
    }

    fn apply(&self, b: &mut Behaviour) {
        fn set<T: Clone>(slot: &mut Option<T>, v: &Option<Option<T>>) {
            if let Some(v) = v {
                *slot = v.clone();
            }
        }
        set(&mut b.status, &self.status);
        set(&mut b.latency_ms, &self.latency_ms);
        set(&mut b.ttft_ms, &self.ttft_ms);
        set(&mut b.tokens_per_s, &self.tokens_per_s);
        set(&mut b.error_rate, &self.error_rate);
        set(&mut b.abort_after_chunks, &self.abort_after_chunks);
        set(&mut b.usage, &self.usage);
        set(&mut b.report_cost, &self.report_cost);
    }
}

/// What one request does: the profile with the switches applied.
#[derive(Debug, Clone, Copy)]
pub struct Effective {
    pub status: Option<u16>,
    pub latency_ms: Option<u64>,
    pub ttft_ms: u64,
    pub tokens_per_s: f64,
    pub error_rate: f64,
    pub abort_after_chunks: Option<u32>,
    pub usage: bool,
    pub report_cost: bool,
}

/// The state of one model.
#[derive(Debug)]
pub struct ModelState {
    pub name: Arc<str>,
    pub profile: Profile,
    /// Catalog prices, resolved once when the model is first seen.
    pub price: Option<Arc<ModelPrice>>,
    behaviour: RwLock<Behaviour>,
    requests: AtomicU64,
}

impl ModelState {
    /// Counts a request and returns what it should do.
    pub fn begin(&self) -> Effective {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let p = &self.profile;
        let b = match self.behaviour.read() {
            Ok(b) => b.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        Effective {
            status: b.status,
            latency_ms: b.latency_ms.or(p.latency_ms),
            ttft_ms: b.ttft_ms.unwrap_or(p.ttft_ms),
            tokens_per_s: b.tokens_per_s.unwrap_or(p.tokens_per_s),
            error_rate: b.error_rate.unwrap_or(p.error_rate),
            abort_after_chunks: b.abort_after_chunks,
            usage: b.usage.unwrap_or(true),
            report_cost: b.report_cost.unwrap_or(false),
        }
    }

    fn with_behaviour<R>(&self, f: impl FnOnce(&mut Behaviour) -> R) -> R {
        match self.behaviour.write() {
            Ok(mut b) => f(&mut b),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

/// Every model's state, created on first use.
#[derive(Debug)]
pub struct Registry {
    profiles: Profiles,
    catalog: PriceCatalog,
    models: RwLock<HashMap<Arc<str>, Arc<ModelState>>>,
    /// The `*` switches, which models seen later start from.
    wild: RwLock<Behaviour>,
}

/// `GET /mock/stats`.
#[derive(Debug, Serialize)]
pub struct Stats {
    pub requests: BTreeMap<String, u64>,
    pub total: u64,
}

impl Registry {
    pub fn new(profiles: Profiles, catalog: PriceCatalog) -> Registry {
        let r = Registry {
            profiles,
            catalog,
            models: RwLock::new(HashMap::new()),
            wild: RwLock::new(Behaviour::default()),
        };
        let names: Vec<String> = r.profiles.models.keys().cloned().collect();
        for n in names {
            // The profiles' own models are always known (and listed by /v1/models).
            let _ = r.model(&n);
        }
        r
    }

    /// The state of `name`, created from its profile on first use.
    pub fn model(&self, name: &str) -> Result<Arc<ModelState>> {
        if let Ok(m) = self.models.read()
            && let Some(s) = m.get(name)
        {
            return Ok(s.clone());
        }
        let mut m = self
            .models
            .write()
            .map_err(|_| Error::Internal("mock model table poisoned".into()))?;
        if let Some(s) = m.get(name) {
            return Ok(s.clone());
        }
        if m.len() >= MAX_MODELS {
            return Err(Error::Invalid(format!(
                "the mock keeps at most {MAX_MODELS} distinct models"
            )));
        }
        let behaviour = self.wild.read().map(|w| w.clone()).unwrap_or_default();
        let key: Arc<str> = Arc::from(name);
        let s = Arc::new(ModelState {
            name: key.clone(),
            profile: self.profiles.get(name).clone(),
            price: self.catalog.lookup(name),
            behaviour: RwLock::new(behaviour),
            requests: AtomicU64::new(0),
        });
        m.insert(key, s.clone());
        Ok(s)
    }

    /// Merges a patch into one model's switches, or every model's for `*`; returns the
    /// resulting switches.
    pub fn apply(&self, patch: &Patch) -> Result<Behaviour> {
        patch.validate()?;
        if patch.model == "*" {
            let mut w = self
                .wild
                .write()
                .map_err(|_| Error::Internal("mock switches poisoned".into()))?;
            patch.apply(&mut w);
            for s in self.all() {
                s.with_behaviour(|b| patch.apply(b));
            }
            return Ok(w.clone());
        }
        let s = self.model(&patch.model)?;
        Ok(s.with_behaviour(|b| {
            patch.apply(b);
            b.clone()
        }))
    }

    fn all(&self) -> Vec<Arc<ModelState>> {
        self.models
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Request counts per model (models with at least one request).
    pub fn stats(&self) -> Stats {
        let mut requests = BTreeMap::new();
        let mut total = 0;
        for s in self.all() {
            let n = s.requests.load(Ordering::Relaxed);
            if n > 0 {
                requests.insert(s.name.to_string(), n);
                total += n;
            }
        }
        Stats { requests, total }
    }

    /// Zeroes the counters and clears every switch.
    pub fn reset(&self) {
        if let Ok(mut w) = self.wild.write() {
            *w = Behaviour::default();
        }
        for s in self.all() {
            s.requests.store(0, Ordering::Relaxed);
            s.with_behaviour(|b| *b = Behaviour::default());
        }
    }
}
