//! The proxy's errors, always in OpenAI's shape (`{"error": {"message", "type", "param",
//! "code"}}`) so OpenAI clients raise their typed exceptions: the one place a proxy failure
//! becomes a status and a body, including axum's own rejections and unknown routes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::body::{ErrorBody, ErrorInner};

/// A failure answered to the client.
#[derive(Debug, Clone)]
pub struct ProxyError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl ProxyError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ProxyError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
        }
    }

    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn param(mut self, param: Option<&'static str>) -> Self {
        self.param = param;
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
            .code("invalid_api_key")
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model `{model}` does not exist or no upstream serves it"),
        )
        .code("model_not_found")
        .param(Some("model"))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message).code("not_found")
    }

    pub fn quota(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "insufficient_quota", message)
            .code("insufficient_quota")
    }

    pub fn upstream(status: StatusCode, message: impl Into<String>) -> Self {
        let kind = match status.as_u16() {
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        };
        Self::new(status, kind, message).code("upstream_error")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "api_error", message)
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&ErrorBody {
            error: ErrorInner {
                message: &self.message,
                kind: self.kind,
                param: self.param,
                code: self.code,
            },
        })
        .unwrap_or_default()
    }
}

impl From<crate::Error> for ProxyError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Invalid(m) | crate::Error::Config(m) => ProxyError::invalid(m),
            crate::Error::Unauthorized => ProxyError::unauthorized("Invalid or missing token"),
            crate::Error::NotFound(m) => ProxyError::not_found(m),
            crate::Error::TooLarge(m) => {
                ProxyError::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", m)
            }
            other => ProxyError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.body()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }
}

/// Rewrites axum's plain-text rejections (bad JSON, unsupported media type, body too large,
/// wrong method) into OpenAI-shaped errors, keeping their status.
pub async fn openai_shaped(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let r = next.run(req).await;
    let status = r.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return r;
    }
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return r;
    }
    let (parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let message = if text.trim().is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string()
    } else {
        text
    };
    let kind = if status.is_server_error() {
        "api_error"
    } else {
        "invalid_request_error"
    };
    ProxyError::new(status, kind, message).into_response()
}

/// Unknown routes.
pub async fn no_route(uri: axum::http::Uri) -> ProxyError {
    ProxyError::not_found(format!("Unknown route {}", uri.path())).code("unknown_url")
}
