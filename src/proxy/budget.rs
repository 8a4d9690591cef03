//! Daily USD budgets per client key and per task (`[[budget]]`), held under concurrency.
//!
//! Before calling an upstream the proxy reserves the request's worst-case cost
//! ([`worst_case_cost`]: prompt tokens at the dearest input price, `max_tokens` (or the rest of
//! the model's context window) at the dearest output price) against every budget that applies;
//! after the call it settles the reservation to the real cost. A reservation is admitted only
//! when, for every applicable budget, `spent + outstanding reservations + worst case <= limit`,
//! checked and taken under the budgets' locks at once (short, never held across an await), so a
//! burst of concurrent requests cannot overshoot a limit: today's spend stays at or below the
//! limit unless a request costs more than it reserved, and then by at most that excess.
//!
//! Days are UTC: each budget's counters start from zero at midnight. A reservation taken
//! yesterday and settled today changes nothing today (its record carries yesterday's date).
//! [`Budgets::seed_from_store`] starts today's counters from the spend already in the store.
//!
//! Decisions:
//! - `on_exceed = "downgrade:MODEL"`: a request that does not fit is served by MODEL instead.
//!   The downgraded request is still tracked (its cost is added to every applicable budget
//!   through [`Budgets::reserve_downgraded`]) but admitted past the limit: serving it cheaply is
//!   the point of the setting. When several budgets refuse a request, a `reject` wins over a
//!   `downgrade`.
//! - A model without a catalog price under a budget cannot be bounded, so the proxy rejects it
//!   ([`unpriced_message`] names the model); a request no budget applies to is never refused.
//! - A reservation dropped without [`Reservation::settle`] (the request task died) keeps the
//!   reserved amount as spent, and `settle(None)` (the cost is unknown) does the same.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rust_decimal::Decimal;

use crate::config::Budget;
use crate::error::{Error, Result};
use crate::prices::PriceCatalog;
use crate::query::{QueryConfig, QueryEngine};
use crate::store::Store;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// What the proxy does with a request that does not fit a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnExceed {
    /// Answer 429.
    Reject,
    /// Serve this (cheaper) model instead.
    Downgrade(String),
}

impl OnExceed {
    fn parse(s: &str) -> Result<OnExceed> {
        if s == "reject" {
            return Ok(OnExceed::Reject);
        }
        match s.strip_prefix("downgrade:").map(str::trim) {
            Some(m) if !m.is_empty() => Ok(OnExceed::Downgrade(m.to_string())),
            _ => Err(Error::Config(format!(
                "on_exceed = {s:?}: must be \"reject\" or \"downgrade:MODEL\""
            ))),
        }
    }
}

/// A request refused by a budget: which one, its limit, today's spend including outstanding
/// reservations, and what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    /// `key:NAME` or `task:NAME`.
    pub budget: String,
    pub limit_usd: Decimal,
    pub spent_usd: Decimal,
    pub action: OnExceed,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "daily budget {} exceeded: {} of {} USD already spent or reserved today (UTC), \
             and this request's worst-case cost does not fit",
            self.budget,
            self.spent_usd.normalize(),
            self.limit_usd.normalize()
        )
    }
}

/// What [`Budgets::admit`] decided for a request.
#[derive(Debug)]
pub enum Admission {
    /// Serve `model` (the requested one, or a budget's downgrade model, then `downgraded_by`
    /// names that budget); settle `reservation` with the real cost afterwards.
    Serve {
        model: String,
        reservation: Reservation,
        downgraded_by: Option<String>,
    },
    /// Answer 429 with `message`; `budget` is the refusing budget (`None`: the model has no
    /// price under a budget).
    Reject {
        message: String,
        budget: Option<String>,
    },
}

/// The message for a request to a model without a price while a budget applies.
pub fn unpriced_message(model: &str) -> String {
    format!(
        "model {model:?} has no price in the catalog, so its cost cannot be bounded under the \
         daily budget that applies to this request (add its price with `switchyard prices import`)"
    )
}

#[derive(Debug)]
enum Scope {
    Key(String),
    Task(String),
}

#[derive(Debug, Default)]
struct Day {
    /// UTC day number (days since the epoch) the counters belong to.
    day: i64,
    spent: Decimal,
    reserved: Decimal,
}

impl Day {
    fn roll(&mut self, today: i64) {
        if self.day != today {
            *self = Day {
                day: today,
                ..Day::default()
            };
        }
    }
}

#[derive(Debug)]
struct Entry {
    name: String,
    scope: Scope,
    limit: Decimal,
    action: OnExceed,
    state: Mutex<Day>,
}

impl Entry {
    fn applies(&self, key_id: &str, task: &str) -> bool {
        match &self.scope {
            Scope::Key(k) => k == key_id,
            Scope::Task(t) => t == task,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Day> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The clock: UTC microseconds since the epoch.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

struct Inner {
    entries: Vec<Entry>,
    clock: Clock,
}

/// The configured budgets and today's spend against each; cheap to clone.
#[derive(Clone)]
pub struct Budgets {
    inner: Arc<Inner>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.name))
            .finish()
    }
}

impl fmt::Debug for Budgets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// Spend held against the budgets for one request until it is settled.
#[must_use = "settle the reservation with the request's real cost"]
#[derive(Debug)]
pub struct Reservation {
    budgets: Option<Arc<Inner>>,
    entries: Vec<usize>,
    amount: Decimal,
    day: i64,
}

impl Budgets {
    pub fn new(cfg: &[Budget]) -> Result<Budgets> {
        Budgets::with_clock(cfg, Arc::new(|| chrono::Utc::now().timestamp_micros()))
    }

    /// Budgets on a given clock (tests move it across midnight).
    pub fn with_clock(cfg: &[Budget], clock: Clock) -> Result<Budgets> {
        let mut entries = Vec::with_capacity(cfg.len());
        for (i, b) in cfg.iter().enumerate() {
            let scope = match (&b.key, &b.task) {
                (Some(k), None) => Scope::Key(k.clone()),
                (None, Some(t)) => Scope::Task(t.clone()),
                _ => {
                    return Err(Error::Config(format!(
                        "budget[{i}]: set exactly one of `key` or `task`"
                    )));
                }
            };
            // The shortest decimal that reads back as the configured float: 0.1 stays 0.1.
            let limit: Decimal = format!("{}", b.daily_usd)
                .parse()
                .ok()
                .filter(|d: &Decimal| !d.is_sign_negative())
                .ok_or_else(|| {
                    Error::Config(format!(
                        "budget[{i}]: daily_usd = {} is not an amount >= 0",
                        b.daily_usd
                    ))
                })?;
            let name = match &scope {
                Scope::Key(k) => format!("key:{k}"),
                Scope::Task(t) => format!("task:{t}"),
            };
            entries.push(Entry {
                name,
                scope,
                limit,
                action: OnExceed::parse(&b.on_exceed)
                    .map_err(|e| Error::Config(format!("budget[{i}]: {e}")))?,
                state: Mutex::new(Day::default()),
            });
        }
        Ok(Budgets {
            inner: Arc::new(Inner { entries, clock }),
        })
    }

    /// No budget configured: the proxy skips reservations altogether.
    pub fn is_empty(&self) -> bool {
        self.inner.entries.is_empty()
    }

    /// Whether any budget covers this key or task.
    pub fn applies(&self, key_id: &str, task: &str) -> bool {
        self.inner.entries.iter().any(|e| e.applies(key_id, task))
    }

    fn today(&self) -> i64 {
        (self.inner.clock)().div_euclid(MICROS_PER_DAY)
    }

    /// Sets today's spend of each budget from the store: the Parquet files and the unflushed
    /// buffer, summed per key and task over today's (UTC) records with a known cost. Call it
    /// once at start, before traffic.
    pub async fn seed_from_store(&self, store: &Store) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let now = (self.inner.clock)();
        let today = now.div_euclid(MICROS_PER_DAY);
        let (date, _) = crate::schema::partition_of(now);
        let engine = QueryEngine::new(store.clone(), QueryConfig::default())?;
        let result = engine
            .sql(&format!(
                "SELECT key_id, task, CAST(sum(cost_usd) AS VARCHAR) AS spent FROM requests \
                 WHERE date = '{date}' AND cost_usd IS NOT NULL GROUP BY key_id, task"
            ))
            .await?;
        let mut rows: Vec<(Option<String>, String, Decimal)> = Vec::new();
        for row in crate::query::output::json_rows(&result)? {
            let text = |k: &str| row.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let spent = text("spent")
                .and_then(|s| s.parse::<Decimal>().ok())
                .ok_or_else(|| Error::Internal(format!("budget seed: bad sum in {row:?}")))?;
            rows.push((text("key_id"), text("task").unwrap_or_default(), spent));
        }
        for e in &self.inner.entries {
            let spent: Decimal = rows
                .iter()
                .filter(|(k, t, _)| e.applies(k.as_deref().unwrap_or(""), t))
                .map(|(_, _, s)| *s)
                .sum();
            let mut d = e.lock();
            d.roll(today);
            d.spent = spent;
            tracing::info!(budget = %e.name, spent_usd = %spent.normalize(), limit_usd = %e.limit, "budget seeded from the store");
        }
        Ok(())
    }

    /// Reserves `worst_usd` against every budget that applies, or refuses when one of them
    /// cannot hold it. A request no budget applies to gets an empty reservation.
    pub fn reserve(
        &self,
        key_id: &str,
        task: &str,
        worst_usd: Decimal,
    ) -> Result<Reservation, Exceeded> {
        self.take(key_id, task, worst_usd, true)
    }

    /// Reserves `worst_usd` for a request already downgraded by an `on_exceed` rule: counted
    /// against every budget that applies, never refused.
    pub fn reserve_downgraded(&self, key_id: &str, task: &str, worst_usd: Decimal) -> Reservation {
        match self.take(key_id, task, worst_usd, false) {
            Ok(r) => r,
            // Unreachable: an unchecked take never refuses; an empty reservation is the safe answer.
            Err(_) => Reservation::empty(),
        }
    }

    fn take(
        &self,
        key_id: &str,
        task: &str,
        worst_usd: Decimal,
        check: bool,
    ) -> Result<Reservation, Exceeded> {
        let entries: Vec<usize> = (self.inner.entries.iter().enumerate())
            .filter(|(_, e)| e.applies(key_id, task))
            .map(|(i, _)| i)
            .collect();
        if entries.is_empty() {
            return Ok(Reservation::empty());
        }
        let amount = worst_usd.max(Decimal::ZERO);
        let today = self.today();
        // Locked in index order (no deadlock between requests under the same budgets), all
        // held while checking and reserving: admission is atomic across budgets.
        let mut guards: Vec<(&Entry, MutexGuard<'_, Day>)> = entries
            .iter()
            .map(|i| {
                let e = &self.inner.entries[*i];
                (e, e.lock())
            })
            .collect();
        let mut refused: Option<Exceeded> = None;
        for (e, d) in &mut guards {
            d.roll(today);
            let committed = d.spent + d.reserved;
            if check && committed + amount > e.limit {
                let better = match &refused {
                    None => true,
                    Some(r) => r.action != OnExceed::Reject && e.action == OnExceed::Reject,
                };
                if better {
                    refused = Some(Exceeded {
                        budget: e.name.clone(),
                        limit_usd: e.limit,
                        spent_usd: committed,
                        action: e.action.clone(),
                    });
                }
            }
        }
        if let Some(r) = refused {
            return Err(r);
        }
        for (_, d) in &mut guards {
            d.reserved += amount;
        }
        drop(guards);
        Ok(Reservation {
            budgets: Some(self.inner.clone()),
            entries,
            amount,
            day: today,
        })
    }

    /// The whole admission decision for one request, as the module doc describes: no budget
    /// applies → serve as asked; an unpriced model → reject; fits → serve with a reservation;
    /// does not fit → reject, or serve the budget's downgrade model with a reservation for it
    /// (an unpriced downgrade model reserves nothing; settle it with the real cost).
    pub fn admit(
        &self,
        prices: &PriceCatalog,
        key_id: &str,
        task: &str,
        model: &str,
        prompt_tokens: u64,
        max_output_tokens: Option<u64>,
    ) -> Admission {
        if !self.applies(key_id, task) {
            return Admission::Serve {
                model: model.to_string(),
                reservation: Reservation::empty(),
                downgraded_by: None,
            };
        }
        let Some(worst) = worst_case_cost(prices, model, prompt_tokens, max_output_tokens) else {
            return Admission::Reject {
                message: unpriced_message(model),
                budget: None,
            };
        };
        match self.reserve(key_id, task, worst) {
            Ok(reservation) => Admission::Serve {
                model: model.to_string(),
                reservation,
                downgraded_by: None,
            },
            Err(e) => match e.action {
                OnExceed::Reject => Admission::Reject {
                    message: e.to_string(),
                    budget: Some(e.budget),
                },
                OnExceed::Downgrade(cheap) => {
                    let worst = worst_case_cost(prices, &cheap, prompt_tokens, max_output_tokens)
                        .unwrap_or(Decimal::ZERO);
                    Admission::Serve {
                        reservation: self.reserve_downgraded(key_id, task, worst),
                        model: cheap,
                        downgraded_by: Some(e.budget),
                    }
                }
            },
        }
    }

    /// Today's `(spent, outstanding reservations)` of a budget named `key:NAME` / `task:NAME`.
    pub fn usage(&self, budget: &str) -> Option<(Decimal, Decimal)> {
        let today = self.today();
        self.inner
            .entries
            .iter()
            .find(|e| e.name == budget)
            .map(|e| {
                let mut d = e.lock();
                d.roll(today);
                (d.spent, d.reserved)
            })
    }

    /// Prometheus gauges: each budget's limit, spend and outstanding reservations today.
    pub fn render_metrics(&self, out: &mut String) {
        if self.is_empty() {
            return;
        }
        let today = self.today();
        let rows: Vec<(String, Decimal, Decimal, Decimal)> = (self.inner.entries.iter())
            .map(|e| {
                let mut d = e.lock();
                d.roll(today);
                (e.name.clone(), e.limit, d.spent, d.reserved)
            })
            .collect();
        for (metric, help, pick) in [
            (
                "switchyard_proxy_budget_limit_usd",
                "Daily limit of each budget.",
                0,
            ),
            (
                "switchyard_proxy_budget_spent_usd",
                "Spend settled against each budget today (UTC).",
                1,
            ),
            (
                "switchyard_proxy_budget_reserved_usd",
                "Outstanding reservations against each budget.",
                2,
            ),
        ] {
            out.push_str(&format!("# HELP {metric} {help}\n# TYPE {metric} gauge\n"));
            for (name, limit, spent, reserved) in &rows {
                let v = [limit, spent, reserved][pick].normalize();
                out.push_str(&format!("{metric}{{budget=\"{name}\"}} {v}\n"));
            }
        }
    }
}

impl Reservation {
    fn empty() -> Reservation {
        Reservation {
            budgets: None,
            entries: Vec::new(),
            amount: Decimal::ZERO,
            day: 0,
        }
    }

    /// The amount held.
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    /// Replaces the reservation by the real cost; `None` (cost unknown) keeps the reserved
    /// amount as spent.
    pub fn settle(mut self, actual_usd: Option<Decimal>) {
        let cost = actual_usd.map_or(self.amount, |c| c.max(Decimal::ZERO));
        self.finish(cost);
    }

    fn finish(&mut self, cost: Decimal) {
        let Some(inner) = self.budgets.take() else {
            return;
        };
        for i in &self.entries {
            let mut d = inner.entries[*i].lock();
            // Reserved on an earlier day: today's counters never held it.
            if d.day == self.day {
                d.reserved -= self.amount;
                d.spent += cost;
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let amount = self.amount;
        self.finish(amount);
    }
}

/// Output tokens assumed when a request sets no `max_tokens` and the catalog knows no context
/// window for the model.
pub const FALLBACK_OUTPUT_LIMIT: u64 = 32_768;

/// The most a request can cost: every prompt token at the dearest input price (uncached or a
/// cache write), and `max_output_tokens` (else the rest of the model's context window) at the
/// dearest output price (visible or reasoning). `None` when the model has no price.
pub fn worst_case_cost(
    prices: &PriceCatalog,
    model: &str,
    prompt_tokens: u64,
    max_output_tokens: Option<u64>,
) -> Option<Decimal> {
    let p = prices.lookup(model)?;
    let output = max_output_tokens.unwrap_or_else(|| match p.context_window {
        Some(w) if w > 0 => (w as u64).saturating_sub(prompt_tokens).max(1),
        _ => FALLBACK_OUTPUT_LIMIT,
    });
    let input_price = p.input.max(p.cache_write.unwrap_or(p.input));
    let output_price = p.output.max(p.reasoning.unwrap_or(p.output));
    let micro = Decimal::from(prompt_tokens) * input_price + Decimal::from(output) * output_price;
    Some(micro / Decimal::from(1_000_000))
}
