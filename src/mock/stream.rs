//! A streamed chat completion of the mock, framed as OpenAI does: a first chunk with the
//! assistant role (and `switchyard_mock.quality`) after the time to first token, one chunk per
//! visible token at the profile's token rate, a chunk with `finish_reason`, then, only when the
//! request set `stream_options.include_usage`, a usage chunk with empty `choices` (every earlier
//! chunk then carries `"usage": null`), and `data: [DONE]`. With `abort_after_chunks` the
//! connection is dropped after that many chunks.
//!
//! Chunks are cut from templates made once per stream: only the token changes between them.

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use tokio::time::Instant;

use super::Mock;
use super::chat::{MockInfo, Plan};

/// Pause between the last chunk of an aborted stream and the dropped connection.
const ABORT_FLUSH: std::time::Duration = std::time::Duration::from_millis(10);

/// Where a stream is.
enum Step {
    Role,
    Token(usize),
    Finish,
    Usage,
    Done,
    End,
}

/// The fixed parts of every chunk of one stream.
struct Templates {
    /// `{"id":…,"object":…,"created":…,"model":…,"system_fingerprint":…,"choices":[`
    head: String,
    /// `,"usage":null` when a usage chunk will follow, else empty.
    usage_null: &'static str,
}

impl Templates {
    fn new(plan: &Plan) -> Templates {
        let model = serde_json::to_string(&*plan.model.name).unwrap_or_else(|_| "\"\"".into());
        let head = format!(
            r#"{{"id":"{}","object":"chat.completion.chunk","created":{},"model":{model},"system_fingerprint":"fp_mock","choices":["#,
            plan.id, plan.created
        );
        let usage_null = if plan.include_usage && plan.fx.usage {
            r#","usage":null"#
        } else {
            ""
        };
        Templates { head, usage_null }
    }

    fn choice(&self, delta: &str, finish: Option<&str>, extra: &str) -> String {
        let finish = finish.map_or("null".to_string(), |f| format!("\"{f}\""));
        format!(
            r#"{}{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]{}{extra}}}"#,
            self.head, self.usage_null
        )
    }
}

struct State {
    mock: Mock,
    plan: Plan,
    task: String,
    t: Templates,
    step: Step,
    /// When the next chunk is due.
    due: Instant,
    sent: u32,
}

impl State {
    /// The next chunk, or `None` at the end; `Some(None)` = drop the connection now.
    fn chunk(&mut self) -> Option<Option<String>> {
        if let Some(n) = self.plan.fx.abort_after_chunks
            && self.sent >= n
            && !matches!(self.step, Step::End)
        {
            self.step = Step::End;
            return Some(None);
        }
        let visible = self.plan.visible();
        let out = match self.step {
            Step::Role => {
                let info = serde_json::to_string(&MockInfo {
                    quality: self.plan.quality,
                    task: &self.task,
                })
                .unwrap_or_else(|_| "null".into());
                self.step = Step::Token(0);
                self.t.choice(
                    r#"{"role":"assistant","content":"","refusal":null}"#,
                    None,
                    &format!(r#","switchyard_mock":{info}"#),
                )
            }
            Step::Token(i) => {
                // Token i > 0 carries its leading space.
                let tok = self.mock.0.text.token(i);
                self.step = if i + 1 < visible {
                    Step::Token(i + 1)
                } else {
                    Step::Finish
                };
                self.t
                    .choice(&format!(r#"{{"content":"{tok}"}}"#), None, "")
            }
            Step::Finish => {
                self.step = if self.t.usage_null.is_empty() {
                    Step::Done
                } else {
                    Step::Usage
                };
                self.t.choice("{}", Some(self.plan.finish), "")
            }
            Step::Usage => {
                self.step = Step::Done;
                let usage = serde_json::to_string(&self.plan.usage()).unwrap_or_default();
                format!(r#"{}],"usage":{usage}}}"#, self.t.head)
            }
            Step::Done => {
                self.step = Step::End;
                "[DONE]".to_string()
            }
            Step::End => return None,
        };
        self.sent += 1;
        Some(Some(out))
    }

    /// Moves the due time past the chunk about to be sent.
    fn advance(&mut self) {
        if let Step::Token(i) = self.step
            && i > 0
        {
            self.due += self.plan.token_gap();
        }
    }
}

/// The error that makes the server drop a stream's connection.
#[derive(Debug)]
struct Aborted;

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mock upstream: stream aborted on purpose")
    }
}

impl std::error::Error for Aborted {}

fn events(st: State) -> impl Stream<Item = Result<Event, Aborted>> + Send {
    stream::unfold(st, |mut st| async move {
        st.advance();
        if st.due > Instant::now() {
            tokio::time::sleep_until(st.due).await;
        }
        match st.chunk()? {
            Some(data) => Some((Ok(Event::default().data(data)), st)),
            None => {
                // Let the chunks already sent reach the socket before the connection drops.
                tokio::time::sleep(ABORT_FLUSH).await;
                Some((Err(Aborted), st))
            }
        }
    })
}

/// The streamed answer of `plan`.
pub fn respond(mock: Mock, plan: Plan, task: String) -> Response {
    let due = Instant::now() + plan.ttft();
    let st = State {
        t: Templates::new(&plan),
        mock,
        plan,
        task,
        step: Step::Role,
        due,
        sent: 0,
    };
    Sse::new(events(st)).into_response()
}
