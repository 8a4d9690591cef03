//! Ingest handlers: `POST /v1/logs`, `/v1/feedback`, `/v1/traces`. Each checks the token,
//! decodes the body (gzip, zstd; bounded after decompression), parses it and hands it to the
//! store, answering once the accepted records are durable.

use std::io::Read;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::error::Error;
use crate::formats::{self, Format, Parsed};
use crate::proxy::keys::bearer;
use crate::store::IngestOutcome;

/// Checks `Authorization: Bearer` against the ingest token (the admin token works too).
pub fn check_ingest(state: &AppState, headers: &HeaderMap) -> Result<(), Error> {
    let t = &state.tokens;
    if !t.any() {
        return Ok(());
    }
    let given = bearer(headers);
    let ok = given.is_some_and(|g| {
        t.ingest.as_deref().is_some_and(|x| ct_eq(x, g))
            || t.admin.as_deref().is_some_and(|x| ct_eq(x, g))
    });
    if ok { Ok(()) } else { Err(Error::Unauthorized) }
}

/// Checks the admin token (query and admin routes).
pub fn check_admin(state: &AppState, headers: &HeaderMap) -> Result<(), Error> {
    let t = &state.tokens;
    match t.admin.as_deref() {
        None if t.ingest.is_none() => Ok(()),
        None => Err(Error::Unauthorized),
        Some(x) if bearer(headers).is_some_and(|g| ct_eq(x, g)) => Ok(()),
        Some(_) => Err(Error::Unauthorized),
    }
}

/// Compares tokens without an early exit on the first differing byte.
fn ct_eq(a: &str, b: &str) -> bool {
    crate::proxy::keys::ct_eq(a.as_bytes(), b.as_bytes())
}

/// The request body, decompressed per `Content-Encoding` and bounded by the size limit.
pub fn body(headers: &HeaderMap, raw: Bytes, limit: usize) -> Result<Bytes, Error> {
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let too_large = || Error::TooLarge(format!("body exceeds {limit} bytes after decompression"));
    let read_bounded = |mut r: Box<dyn Read + '_>| -> Result<Bytes, Error> {
        let mut out = Vec::new();
        let n = r
            .by_ref()
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| Error::Invalid(format!("cannot decompress the {enc} body: {e}")))?;
        if n > limit {
            return Err(too_large());
        }
        Ok(Bytes::from(out))
    };
    match enc.as_str() {
        "identity" | "" => Ok(raw),
        "gzip" | "x-gzip" => read_bounded(Box::new(flate2::read::MultiGzDecoder::new(&raw[..]))),
        "zstd" => {
            let d = zstd::stream::read::Decoder::new(&raw[..])
                .map_err(|e| Error::Invalid(format!("bad zstd body: {e}")))?;
            read_bounded(Box::new(d))
        }
        other => Err(Error::Invalid(format!(
            "unsupported Content-Encoding {other:?} (use gzip or zstd)"
        ))),
    }
}

fn answer(out: IngestOutcome) -> Response {
    let nothing_usable = out.accepted == 0 && out.duplicates == 0;
    let status = if nothing_usable {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (status, Json(out)).into_response()
}

async fn ingest_as(
    state: AppState,
    headers: HeaderMap,
    raw: Bytes,
    format: Format,
) -> Result<Response, ApiError> {
    check_ingest(&state, &headers)?;
    let body = body(&headers, raw, state.max_body_bytes)?;
    let now = chrono::Utc::now().timestamp_micros();
    let store = state.store.clone();
    // Parsing, validation, pricing and building Arrow batches are CPU work: off the reactor.
    let prepared = tokio::task::spawn_blocking(move || {
        store
            .prepare_body(&body, format, now)?
            .ok_or_else(|| Error::Invalid("the body holds no records".into()))
    })
    .await
    .map_err(|e| Error::Internal(format!("parse task: {e}")))??;
    Ok(answer(state.store.commit(prepared).await?))
}

/// `POST /v1/logs`: NDJSON or a JSON array of records of any accepted shape.
pub async fn logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    ingest_as(state, headers, raw, Format::Auto).await
}

/// `POST /v1/feedback`: feedback records.
pub async fn feedback(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    ingest_as(state, headers, raw, Format::Feedback).await
}

/// `POST /v1/traces`: OTLP/HTTP, protobuf (answered in protobuf) or JSON (answered in JSON).
///
/// Per OTLP/HTTP, an export that was read answers 200; what was not stored — spans that are
/// not GenAI model calls, and model-call spans that fail validation — is counted in
/// `partial_success` (`rejected_spans` and a message), so a collector that sends all its
/// traces neither logs errors nor retries. Only an unreadable body is a 400.
pub async fn traces(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let protobuf = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
        .contains("protobuf");
    check_ingest(&state, &headers)?;
    let body = body(&headers, raw, state.max_body_bytes)?;
    let store = state.store.clone();
    let (prepared, not_genai) = tokio::task::spawn_blocking(move || {
        let spans = if protobuf {
            formats::otlp::export_spans_protobuf(&body)
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| format!("invalid OTLP JSON trace export: {e}"))
                .and_then(|v| formats::otlp::export_spans_json(&v))
        }
        .map_err(Error::Invalid)?;
        let mut p = Parsed::default();
        for (i, r) in spans.results.into_iter().enumerate() {
            match r {
                Ok(item) => p.items.push((i, item)),
                Err(e) => p.rejected.push((i, e)),
            }
        }
        Ok::<_, Error>((store.prepare(p)?, spans.not_genai))
    })
    .await
    .map_err(|e| Error::Internal(format!("parse task: {e}")))??;
    let out = if prepared.requests.is_none() && prepared.feedback.is_none() {
        IngestOutcome {
            rejected: prepared.rejected,
            ..Default::default()
        }
    } else {
        state.store.commit(prepared).await?
    };
    let rejected_spans = not_genai + out.rejected.len();
    let message = partial_message(not_genai, &out);
    if protobuf {
        use opentelemetry_proto::tonic::collector::trace::v1 as pb;
        use prost::Message;
        let resp = pb::ExportTraceServiceResponse {
            partial_success: (rejected_spans > 0).then_some(pb::ExportTracePartialSuccess {
                rejected_spans: rejected_spans as i64,
                error_message: message,
            }),
        };
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            resp.encode_to_vec(),
        )
            .into_response());
    }
    let mut v = serde_json::to_value(&out).map_err(Error::Json)?;
    if rejected_spans > 0
        && let Some(o) = v.as_object_mut()
    {
        o.insert(
            "partialSuccess".into(),
            serde_json::json!({ "rejectedSpans": rejected_spans, "errorMessage": message }),
        );
    }
    Ok((StatusCode::OK, Json(v)).into_response())
}

/// The `partial_success` message: why spans were not stored (the first few errors).
fn partial_message(not_genai: usize, out: &IngestOutcome) -> String {
    const SHOWN: usize = 5;
    let mut parts = Vec::new();
    if not_genai > 0 {
        parts.push(format!(
            "{not_genai} span(s) are not GenAI model-call spans (no gen_ai.* model or \
             operation attributes); switchyard stores only those"
        ));
    }
    if !out.rejected.is_empty() {
        let mut errs: Vec<String> = out
            .rejected
            .iter()
            .take(SHOWN)
            .map(|r| r.error.clone())
            .collect();
        if out.rejected.len() > SHOWN {
            errs.push(format!("and {} more", out.rejected.len() - SHOWN));
        }
        parts.push(format!(
            "{} GenAI span(s) rejected: {}",
            out.rejected.len(),
            errs.join("; ")
        ));
    }
    parts.join("; ")
}
