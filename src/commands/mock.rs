//! `switchyard mock-upstream`: the built-in OpenAI-compatible mock upstream, until SIGINT or
//! SIGTERM.

use std::io::Write;

use super::Outcome;
use super::serve::shutdown_signal;
use crate::cli::MockUpstreamArgs;
use crate::error::{Error, Result};
use crate::mock::{Mock, Overrides, Profiles};
use crate::prices::PriceCatalog;

pub async fn mock_upstream(args: MockUpstreamArgs) -> Result<Outcome> {
    if args.tokens_per_s.is_some_and(|r| !r.is_finite() || r < 0.0) {
        return Err(Error::Config("--tokens-per-s must be a number >= 0".into()));
    }
    let profiles = Profiles::load(args.profile.as_deref())?.with_overrides(Overrides {
        latency_ms: args.latency_ms,
        ttft_ms: args.ttft_ms,
        tokens_per_s: args.tokens_per_s,
    });
    let mock = Mock::new(profiles, PriceCatalog::embedded()?, args.seed)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", args.listen)))?;
    let bound = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "mock upstream listening on http://{bound}")?;
    out.flush()?;
    drop(out);
    crate::mock::serve(listener, mock, shutdown_signal()).await?;
    Ok(Outcome::Ok)
}
