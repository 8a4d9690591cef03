//! A client of a running proxy's admin API (`GET`/`PUT /admin/policy`), for `switchyard
//! apply`, `recommend --apply` and serve's Apply button: the policy in force, and putting a
//! new one in force with the proxy's refusal reason passed on as it gave it.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::recommend::Policy;

/// The admin API of the proxy at `base` (e.g. `http://127.0.0.1:7071`).
#[derive(Debug, Clone)]
pub struct Control {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl Control {
    pub fn new(base: &str, admin_token: Option<String>) -> Result<Control> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Internal(format!("http client: {e}")))?;
        Ok(Control {
            base: base.trim_end_matches('/').to_string(),
            token: admin_token,
            client,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self) -> String {
        format!("{}/admin/policy", self.base)
    }

    fn auth(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// The policy in force (`None` when the proxy routes by model names only).
    pub async fn live(&self) -> Result<Option<Policy>> {
        let url = self.url();
        let resp = self
            .auth(self.client.get(&url))
            .send()
            .await
            .map_err(|e| Error::Unavailable(format!("{url}: {e} (is the proxy running?)")))?;
        match resp.status().as_u16() {
            404 => Ok(None),
            401 | 403 => Err(Error::Unauthorized),
            s if !(200..300).contains(&s) => Err(Error::Unavailable(format!(
                "{url} answered {}",
                resp.status()
            ))),
            _ => {
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| Error::Unavailable(format!("{url}: {e}")))?;
                Ok(Some(Policy::parse(&body)?))
            }
        }
    }

    /// Puts the policy file text `text` in force; the version the proxy now runs.
    pub async fn apply(&self, text: Vec<u8>) -> Result<String> {
        let policy = Policy::parse(&text)?;
        let url = self.url();
        let resp = self
            .auth(
                self.client
                    .put(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(text),
            )
            .send()
            .await
            .map_err(|e| Error::Unavailable(format!("{url}: {e} (is the proxy running?)")))?;
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        if !status.is_success() {
            let reason = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(match status.as_u16() {
                401 | 403 => Error::Unauthorized,
                _ => Error::Invalid(format!("{url} refused the policy ({status}): {reason}")),
            });
        }
        Ok(policy.version)
    }
}
