//! The proxy's counters and latency histogram (lock-free), rendered on `/metrics` beside the
//! log sink's counts and each upstream's circuit state.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::Histogram;

#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub attempts: AtomicU64,
    pub fallbacks: AtomicU64,
    pub failed: AtomicU64,
    pub cancelled: AtomicU64,
    pub rejected_budget: AtomicU64,
    pub downgraded: AtomicU64,
    pub policy_reloads: AtomicU64,
    pub policy_rejected: AtomicU64,
    pub latency: Histogram,
}

impl Stats {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, out: &mut String) {
        let rows: [(&str, &str, &AtomicU64); 9] = [
            ("requests", "Client requests received.", &self.requests),
            ("attempts", "Upstream attempts made.", &self.attempts),
            (
                "fallbacks",
                "Attempts after the first of a request.",
                &self.fallbacks,
            ),
            ("failed", "Requests answered with an error.", &self.failed),
            (
                "cancelled",
                "Streams the client left before the end.",
                &self.cancelled,
            ),
            (
                "budget_rejected",
                "Requests refused over budget.",
                &self.rejected_budget,
            ),
            (
                "budget_downgraded",
                "Requests served by a budget's cheaper model.",
                &self.downgraded,
            ),
            (
                "policy_reloads",
                "Policies put in force.",
                &self.policy_reloads,
            ),
            (
                "policy_rejected",
                "Policies refused as invalid.",
                &self.policy_rejected,
            ),
        ];
        for (name, help, v) in rows {
            let _ = writeln!(
                out,
                "# HELP switchyard_proxy_{name}_total {help}\n# TYPE switchyard_proxy_{name}_total counter\nswitchyard_proxy_{name}_total {}",
                v.load(Ordering::Relaxed)
            );
        }
        self.latency.render(
            out,
            "switchyard_proxy_request_seconds",
            "Time to the answer's headers (streams: to the first chunk).",
        );
    }
}
