//! Streamed chat completions: the upstream's SSE events are parsed by `eventsource-stream`
//! and passed to the client one by one as they arrive, never buffered whole. The first event
//! is awaited before the client gets headers, so an upstream that fails before it can still
//! be replaced by the next candidate; after that the stream is the client's. Usage is read
//! from the usage chunk (or a final chunk carrying choices too), which gains `cost`, and is
//! dropped when the client did not ask for it. The attempt is logged when the stream ends,
//! breaks, or the client leaves (status 499, finish reason `cancelled`, tokens so far).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use eventsource_stream::{Event as UpEvent, EventStreamError, Eventsource as _};
use futures::{Stream, StreamExt as _};
use rust_decimal::Decimal;

use super::attempt::{Attempt, Failure, Pending, fill_usage, ms, timeout_failure};
use super::body::{self, Fields, WireUsage};
use super::budget::Reservation;
use super::chat::Ctx;
use super::server::State;
use super::stats::Stats;
use crate::record::{Record, Usage};

/// Status logged for a stream the client left before its end (nginx's "client closed request").
pub const STATUS_CLIENT_CLOSED: i32 = 499;
/// Finish reason logged for it.
pub const FINISH_CANCELLED: &str = "cancelled";

type Events = Pin<Box<dyn Stream<Item = Result<UpEvent, EventStreamError<reqwest::Error>>> + Send>>;

fn failure(message: String) -> Failure {
    Failure {
        status: StatusCode::BAD_GATEWAY,
        body: None,
        message,
    }
}

/// Opens the client's stream once the upstream's first event is in; before that, a failure
/// is the caller's to retry elsewhere.
pub(super) async fn start(
    ctx: &Ctx,
    a: &Attempt,
    pending: &mut Pending<'_>,
    t0: Instant,
    budget: Duration,
    resp: reqwest::Response,
    reservation: &mut Option<Reservation>,
) -> Result<Response, Failure> {
    let mut events: Events = Box::pin(resp.bytes_stream().eventsource());
    let left = budget.saturating_sub(t0.elapsed());
    let first = match tokio::time::timeout(left, events.next()).await {
        Err(_) => return Err(timeout_failure(budget)),
        Ok(None) => {
            return Err(failure(
                "upstream closed the stream before its first chunk".into(),
            ));
        }
        Ok(Some(Err(e))) => {
            return Err(failure(format!(
                "upstream stream broke before its first chunk: {e}"
            )));
        }
        Ok(Some(Ok(ev))) => ev,
    };
    ctx.p.upstreams.report(a.ui, true);
    let log = StreamLog {
        p: ctx.p.clone(),
        rec: Some(pending.take()),
        t0,
        ttft: t0.elapsed(),
        ui: a.ui,
        model: a.model.clone(),
        client_usage: ctx.head.client_usage,
        prompt_bytes: ctx.head.prompt_bytes,
        content_bytes: 0,
        usage: None,
        reported: None,
        finish_reason: None,
        saw_done: false,
        reservation: reservation.take(),
    };
    let st = Pump {
        events,
        pending: Some(first),
        log,
    };
    let headers = ctx.headers(a, None);
    Ok((headers, Sse::new(futures::stream::unfold(st, pump))).into_response())
}

struct Pump {
    events: Events,
    pending: Option<UpEvent>,
    log: StreamLog,
}

async fn pump(mut st: Pump) -> Option<(Result<Event, Infallible>, Pump)> {
    loop {
        st.log.rec.as_ref()?;
        let ev = match st.pending.take() {
            Some(ev) => ev,
            None => match st.events.next().await {
                Some(Ok(ev)) => ev,
                Some(Err(e)) => {
                    let out = st.log.broken(format!("upstream stream broke: {e}"));
                    return Some((Ok(out), st));
                }
                None if st.log.saw_done || st.log.finish_reason.is_some() => {
                    st.log.complete();
                    return None;
                }
                None => {
                    let out = st
                        .log
                        .broken("upstream ended the stream before it finished".into());
                    return Some((Ok(out), st));
                }
            },
        };
        if let Some(out) = st.log.on_event(ev) {
            return Some((Ok(out), st));
        }
    }
}

/// What to do with one upstream event.
enum Action {
    Pass,
    Drop,
    Replace(String),
}

/// The attempt's record while its stream runs; logged exactly once (`rec` taken).
struct StreamLog {
    p: State,
    rec: Option<Record>,
    t0: Instant,
    ttft: Duration,
    ui: usize,
    model: Arc<str>,
    client_usage: bool,
    prompt_bytes: usize,
    content_bytes: usize,
    usage: Option<Usage>,
    reported: Option<Decimal>,
    finish_reason: Option<String>,
    saw_done: bool,
    reservation: Option<Reservation>,
}

impl StreamLog {
    fn on_event(&mut self, ev: UpEvent) -> Option<Event> {
        if ev.data.trim() == "[DONE]" {
            // Logged now: a client that leaves right after `[DONE]` did get the whole answer.
            self.saw_done = true;
            self.complete();
            return Some(out_event(&ev, ev.data.as_str()));
        }
        let action = match Fields::parse(ev.data.as_bytes()) {
            Err(_) => Action::Pass,
            Ok(f) => {
                let choices = body::summarize_choices(f.get("choices"));
                self.content_bytes += choices.content_bytes;
                if choices.finish_reason.is_some() {
                    self.finish_reason = choices.finish_reason;
                }
                match f.get("usage").filter(|u| u.get() != "null") {
                    None => Action::Pass,
                    Some(u) => {
                        if let Some(w) = WireUsage::parse(u) {
                            self.usage = Some(w.usage());
                            self.reported = w.cost;
                        }
                        if self.client_usage {
                            let with_cost = self.cost().and_then(|c| body::usage_with_cost(u, c));
                            match with_cost {
                                Some(uc) => {
                                    let mut v = Vec::with_capacity(ev.data.len() + 32);
                                    f.write(&[("usage", &uc)], &[], &mut v);
                                    String::from_utf8(v).map_or(Action::Pass, Action::Replace)
                                }
                                None => Action::Pass,
                            }
                        } else if choices.count == 0 {
                            Action::Drop
                        } else {
                            let mut v = Vec::with_capacity(ev.data.len());
                            f.write(&[], &["usage"], &mut v);
                            String::from_utf8(v).map_or(Action::Pass, Action::Replace)
                        }
                    }
                }
            }
        };
        match action {
            Action::Pass => Some(out_event(&ev, &ev.data)),
            Action::Drop => None,
            Action::Replace(data) => Some(out_event(&ev, &data)),
        }
    }

    /// Usage as reported, else estimated from the prompt and the text streamed so far.
    fn usage(&self) -> (Usage, bool) {
        match self.usage {
            Some(u) => (u, false),
            None => (
                Usage {
                    prompt: body::estimate_tokens(self.prompt_bytes),
                    completion: body::estimate_tokens(self.content_bytes),
                    ..Usage::default()
                },
                true,
            ),
        }
    }

    fn cost(&self) -> Option<Decimal> {
        let (u, _) = self.usage();
        self.reported
            .or_else(|| self.p.prices.cost(&self.model, &u))
    }

    fn log(&mut self, status: i32, error: Option<String>) {
        let Some(mut rec) = self.rec.take() else {
            return;
        };
        let (usage, estimated) = self.usage();
        if estimated {
            rec.metadata.insert("usage_estimated".into(), "true".into());
        }
        fill_usage(&mut rec, &usage, self.reported);
        rec.status = Some(status);
        rec.error = error;
        rec.finish_reason = if status == STATUS_CLIENT_CLOSED {
            Some(FINISH_CANCELLED.into())
        } else {
            self.finish_reason.take()
        };
        if let Some(r) = self.reservation.take() {
            r.settle(
                self.reported
                    .or_else(|| self.p.prices.cost(&self.model, &usage)),
            );
        }
        rec.ttft_ms = Some(ms(self.ttft));
        rec.latency_ms = Some(ms(self.t0.elapsed()));
        self.p.sink.send(rec);
    }

    fn complete(&mut self) {
        self.log(200, None);
    }

    /// The upstream failed mid-stream: too late for another upstream; the client gets an
    /// OpenAI-shaped error event (clients raise it) and the stream ends.
    fn broken(&mut self, message: String) -> Event {
        self.p.upstreams.report(self.ui, false);
        let err = super::error::ProxyError::upstream(StatusCode::BAD_GATEWAY, message.clone())
            .code("upstream_stream_broken");
        self.log(502, Some(message));
        Event::default().data(String::from_utf8_lossy(&err.body()))
    }
}

fn out_event(ev: &UpEvent, data: &str) -> Event {
    let e = Event::default().data(data);
    if ev.event.is_empty() || ev.event == "message" {
        e
    } else {
        e.event(&ev.event)
    }
}

impl Drop for StreamLog {
    fn drop(&mut self) {
        if self.rec.is_some() {
            Stats::inc(&self.p.stats.cancelled);
            self.log(
                STATUS_CLIENT_CLOSED,
                Some("the client closed the stream before its end".into()),
            );
        }
    }
}
