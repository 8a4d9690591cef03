//! One upstream attempt: the call within the attempt's time, its outcome (an answer for the
//! client, or a retryable failure for the next candidate), the non-streamed answer with its
//! usage read and cost added, and the attempt's log record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;

use super::body::{self, Fields, WireUsage};
use super::budget::Reservation;
use super::chat::{Ctx, H_COST, H_MODEL, H_POLICY, H_REQUEST_ID, Kind};
use super::error::ProxyError;
use super::stream;
use crate::record::{Record, Usage};

/// An attempt's record until it is logged. Dropped unlogged — the client left while the
/// upstream was still working on it — it is logged as cancelled (status 499).
pub(super) struct Pending<'a> {
    rec: Option<Record>,
    ctx: &'a Ctx,
    t0: Instant,
}

impl Pending<'_> {
    /// The record, to log now.
    pub(super) fn take(&mut self) -> Record {
        self.rec.take().unwrap_or_default()
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(mut rec) = self.rec.take() {
            rec.status = Some(stream::STATUS_CLIENT_CLOSED);
            rec.finish_reason = Some(stream::FINISH_CANCELLED.into());
            rec.error = Some("the client closed the connection before the answer".into());
            rec.latency_ms = Some(ms(self.t0.elapsed()));
            super::stats::Stats::inc(&self.ctx.p.stats.cancelled);
            self.ctx.p.sink.send(rec);
        }
    }
}

/// The gateway name in the proxy's log records.
pub const GATEWAY: &str = "switchyard";
/// Largest error body read from an upstream.
const MAX_ERROR_BODY: usize = 64 << 10;

/// How one attempt ended.
pub(super) enum Outcome {
    /// The answer (or a non-retryable upstream error) for the client.
    Answer(Response),
    /// Worth trying the next candidate.
    Retry(Failure),
}

/// A retryable failure, kept to answer with when nothing succeeds.
pub(super) struct Failure {
    pub status: StatusCode,
    pub body: Option<Bytes>,
    pub message: String,
}

impl Failure {
    pub(super) fn into_response(self) -> Response {
        match self.body {
            Some(b) if body::upstream_error_message(&b).is_some() => (
                self.status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                b,
            )
                .into_response(),
            _ => ProxyError::upstream(self.status, self.message).into_response(),
        }
    }
}

/// Which upstream, which model, why, and the attempt's number.
pub struct Attempt {
    pub n: u32,
    pub ui: usize,
    pub model: Arc<str>,
    pub route: Arc<str>,
}

impl Ctx {
    /// The request id of attempt `n`: the request's for the first, suffixed after.
    pub fn attempt_id(&self, n: u32) -> String {
        if n <= 1 {
            self.rid.clone()
        } else {
            format!("{}.{n}", self.rid)
        }
    }

    /// A log record for an attempt, filled with what every attempt shares.
    pub fn record(&self, a: &Attempt, ts_us: i64) -> Record {
        let mut r = Record {
            request_id: self.attempt_id(a.n),
            ts_us,
            model: a.model.to_string(),
            task: Some(self.task.clone()),
            gateway: Some(GATEWAY.to_string()),
            key_id: self.key_id.as_deref().map(str::to_string),
            streamed: Some(self.head.stream),
            attempt: Some(a.n as i32),
            parent_id: (a.n > 1).then(|| self.rid.clone()),
            policy_version: self.live.version.as_deref().map(str::to_string),
            route: Some(a.route.to_string()),
            ..Record::default()
        };
        r.metadata.insert(
            "upstream".into(),
            self.p.upstreams.list[a.ui].name.to_string(),
        );
        r
    }

    /// The cost of `usage` on `model`: the upstream's own figure, else the catalog's.
    pub fn cost(&self, model: &str, usage: &Usage, reported: Option<Decimal>) -> Option<Decimal> {
        reported.or_else(|| self.p.prices.cost(model, usage))
    }

    /// The headers every answer carries.
    pub fn headers(&self, a: &Attempt, cost: Option<Decimal>) -> HeaderMap {
        let mut h = HeaderMap::with_capacity(5);
        if let Ok(v) = HeaderValue::try_from(self.attempt_id(a.n)) {
            h.insert(H_REQUEST_ID, v);
        }
        if let Ok(v) = HeaderValue::try_from(&*a.model) {
            h.insert(H_MODEL, v);
        }
        if let Some(v) = &self.live.version_header {
            h.insert(H_POLICY, v.clone());
        }
        if let Some(c) = cost
            && let Ok(v) = HeaderValue::try_from(c.normalize().to_string())
        {
            h.insert(H_COST, v);
        }
        h
    }

    /// Logs a failed attempt and reports it to the upstream's breaker.
    fn failed(&self, a: &Attempt, rec: Record, t0: Instant, f: Failure) -> Outcome {
        self.p.upstreams.report(a.ui, false);
        let mut rec = rec;
        rec.status = Some(i32::from(f.status.as_u16()));
        rec.error = Some(f.message.clone());
        rec.latency_ms = Some(ms(t0.elapsed()));
        self.p.sink.send(rec);
        tracing::debug!(upstream = %self.p.upstreams.list[a.ui].name, model = %a.model, status = %f.status, error = %f.message, "attempt failed; trying the next");
        Outcome::Retry(f)
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One upstream call.
pub(super) async fn call(
    ctx: &Ctx,
    a: &Attempt,
    body: Bytes,
    reservation: &mut Option<Reservation>,
) -> Outcome {
    let up = &ctx.p.upstreams.list[a.ui];
    let t0 = Instant::now();
    let mut rec = Pending {
        rec: Some(ctx.record(a, chrono::Utc::now().timestamp_micros())),
        ctx,
        t0,
    };
    let budget = ctx.deadline.saturating_duration_since(t0).min(up.timeout);
    let url = match ctx.kind {
        Kind::Chat => up.chat_url.clone(),
        Kind::Embeddings => up.embeddings_url.clone(),
    };
    let mut req = ctx
        .p
        .upstreams
        .client
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(auth) = &up.auth {
        req = req.header(header::AUTHORIZATION, auth.clone());
    }
    let streaming = ctx.head.stream && ctx.kind == Kind::Chat;
    if !streaming {
        // The whole exchange, body included, within the attempt's time.
        req = req.timeout(budget);
    }
    // reqwest's own timeout bounds a non-streamed exchange; a stream's headers get a timer.
    let sent = if streaming {
        tokio::time::timeout(budget, req.send()).await
    } else {
        Ok(req.send().await)
    };
    let resp = match sent {
        Err(_) => return ctx.failed(a, rec.take(), t0, timeout_failure(budget)),
        Ok(Err(e)) => return ctx.failed(a, rec.take(), t0, transport_failure(&e, budget)),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    if !status.is_success() {
        let left = budget.saturating_sub(t0.elapsed());
        let body = read_limited(resp, left).await;
        let message = body
            .as_deref()
            .and_then(body::upstream_error_message)
            .unwrap_or_else(|| format!("upstream {} answered {status}", up.name));
        let f = Failure {
            status,
            body,
            message,
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return ctx.failed(a, rec.take(), t0, f);
        }
        // The request itself is wrong: another upstream would say the same.
        ctx.p.upstreams.report(a.ui, true);
        let mut rec = rec.take();
        rec.status = Some(i32::from(status.as_u16()));
        rec.error = Some(f.message.clone());
        rec.latency_ms = Some(ms(t0.elapsed()));
        ctx.p.sink.send(rec);
        if let Some(r) = reservation.take() {
            r.settle(Some(Decimal::ZERO));
        }
        let mut r = f.into_response();
        r.headers_mut().extend(ctx.headers(a, None));
        return Outcome::Answer(r);
    }
    if streaming {
        return match stream::start(ctx, a, &mut rec, t0, budget, resp, reservation).await {
            Ok(r) => Outcome::Answer(r),
            Err(f) => ctx.failed(a, rec.take(), t0, f),
        };
    }
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return ctx.failed(a, rec.take(), t0, transport_failure(&e, budget)),
    };
    ctx.p.upstreams.report(a.ui, true);
    Outcome::Answer(answer(ctx, a, rec.take(), t0, bytes, reservation.take()))
}

/// A successful non-streamed answer: usage read, cost added, attempt logged.
fn answer(
    ctx: &Ctx,
    a: &Attempt,
    mut rec: Record,
    t0: Instant,
    bytes: Bytes,
    reservation: Option<Reservation>,
) -> Response {
    let latency = t0.elapsed();
    let fields = Fields::parse(&bytes).ok();
    let usage_raw = fields
        .as_ref()
        .and_then(|f| f.get("usage"))
        .filter(|r| r.get() != "null");
    let wire = usage_raw.and_then(WireUsage::parse);
    let (usage, reported) = match &wire {
        Some(w) => (w.usage(), w.cost),
        None => {
            let out = fields
                .as_ref()
                .and_then(|f| f.get("choices"))
                .map_or(0, |c| c.get().len());
            rec.metadata.insert("usage_estimated".into(), "true".into());
            (
                Usage {
                    prompt: body::estimate_tokens(ctx.head.prompt_bytes),
                    completion: match ctx.kind {
                        Kind::Chat => body::estimate_tokens(out),
                        Kind::Embeddings => 0,
                    },
                    ..Usage::default()
                },
                None,
            )
        }
    };
    let cost = ctx.cost(&a.model, &usage, reported);
    if let Some(r) = reservation {
        r.settle(cost);
    }
    rec.finish_reason =
        body::summarize_choices(fields.as_ref().and_then(|f| f.get("choices"))).finish_reason;
    fill_usage(&mut rec, &usage, reported);
    rec.status = Some(200);
    rec.latency_ms = Some(ms(latency));
    ctx.p.sink.send(rec);
    let out = match (&fields, usage_raw, cost) {
        (Some(f), Some(u), Some(c)) => match body::usage_with_cost(u, c) {
            Some(with_cost) => {
                let mut v = Vec::with_capacity(bytes.len() + 32);
                f.write(&[("usage", &with_cost)], &[], &mut v);
                Bytes::from(v)
            }
            None => bytes.clone(),
        },
        _ => bytes.clone(),
    };
    let mut h = ctx.headers(a, cost);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    (h, out).into_response()
}

/// Token counts (and a reported cost) into a record; the store prices the rest.
pub fn fill_usage(rec: &mut Record, u: &Usage, reported: Option<Decimal>) {
    rec.prompt_tokens = Some(u.prompt);
    rec.completion_tokens = Some(u.completion);
    rec.cached_tokens = (u.cached > 0).then_some(u.cached);
    rec.cache_write_tokens = (u.cache_write > 0).then_some(u.cache_write);
    rec.reasoning_tokens = (u.reasoning > 0).then_some(u.reasoning);
    rec.cost_usd = reported;
}

pub(super) fn timeout_failure(budget: Duration) -> Failure {
    Failure {
        status: StatusCode::GATEWAY_TIMEOUT,
        body: None,
        message: format!("upstream did not answer within {} ms", budget.as_millis()),
    }
}

/// Timeouts, refused connections and broken exchanges: all worth another upstream.
pub(super) fn transport_failure(e: &reqwest::Error, budget: Duration) -> Failure {
    if e.is_timeout() {
        return timeout_failure(budget);
    }
    let what = if e.is_connect() {
        "cannot connect to upstream"
    } else {
        "upstream exchange failed"
    };
    let mut message = format!("{what}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        message.push_str(&format!(": {s}"));
        src = s.source();
    }
    Failure {
        status: StatusCode::BAD_GATEWAY,
        body: None,
        message,
    }
}

/// An error body, bounded in size and time.
async fn read_limited(resp: reqwest::Response, left: Duration) -> Option<Bytes> {
    use futures::StreamExt as _;
    let read = async {
        let mut s = resp.bytes_stream();
        let mut buf = Vec::new();
        while let Some(Ok(chunk)) = s.next().await {
            buf.extend_from_slice(&chunk);
            if buf.len() >= MAX_ERROR_BODY {
                buf.truncate(MAX_ERROR_BODY);
                break;
            }
        }
        Bytes::from(buf)
    };
    tokio::time::timeout(left, read).await.ok()
}
